"""Typed messages between the orchestrator and device agents (Celery task bodies, `ingest` queue).

Every message carries `version`; a receiver rejects a version it does not know rather than
guessing. Images travel inside results as PNG bytes (base64 in JSON), so nothing is lost between
a phone and the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from hexfleet.bundle import RunnerBundle, RunnerInfo
from hexfleet.states import PhoneState, RunKind, RunOutcome

MESSAGE_VERSION = 1

Serial = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:\-]{1,128}$")]
RunId = Annotated[
    str,
    StringConstraints(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
]


class Message(BaseModel):
    """Base of every message; bytes travel as base64 in JSON (send `model_dump_json()`)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, ser_json_bytes="base64", val_json_bytes="base64"
    )

    version: Literal[1] = MESSAGE_VERSION


class RunTask(Message):
    """One attempt of one run, sent to a phone's queue or a capability queue.

    `manifest` is the model's manifest (models.manifest.Manifest as JSON): the agent learns from
    it which files, by sha256, the phone must hold.
    """

    run_id: RunId
    job_id: RunId
    attempt: int = Field(ge=1)
    kind: RunKind
    model: str
    manifest: dict[str, Any]
    params: dict[str, Any]
    inputs: dict[str, bytes] = {}
    deadline_s: float = Field(gt=0)
    # The registered runner bundles by ABI: the agent pushes the one its phone's ABI names.
    bundles: dict[str, RunnerBundle] = {}


class RunProgress(Message):
    run_id: RunId
    attempt: int = Field(ge=1)
    serial: Serial
    step: int = Field(ge=0)
    total: int = Field(ge=0)
    stage: str = ""


class ImageOut(Message):
    index: int = Field(ge=0)
    prompt: str
    seed: int
    png: bytes


class RunResult(Message):
    """What a run produced, sent once by the agent on the `ingest` queue (ingest is idempotent)."""

    run_id: RunId
    attempt: int = Field(ge=1)
    serial: Serial
    host: str
    outcome: RunOutcome
    simulated: bool
    timings: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    images: list[ImageOut] = []
    tensors: dict[str, bytes] = {}
    error: str | None = None
    # The runner behind this result (None when no runner ran: a push failed, the phone went away).
    runner: RunnerInfo | None = None
    started_at: dt.datetime
    finished_at: dt.datetime


class DeviceFacts(Message):
    serial: Serial
    soc: str = ""
    htp_arch: int | None = None
    board: str = ""
    manufacturer: str = ""
    model: str = ""
    android_release: str = ""
    sdk: int | None = None
    abi: str = ""
    storage_free_bytes: int | None = None
    is_virtual: bool = False


class DeviceHealth(Message):
    battery_level: int | None = None
    battery_temp_c: float | None = None
    max_temp_c: float | None = None
    throttled: bool = False


class Heartbeat(Message):
    """An agent's view of one phone, sent on the `ingest` queue every few seconds."""

    host: str
    facts: DeviceFacts
    health: DeviceHealth
    state: PhoneState
    current_run_id: RunId | None = None
    sent_at: dt.datetime
