"""The tables hexfleet stores: hosts, devices, models, artifacts, jobs, runs and their results.

The orchestrator is the only writer. The schema is created by the Alembic migrations in
`migrations/`; a test checks that these classes and the migrations agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from hexfleet.states import JobState, PhoneState, RunState

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(
        self, value: dt.datetime | None, dialect: object
    ) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        dt.datetime: UTCDateTime(),
    }


STATE_LEN = 16


class Host(Base):
    __tablename__ = "hosts"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)

    devices: Mapped[list[Device]] = relationship(back_populates="host")


class Device(Base):
    __tablename__ = "devices"

    serial: Mapped[str] = mapped_column(String(128), primary_key=True)
    host_id: Mapped[str] = mapped_column(ForeignKey("hosts.id"), index=True)
    soc: Mapped[str] = mapped_column(String(32), default="")
    htp_arch: Mapped[int | None] = mapped_column(Integer)
    manufacturer: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(128), default="")
    android_release: Mapped[str] = mapped_column(String(16), default="")
    sdk: Mapped[int | None] = mapped_column(Integer)
    abi: Mapped[str] = mapped_column(String(32), default="")
    storage_free_bytes: Mapped[int | None] = mapped_column(BigInteger)
    is_virtual: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(STATE_LEN), default=PhoneState.IDLE)
    battery_level: Mapped[int | None] = mapped_column(Integer)
    temperature_c: Mapped[float | None] = mapped_column(Float)
    throttled: Mapped[bool] = mapped_column(Boolean, default=False)
    health: Mapped[dict[str, Any]] = mapped_column(default=dict)
    current_run_id: Mapped[str | None] = mapped_column(String(36))
    last_seen: Mapped[dt.datetime] = mapped_column(default=utcnow)

    host: Mapped[Host] = relationship(back_populates="devices")


class Artifact(Base):
    """A file known by its content: models' components are artifacts."""

    __tablename__ = "artifacts"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class RunnerBundleRow(Base):
    """The runner bundle registered for one CPU ABI (hexfleet.bundle.RunnerBundle as JSON)."""

    __tablename__ = "runner_bundles"

    abi: Mapped[str] = mapped_column(String(32), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    bundle: Mapped[dict[str, Any]] = mapped_column(JSON)
    registered_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", "variant"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    precision: Mapped[str] = mapped_column(String(16))
    variant: Mapped[str] = mapped_column(String(32))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    manifest: Mapped[dict[str, Any]] = mapped_column()
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    artifacts: Mapped[list[ModelArtifact]] = relationship(
        back_populates="model", cascade="all, delete-orphan"
    )


class ModelArtifact(Base):
    __tablename__ = "model_artifacts"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    sha256: Mapped[str] = mapped_column(
        ForeignKey("artifacts.sha256"), primary_key=True, index=True
    )
    name: Mapped[str] = mapped_column(String(255))

    model: Mapped[Model] = relationship(back_populates="artifacts")
    artifact: Mapped[Artifact] = relationship()


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_state_priority", "state", "priority"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(STATE_LEN))
    state: Mapped[str] = mapped_column(String(STATE_LEN), default=JobState.QUEUED)
    selector: Mapped[str] = mapped_column(String(512))
    priority: Mapped[int] = mapped_column(Integer, default=5)
    repeat: Mapped[int] = mapped_column(Integer, default=1)
    spec: Mapped[dict[str, Any]] = mapped_column()
    submitted_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()

    runs: Mapped[list[Run]] = relationship(back_populates="job", order_by="Run.slot")


class Run(Base):
    """One attempt of one slot of a job on one phone; a retry is a new row with attempt + 1."""

    __tablename__ = "runs"
    __table_args__ = (
        UniqueConstraint("job_id", "slot", "attempt"),
        # Reconciliation looks for the few unfinished runs among all of them every few seconds.
        Index("ix_runs_state", "state"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    slot: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    queue: Mapped[str] = mapped_column(String(160))
    device_serial: Mapped[str | None] = mapped_column(String(128), index=True)
    state: Mapped[str] = mapped_column(String(STATE_LEN), default=RunState.QUEUED)
    deadline_s: Mapped[float] = mapped_column(Float)
    simulated: Mapped[bool | None] = mapped_column(Boolean)
    progress: Mapped[dict[str, Any]] = mapped_column(default=dict)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    # Why the orchestrator ended this attempt itself (reconciliation: its phone went silent, its
    # broker message was lost...); None when the attempt ended by its own result.
    reason: Mapped[str | None] = mapped_column(Text)
    # The attempt this one replaces (same slot, attempt - 1), when it is a retry or a re-send.
    retried_from: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column()
    finished_at: Mapped[dt.datetime | None] = mapped_column()

    job: Mapped[Job] = relationship(back_populates="runs")
    images: Mapped[list[Image]] = relationship(back_populates="run", order_by="Image.index")
    metrics: Mapped[list[Metric]] = relationship(back_populates="run")


class Image(Base):
    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("run_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    index: Mapped[int] = mapped_column(Integer)
    prompt: Mapped[str] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(BigInteger)
    png: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))

    run: Mapped[Run] = relationship(back_populates="images")


class Metric(Base):
    """A named measurement of a run: a scalar `value`, and the full series when there is one."""

    __tablename__ = "metrics"
    __table_args__ = (UniqueConstraint("run_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    name: Mapped[str] = mapped_column(String(128))
    value: Mapped[float | None] = mapped_column(Float)
    unit: Mapped[str] = mapped_column(String(16), default="")
    series: Mapped[list[Any] | None] = mapped_column()

    run: Mapped[Run] = relationship(back_populates="metrics")


class ValidationResult(Base):
    __tablename__ = "validation_results"
    __table_args__ = (UniqueConstraint("job_id", "device_serial", "output"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    device_serial: Mapped[str] = mapped_column(String(128))
    output: Mapped[str] = mapped_column(String(128))
    reference: Mapped[str] = mapped_column(String(160))
    passed: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text, default="")
    scores: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ValidationBlob(Base):
    """Bytes a validation job compares with: the input tensors it sent (.npy) and the reference's
    outputs (PNG images, .npy tensors) when the reference was computed on the orchestrator."""

    __tablename__ = "validation_blobs"
    __table_args__ = (UniqueConstraint("job_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    name: Mapped[str] = mapped_column(String(160))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
