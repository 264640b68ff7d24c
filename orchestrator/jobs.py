"""Jobs: what a user may ask for (validated request bodies), and submitting, listing, cancelling.

Submitting expands the request over the fleet (scheduler); `launch` stores the job and its runs
and hands each run to the dispatcher as a typed `RunTask`, for every kind of job (validation plans
its own placements and launches them here too). Everything a user typed is validated before
anything is stored or sent.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Protocol

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hexfleet.bundle import RunnerBundle
from hexfleet.errors import InvalidRequest, NotFound
from hexfleet.messages import RunTask
from hexfleet.orchestrator.db.schema import Base, Device, Job, Model, Run
from hexfleet.orchestrator.presence import STALE_AFTER_S
from hexfleet.orchestrator.runners import bundles as runner_bundles
from hexfleet.orchestrator.runners import check_abis
from hexfleet.orchestrator.scheduler import RETRY_LIMIT, plan_runs, retry_queue
from hexfleet.orchestrator.selectors import SelectorText, parse_selector
from hexfleet.runner_spec import (
    BenchmarkParams,
    Component,
    GenerateParams,
    InferParams,
    Runtime,
    TensorName,
)
from hexfleet.states import JobKind, JobState, PhoneState, RunKind, RunState

ModelName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._\-]{0,63}$")]
Precision = Literal["fp32", "w8a8", "w8a16"]
MAX_TENSOR_BYTES = 64 << 20


BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"


def _from_base64(value: object) -> object:
    """Standard base64 with its padding, nothing else (what BASE64_PATTERN says)."""
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64 (standard alphabet, padded)") from None
    return value


Base64Bytes = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    WithJsonSchema({"type": "string", "pattern": BASE64_PATTERN, "contentEncoding": "base64"}),
]


class InferRequestParams(BaseModel):
    """An infer job as submitted: the input tensors themselves (.npy bytes, base64 in JSON)."""

    model_config = ConfigDict(extra="forbid", ser_json_bytes="base64")

    component: Component
    runtime: Runtime = "htp"
    tensors: dict[TensorName, Base64Bytes] = Field(
        min_length=1, max_length=16, json_schema_extra={"additionalProperties": False}
    )

    @field_validator("tensors")
    @classmethod
    def _size(cls, value: dict[str, bytes]) -> dict[str, bytes]:
        if sum(len(v) for v in value.values()) > MAX_TENSOR_BYTES:
            raise ValueError(f"input tensors must total at most {MAX_TENSOR_BYTES >> 20} MiB")
        return value


PARAMS: dict[str, type[BaseModel]] = {
    "generate": GenerateParams,
    "benchmark": BenchmarkParams,
    "infer": InferRequestParams,
}


class JobRequest(BaseModel):
    """A job as submitted and stored; the API takes one of its typed forms (JobSubmission)."""

    model_config = ConfigDict(extra="forbid")

    version: Literal[1] = 1
    kind: RunKind
    model: ModelName
    precision: Precision = "w8a16"
    selector: SelectorText = "all"
    repeat: int = Field(default=1, ge=1, le=1000)
    count: int | None = Field(default=None, ge=1, le=10000)
    priority: int = Field(default=5, ge=0, le=9)
    deadline_s: float = Field(default=600, gt=0, le=6 * 3600)
    params: dict[str, Any] = {}

    def typed_params(self) -> BaseModel:
        if isinstance(self.params, BaseModel):
            return self.params
        try:
            return PARAMS[self.kind].model_validate(self.params)
        except ValueError as exc:
            raise InvalidRequest(f"{self.kind} parameters: {exc}") from exc

    def runner_params(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The runner's parameters for this job, and input tensors to push (infer only)."""
        typed = self.typed_params()
        if isinstance(typed, InferRequestParams):
            runner = InferParams(
                component=typed.component, runtime=typed.runtime, inputs=list(typed.tensors)
            )
            return runner.model_dump(mode="json"), dict(typed.tensors)
        return typed.model_dump(mode="json"), {}


class GenerateJobRequest(JobRequest):
    kind: Literal[JobKind.GENERATE]  # type: ignore[assignment]
    params: GenerateParams  # type: ignore[assignment]


class BenchmarkJobRequest(JobRequest):
    kind: Literal[JobKind.BENCHMARK]  # type: ignore[assignment]
    params: BenchmarkParams = BenchmarkParams()  # type: ignore[assignment]


class InferJobRequest(JobRequest):
    kind: Literal[JobKind.INFER]  # type: ignore[assignment]
    params: InferRequestParams  # type: ignore[assignment]


# The body of POST /api/v1/jobs: one typed form per kind, so the API's schema says exactly which
# parameters each kind takes (a client generated from it builds only requests the server accepts).
JobSubmission = Annotated[
    GenerateJobRequest | BenchmarkJobRequest | InferJobRequest, Field(discriminator="kind")
]


class Dispatcher(Protocol):
    """Where runs go once stored: Celery in production, anything with `send` in a unit test."""

    def send(self, task: RunTask, queue: str, priority: int) -> None: ...

    def revoke(self, run_ids: Sequence[str]) -> None: ...


def online_devices(session: Session) -> list[dict[str, object]]:
    """Phones that may take work: not reported offline, and heard from within STALE_AFTER_S
    (a phone whose agent died without a goodbye must not be given runs)."""
    heard_since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=STALE_AFTER_S)
    return _facts(
        session.scalars(
            select(Device).where(
                Device.state != PhoneState.OFFLINE, Device.last_seen >= heard_since
            )
        )
    )


def known_devices(session: Session) -> list[dict[str, object]]:
    """Every phone the farm has heard of, online or not."""
    return _facts(session.scalars(select(Device)))


def _facts(rows: Iterable[Device]) -> list[dict[str, object]]:
    return [
        {
            "serial": d.serial,
            "soc": d.soc,
            "htp_arch": d.htp_arch,
            "model": d.model,
            "manufacturer": d.manufacturer,
            "host": d.host_id,
            "abi": d.abi,
            "sdk": d.sdk,
            "battery": d.battery_level,
            "temperature": d.temperature_c,
        }
        for d in rows
    ]


def find_model(session: Session, name: str, precision: str) -> Model:
    model = session.scalars(
        select(Model)
        .where(Model.name == name, Model.variant == precision)
        .order_by(Model.created_at.desc())
    ).first()
    if model is None:
        raise NotFound(f"model {name!r} at precision {precision} is not registered")
    return model


def for_device(session: Session, model: Model, serial: str | None) -> Model:
    """The variant to send to one phone: a QNN context binary compiled for its Hexagon arch when
    one is registered (loads 70-130x faster than compiling the QDQ graph), else `model` itself."""
    device = session.get(Device, serial) if serial else None
    if device is None or device.htp_arch is None:
        return model
    compiled = session.scalars(
        select(Model).where(
            Model.name == model.name,
            Model.version == model.version,
            Model.variant == f"{model.variant}-v{device.htp_arch}",
        )
    ).first()
    return compiled or model


@dataclass(frozen=True)
class Placement:
    """One run to create: its slot and queue (and phone, when fixed), and what the runner gets."""

    slot: int
    queue: str
    serial: str | None
    kind: str
    params: dict[str, Any]
    tensors: dict[str, bytes] = field(default_factory=dict)


def _task(
    job: Job,
    run: Run,
    model: Model,
    placement: Placement,
    deadline_s: float,
    runners: dict[str, RunnerBundle],
) -> RunTask:
    return RunTask(
        run_id=run.id,
        job_id=job.id,
        attempt=run.attempt,
        kind=placement.kind,
        model=f"{model.name}/{model.version}/{model.variant}",
        manifest=model.manifest,
        params=placement.params,
        inputs=placement.tensors,
        deadline_s=deadline_s,
        bundles=runners,
    )


def launch(
    session: Session,
    job: Job,
    model: Model,
    placements: Sequence[Placement],
    dispatcher: Dispatcher,
    *,
    deadline_s: float,
    attached: Sequence[Base] = (),
) -> Job:
    """Store `job`, one run per placement and the `attached` rows (which need the job stored
    first), commit, then hand every run to the dispatcher: the one path every kind of job takes."""
    session.add(job)
    runs = [
        Run(
            id=str(uuid.uuid4()),
            job=job,
            slot=placement.slot,
            queue=placement.queue,
            device_serial=placement.serial,
            deadline_s=deadline_s,
            images=[],  # known empty: the API's reply does not query each new run's images
        )
        for placement in placements
    ]
    session.add_all(runs)
    session.flush()
    session.add_all(attached)
    # The tasks are built before the commit, which expires every loaded object (reading a run
    # after it would cost a SELECT per run), and sent after it (a task must find its run
    # stored). One variant look-up per phone, not per run: fan-out sends `repeat` to each.
    variants: dict[str | None, Model] = {}
    runners = runner_bundles(session)
    tasks = []
    for run, placement in zip(runs, placements, strict=True):
        if run.device_serial not in variants:
            variants[run.device_serial] = for_device(session, model, run.device_serial)
        task = _task(job, run, variants[run.device_serial], placement, deadline_s, runners)
        tasks.append((task, run.queue))
    priority = job.priority
    session.commit()
    for task, queue in tasks:
        dispatcher.send(task, queue, priority)
    return job


def pending_runs(session: Session) -> dict[str, int]:
    """Each phone's runs still queued or running: the load any-N jobs spread around."""
    rows = session.execute(
        select(Run.device_serial, func.count())
        .where(Run.state.in_((RunState.QUEUED, RunState.RUNNING)), Run.device_serial.is_not(None))
        .group_by(Run.device_serial)
    )
    return {str(serial): int(count) for serial, count in rows}


def submit(session: Session, request: JobRequest, dispatcher: Dispatcher, submitted_by: str) -> Job:
    """Validate, plan, store and dispatch a job; returns the stored job."""
    params, tensors = request.runner_params()
    selector = parse_selector(request.selector)
    model = find_model(session, request.model, request.precision)
    planned = plan_runs(
        selector,
        online_devices(session),
        repeat=request.repeat,
        count=request.count,
        load=lambda: pending_runs(session),
    )
    check_abis(session, (str(d["abi"]) for d in selector.select(online_devices(session))))
    job = Job(
        id=str(uuid.uuid4()),
        kind=request.kind,
        selector=str(selector),
        priority=request.priority,
        repeat=request.repeat,
        submitted_by=submitted_by,
        spec={**request.model_dump(mode="json"), "model_id": model.id},
    )
    placements = [
        Placement(plan.slot, plan.queue, plan.serial, request.kind, params, tensors)
        for plan in planned
    ]
    return launch(session, job, model, placements, dispatcher, deadline_s=request.deadline_s)


def retry_lost(session: Session, lost: Run, dispatcher: Dispatcher) -> Run | None:
    """A new attempt of a lost run on another matching phone, up to RETRY_LIMIT retries.

    Never on a phone that lost this slot before; None when no phone is left or the bound is hit.
    """
    job = lost.job
    if lost.attempt > RETRY_LIMIT or job.state == JobState.CANCELLED:
        return None
    if job.kind == JobKind.VALIDATE:
        return None  # a validation run belongs to its phone: another phone's answer is no answer
    lost_serials = {r.device_serial for r in job.runs if r.slot == lost.slot and r.device_serial}
    selector = parse_selector(job.selector)
    load = pending_runs(session)
    target = retry_queue(selector, online_devices(session), lost_serials, load)
    if target is None:
        # No eligible phone heard from lately (its host's agent restarting, the ingest behind):
        # the attempt waits in a known one's queue. Should that phone stay silent, the
        # reconciler moves the attempt on after its bounds, within the retry limit.
        target = retry_queue(selector, known_devices(session), lost_serials, load)
    if target is None:
        return None
    queue, serial = target
    return send_attempt(session, lost, queue, serial, dispatcher)


def why_not_retried(run: Run) -> str:
    """Why `retry_lost` gave `run`'s slot no new attempt."""
    if run.attempt > RETRY_LIMIT:
        return f"retry limit ({RETRY_LIMIT}) reached"
    if run.job.kind == JobKind.VALIDATE:
        return "a validation run belongs to its phone"
    return "no other eligible phone"


def send_attempt(
    session: Session, previous: Run, queue: str, serial: str | None, dispatcher: Dispatcher
) -> Run | None:
    """Store and send the next attempt of `previous`'s slot to `queue` (None: its model is gone).

    The caller decides where and whether (retry bound, phone choice); this only builds the run.
    """
    job = previous.job
    spec = {k: v for k, v in job.spec.items() if k != "model_id"}
    request = JobRequest.model_validate(spec)
    model = session.get(Model, job.spec.get("model_id"))
    if model is None:
        return None
    run = Run(
        id=str(uuid.uuid4()),
        job=job,
        slot=previous.slot,
        attempt=previous.attempt + 1,
        queue=queue,
        device_serial=serial,
        deadline_s=previous.deadline_s,
        retried_from=previous.id,
    )
    session.add(run)
    session.flush()
    params, tensors = request.runner_params()
    placement = Placement(previous.slot, queue, serial, request.kind, params, tensors)
    task = _task(
        job, run, for_device(session, model, serial), placement, request.deadline_s,
        runner_bundles(session),
    )
    dispatcher.send(task, queue, request.priority)
    return run


def get_job(session: Session, job_id: str) -> Job:
    try:
        uuid.UUID(job_id)
    except ValueError:
        raise InvalidRequest(f"{job_id!r} is not a job id") from None
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def list_jobs(session: Session, state: str | None = None, limit: int = 50) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc()).limit(max(1, min(limit, 1000)))
    if state:
        query = query.where(Job.state == state)
    return list(session.scalars(query))


def cancel(session: Session, job_id: str, dispatcher: Dispatcher) -> Job:
    """Cancel a job: its unfinished runs are revoked (queued) or stopped on the phone (running)."""
    job = get_job(session, job_id)
    if job.state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
        return job
    open_runs = [r for r in job.runs if r.state in (RunState.QUEUED, RunState.RUNNING)]
    now = dt.datetime.now(dt.UTC)
    for run in open_runs:
        run.state = RunState.CANCELLED
        run.finished_at = now
    job.state = JobState.CANCELLED
    job.finished_at = now
    session.commit()
    dispatcher.revoke([r.id for r in open_runs])
    return job
