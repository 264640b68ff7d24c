"""The ingest worker waits out a PostgreSQL outage: its database refuses every connection (its
open ones terminated) while a heartbeat arrives; the write is retried, logged, and lands once the
database is back. Only this test's own database is shut, never the server."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable

import psycopg
import pytest
import sqlalchemy as sa
from celery.contrib.testing.worker import start_worker
from psycopg import sql
from sqlalchemy.orm import Session

from hexfleet.broker import INGEST_HEARTBEAT_TASK, INGEST_QUEUE, Publisher, make_celery
from hexfleet.messages import DeviceFacts, DeviceHealth, Heartbeat
from hexfleet.orchestrator.db.engine import make_engine, session_factory, upgrade
from hexfleet.orchestrator.db.schema import Device
from hexfleet.orchestrator.worker import make_ingest_app
from hexfleet.settings import Settings

ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def beat(serial: str) -> str:
    return Heartbeat(
        host="chaos-host",
        facts=DeviceFacts(serial=serial),
        health=DeviceHealth(),
        state="idle",
        sent_at=dt.datetime.now(dt.UTC),
    ).model_dump_json()


def set_reachable(database: str, reachable: bool) -> None:
    """Let connections into `database` or refuse them (terminating the open ones)."""
    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(
            sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(database), sql.SQL("true" if reachable else "false")
            )
        )
        if not reachable:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )


def test_ingest_writes_once_the_database_is_back(
    module_postgres_url: str,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(database_url=module_postgres_url, broker_url=redis_url, outage_wait_s=60)
    database = sa.engine.make_url(module_postgres_url).database
    assert database
    upgrade(module_postgres_url)
    engine = make_engine(module_postgres_url)
    app = make_ingest_app(settings, session_factory(engine))
    publisher = Publisher(make_celery(settings, name="chaos-sender"), 10)

    def known(serial: str) -> bool:
        probe = make_engine(module_postgres_url)
        try:
            with Session(probe) as session:
                return session.get(Device, serial) is not None
        finally:
            probe.dispose()

    with start_worker(
        app, queues=[INGEST_QUEUE], pool="solo", perform_ping_check=False, shutdown_timeout=30
    ):
        publisher.send(INGEST_HEARTBEAT_TASK, beat("vp-before"), INGEST_QUEUE)
        wait_until(lambda: known("vp-before"), 20, "a heartbeat ingested")
        try:
            set_reachable(database, False)
            with caplog.at_level(logging.WARNING, logger="hexfleet.orchestrator.worker"):
                publisher.send(INGEST_HEARTBEAT_TASK, beat("vp-during"), INGEST_QUEUE)
                wait_until(lambda: "database away" in caplog.text, 20, "the outage noticed")
        finally:
            set_reachable(database, True)
        wait_until(lambda: known("vp-during"), 30, "the held heartbeat written")
        publisher.send(INGEST_HEARTBEAT_TASK, beat("vp-after"), INGEST_QUEUE)
        wait_until(lambda: known("vp-after"), 20, "ingest goes on")
    engine.dispose()
