"""Fixtures for the whole suite: settings in a temporary data dir, real Redis, real PostgreSQL.

A test that needs a server which is not running is skipped, unless HEXFLEET_REQUIRE_SERVICES=1
(as in CI), where it fails instead: CI must never pass by skipping.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis as redis_lib
from psycopg import sql

from hexfleet.settings import Settings

# Virtual phones and a private adb server (tests/virtual_phone, device_agent, e2e).
pytest_plugins = ["phone_fixtures"]

REDIS_TEST_URL = "redis://127.0.0.1:6379/13"
POSTGRES_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--real-size",
        action="store_true",
        help="also run the tests marked real_size (SD 1.5 at its real size: GBs, minutes)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked real_size run on demand only (`--real-size`); CI runs their shrunk twins."""
    if config.getoption("--real-size"):
        return
    chosen = [item for item in items if item.get_closest_marker("real_size") is None]
    if len(chosen) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in chosen])
        items[:] = chosen


def _require_services() -> bool:
    return Settings().require_services


def _unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable: {exc}"
    if _require_services():
        pytest.fail(f"{message} (HEXFLEET_REQUIRE_SERVICES=1: a missing service is a failure)")
    pytest.skip(message)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "hexfleet-data"
    path.mkdir()
    return path


@pytest.fixture
def settings(data_dir: Path) -> Settings:
    """Settings isolated to this test: own data dir, embedded defaults."""
    return Settings(data_dir=data_dir, database_url=None, broker_url=None)


@contextlib.contextmanager
def _flushed_redis(url: str) -> Iterator[str]:
    client = redis_lib.Redis.from_url(url, socket_connect_timeout=3)
    try:
        client.ping()
    except redis_lib.exceptions.ConnectionError as exc:
        _unavailable("Redis at 127.0.0.1:6379", exc)
    client.flushdb()
    try:
        yield url
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """URL of a dedicated database on the real Redis server, flushed before and after the test."""
    with _flushed_redis(REDIS_TEST_URL) as url:
        yield url


@contextlib.contextmanager
def _fresh_database() -> Iterator[str]:
    name = f"hexfleet_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN_DSN, autocommit=True)
    except psycopg.OperationalError as exc:
        _unavailable("PostgreSQL at 127.0.0.1:5432", exc)
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="module")
def module_redis_url() -> Iterator[str]:
    """A dedicated Redis database (14) for one test module, flushed before and after."""
    with _flushed_redis("redis://127.0.0.1:6379/14") as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh database on the real PostgreSQL, dropped after the session."""
    with _fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def module_postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database of its own for one test module (e.g. a whole farm)."""
    with _fresh_database() as url:
        yield url
