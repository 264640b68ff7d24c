"""Database fixtures: the same tests run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from synthetic_sd import write_tiny_layout

from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.engine import make_engine, upgrade
from hexfleet.orchestrator.db.schema import Base, Device, Host
from hexfleet.orchestrator.registry import sync_from_store
from hexfleet.settings import Settings


def _empty_postgres(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        Base.metadata.drop_all(conn)
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind: a SQLite file, or the session's PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    url = request.getfixturevalue("postgres_url")
    _empty_postgres(url)
    try:
        yield url
    finally:
        _empty_postgres(url)


@pytest.fixture
def db_engine(database_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    upgrade(database_url)
    engine = make_engine(database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def synthetic_tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight model in tiny-sd's layout (real ONNX files, tiny sizes)."""
    return write_tiny_layout(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture
def model_store(settings: Settings, synthetic_tiny_sd: Path) -> ModelStore:
    """The orchestrator's model store with the synthetic tiny-sd (fp32) in it."""
    store = ModelStore.from_settings(settings)
    register_tiny_sd(store, synthetic_tiny_sd)
    return store


Phones = list[tuple[str, str, int]]


@pytest.fixture
def add_fleet(model_store: ModelStore) -> Callable[[Session, Phones], None]:
    """Adds phones (serial, SoC, htp_arch) on host "host-a" and registers the store's models."""

    def add(session: Session, phones: Phones) -> None:
        session.add(Host(id="host-a"))
        for serial, soc, arch in phones:
            session.add(
                Device(serial=serial, host_id="host-a", soc=soc, htp_arch=arch, model="S2x")
            )
        session.commit()
        sync_from_store(session, model_store)

    return add
