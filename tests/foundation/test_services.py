"""The service fixtures reach real servers, and the embedded broker carries a Celery task."""

from __future__ import annotations

from pathlib import Path

import psycopg
import redis as redis_lib
import sqlalchemy as sa
from celery import Celery

from hexfleet.broker import make_celery
from hexfleet.settings import Settings


def test_redis_fixture_reaches_a_flushed_database(redis_url: str) -> None:
    client = redis_lib.Redis.from_url(redis_url)
    assert client.dbsize() == 0
    client.set("hexfleet:probe", "1")
    assert client.get("hexfleet:probe") == b"1"


def test_postgres_fixture_is_a_fresh_database(postgres_url: str) -> None:
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        tables = conn.execute(
            sa.text("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
        ).scalar_one()
        version = conn.execute(sa.text("SHOW server_version")).scalar_one()
    engine.dispose()
    assert tables == 0
    assert int(version.split(".")[0]) >= 13
    assert isinstance(psycopg.__version__, str)


def _celery(settings: Settings, broker_url: str) -> Celery:
    return make_celery(settings.model_copy(update={"broker_url": broker_url}), name="probe")


def _round_trip(app: Celery) -> dict[str, object]:
    payload = {"run": "r1", "n": 3}
    with app.connection_for_write() as conn:
        queue = conn.SimpleQueue("hexfleet.probe")
        queue.put(payload)
        message = queue.get(timeout=10)
        message.ack()
        queue.close()
    return message.payload


def test_embedded_broker_needs_no_server(settings: Settings) -> None:
    app = _celery(settings, settings.resolved_broker_url)
    assert _round_trip(app) == {"run": "r1", "n": 3}
    assert any(settings.broker_folder.rglob("*")), "messages should pass through the data dir"
    assert not (Path.cwd() / "control").exists(), "no broker state outside the data dir"


def test_redis_broker_carries_a_message(settings: Settings, redis_url: str) -> None:
    app = _celery(settings, redis_url)
    assert _round_trip(app) == {"run": "r1", "n": 3}
