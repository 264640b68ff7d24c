"""Settings: defaults derive from the data dir, HEXFLEET_ variables override, bad values fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from hexfleet.settings import Settings


def test_defaults_are_embedded(settings: Settings, data_dir: Path) -> None:
    assert settings.resolved_database_url == f"sqlite:///{data_dir / 'hexfleet.db'}"
    assert settings.resolved_broker_url == "hexfleet-fs://"
    assert settings.adb_host == "127.0.0.1"
    assert settings.adb_port == 5037


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HEXFLEET_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("HEXFLEET_BROKER_URL", "redis://127.0.0.1:6379/2")
    monkeypatch.setenv("HEXFLEET_DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("HEXFLEET_API_TOKEN", "s3cret")
    monkeypatch.setenv("HEXFLEET_ADB_PORT", "5099")
    loaded = Settings()
    assert loaded.data_dir == tmp_path / "d"
    assert loaded.resolved_broker_url == "redis://127.0.0.1:6379/2"
    assert loaded.resolved_database_url == "postgresql+psycopg://u@h/db"
    assert loaded.api_token is not None and loaded.api_token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(loaded)
    assert loaded.adb_port == 5099


def test_bad_port_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEXFLEET_ADB_PORT", "70000")
    with pytest.raises(ValidationError):
        Settings()


def test_sqlite_default_creates_its_file_under_the_data_dir(
    settings: Settings, data_dir: Path
) -> None:
    engine = sa.create_engine(settings.resolved_database_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE probe (x INTEGER)"))
        conn.execute(sa.text("INSERT INTO probe VALUES (1)"))
    engine.dispose()
    assert (data_dir / "hexfleet.db").is_file()


def test_filesystem_broker_folders_live_in_the_data_dir(settings: Settings, data_dir: Path) -> None:
    options = settings.broker_transport_options()
    assert Path(str(options["data_folder_in"])).is_dir()
    assert Path(str(options["data_folder_in"])).is_relative_to(data_dir)
