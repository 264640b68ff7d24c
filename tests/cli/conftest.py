"""Fixtures for the CLI's tests: a farm's jobs and phones stored in a SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import Stored, store_farm
from sqlalchemy.orm import Session

from hexfleet.orchestrator.db.engine import make_engine, upgrade


@pytest.fixture
def stored(tmp_path: Path) -> Iterator[Stored]:
    """The API's views of a stored farm (see cli_support), in a database migrated to head."""
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    upgrade(url)
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            yield store_farm(session)
    finally:
        engine.dispose()
