"""The one settings object: every knob hexfleet reads from the environment (`HEXFLEET_` prefix).

Read once at the edge (CLI, worker start-up) and passed down; nothing else in the code reads
environment variables.
"""

from __future__ import annotations

import socket
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_SCHEME = "hexfleet-fs"


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "hexfleet"


class Settings(BaseSettings):
    """Configuration for every hexfleet process. Unset URLs derive from `data_dir`."""

    model_config = SettingsConfigDict(env_prefix="HEXFLEET_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None
    broker_url: str | None = None
    api_url: str = "http://127.0.0.1:8400"
    api_token: SecretStr | None = None
    viewer_tokens: list[SecretStr] = []
    submit_tokens: list[SecretStr] = []
    adb_host: str = "127.0.0.1"
    adb_port: int = Field(default=5037, ge=1, le=65535)
    require_services: bool = False
    max_artifact_bytes: int = Field(
        default=4 << 30,
        gt=0,
        description=(
            "The largest file `PUT /api/v1/artifacts/<sha256>` accepts, in bytes; a larger "
            "upload is refused with HTTP 413 and never reaches the model store. The default, "
            "4 GiB, holds SD 1.5's largest FP32 file (the UNet's external data, ~3.4 GB); "
            "raise it for bigger models (SDXL's FP32 UNet is ~10 GB)."
        ),
    )
    agent_name: str | None = None
    agent_cache_quota_bytes: int = Field(default=8 << 30, gt=0)
    agent_thermal_limit_c: float = Field(default=45.0, gt=0)
    agent_thermal_wait_s: float = Field(default=120.0, ge=0)
    # Repeated benchmarks on a phone start within this of the phone's idle temperature.
    agent_cooldown_margin_c: float = Field(default=3.0, ge=0)
    agent_cooldown_wait_s: float = Field(default=300.0, ge=0)
    # Reconciliation (hexfleet.orchestrator.reconciliation): how the server notices runs that
    # nobody works on any more. A running attempt is lost when its phone sent no heartbeat for
    # `reconcile_silence_s`, or its heartbeats named another run (or none) for
    # `reconcile_grace_s`, or it outlived its deadline by `reconcile_deadline_margin_s`. A queued
    # attempt whose broker message is gone is sent again after `reconcile_queued_s`.
    reconcile_interval_s: float = Field(default=10.0, gt=0)
    reconcile_silence_s: float = Field(default=60.0, gt=0)
    reconcile_grace_s: float = Field(default=30.0, gt=0)
    reconcile_deadline_margin_s: float = Field(default=120.0, ge=0)
    reconcile_queued_s: float = Field(default=120.0, gt=0)
    # Redis' visibility timeout: how long a delivered message may stay unacknowledged before the
    # broker delivers it again. Run messages are acknowledged when their run starts, so this only
    # covers a message a worker took and died with before starting it, and an ingest message.
    broker_visibility_timeout_s: float = Field(default=300.0, gt=0)
    # How long a process waits for the database or the broker to come back before giving up on
    # one message (ingest) or one beat (agent heartbeats), retrying with backoff meanwhile.
    outage_wait_s: float = Field(default=60.0, gt=0)

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def resolved_database_url(self) -> str:
        """The database URL; by default a SQLite file under the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'hexfleet.db'}"

    @property
    def resolved_broker_url(self) -> str:
        """The Celery broker URL; by default the embedded, server-less filesystem transport."""
        return self.broker_url or f"{EMBEDDED_SCHEME}://"

    @property
    def broker_folder(self) -> Path:
        """Where the embedded (filesystem) transport keeps its messages."""
        return self.data_dir / "broker"

    def broker_transport_options(self) -> dict[str, object]:
        """Transport options for Celery; the filesystem transport needs its folders."""
        if self.resolved_broker_url.startswith((f"{EMBEDDED_SCHEME}://", "filesystem://")):
            folder = self.broker_folder
            for sub in ("in", "processed", "control"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            return {
                "data_folder_in": str(folder / "in"),
                "data_folder_out": str(folder / "in"),
                "processed_folder": str(folder / "processed"),
                "control_folder": str(folder / "control"),
                "polling_interval": 0.1,
                "store_processed": False,
            }
        return {}

    @property
    def token_file(self) -> Path:
        """Where `hexfleet up` leaves the embedded farm's submitting token for the CLI."""
        return self.data_dir / "api-token"

    def client_token(self) -> str | None:
        """The token the CLI sends: HEXFLEET_API_TOKEN, else the embedded farm's token file."""
        if self.api_token is not None:
            return self.api_token.get_secret_value()
        if self.token_file.is_file():
            return self.token_file.read_text().strip() or None
        return None

    @property
    def host_name(self) -> str:
        """How this host's agent names itself in the fleet (default: the machine's hostname)."""
        return self.agent_name or socket.gethostname()

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir
