"""The schema exists only through migrations, and the migrations agree with the ORM classes."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hexfleet.errors import ServiceUnavailable
from hexfleet.orchestrator.db.engine import alembic_config, make_engine, upgrade
from hexfleet.orchestrator.db.schema import Base, Device, Host, Image, Job, Run


def test_migrations_match_the_models(db_engine: Engine) -> None:
    with db_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_every_table_is_created_and_downgrade_removes_them(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url)
    names = set(sa.inspect(engine).get_table_names())
    assert set(Base.metadata.tables) <= names
    command.downgrade(alembic_config(database_url), "base")
    assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def _job(session: Session) -> Job:
    job = Job(id=str(uuid.uuid4()), kind="generate", selector="all", spec={"prompt": "x"})
    session.add(job)
    return job


def test_a_run_and_its_image_round_trip(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        session.add(Host(id="host-a"))
        session.add(Device(serial="vphone-1", host_id="host-a", soc="SM8550", htp_arch=73))
        job = _job(session)
        run = Run(id=str(uuid.uuid4()), job=job, slot=0, queue="device.vphone-1", deadline_s=60)
        session.add(run)
        session.add(
            Image(run=run, index=0, prompt="a red circle", seed=7, png=b"\x89PNG", sha256="0" * 64)
        )
        session.commit()
        loaded = session.get(Run, run.id)
        assert loaded is not None
        assert loaded.images[0].png == b"\x89PNG"
        assert loaded.job.spec == {"prompt": "x"}


def test_a_run_attempt_is_stored_once(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        job = _job(session)
        session.add(Run(id=str(uuid.uuid4()), job=job, slot=0, attempt=1, queue="q", deadline_s=1))
        session.commit()
        session.add(Run(id=str(uuid.uuid4()), job=job, slot=0, attempt=1, queue="q", deadline_s=1))
        with pytest.raises(IntegrityError):
            session.commit()


def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(ServiceUnavailable, match="unavailable"):
        upgrade("postgresql+psycopg://postgres@127.0.0.1:1/nothing?connect_timeout=2")
