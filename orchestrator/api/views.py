"""What the API returns: typed views of jobs, runs, images and devices (versioned bodies)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel

from hexfleet.bundle import RunnerBundle
from hexfleet.orchestrator.compare import Change, Comparison
from hexfleet.orchestrator.db.schema import Device, Job, Model, Run, RunnerBundleRow
from hexfleet.orchestrator.presence import phone_state
from hexfleet.orchestrator.statistics import PhoneStats, benchmark_stats
from hexfleet.states import FINAL_JOB_STATES, JobKind

API_VERSION: Literal[1] = 1


class ErrorBody(BaseModel):
    """Every refusal's body (4xx, 5xx): the error's kind and a one-line reason."""

    error: str
    detail: str


class ArtifactView(BaseModel):
    """A file now in the orchestrator's store."""

    sha256: str
    size: int


class ImageView(BaseModel):
    id: int
    index: int
    prompt: str
    seed: int
    sha256: str
    url: str


class RunView(BaseModel):
    id: str
    slot: int
    attempt: int
    queue: str
    device_serial: str | None
    state: str
    simulated: bool | None
    timings: dict[str, Any]
    progress: dict[str, Any]
    metrics: dict[str, Any]
    error: str | None
    # Why the orchestrator ended this attempt (e.g. its phone fell silent), and which attempt
    # this one retries; both None for an attempt that ended by its own result.
    reason: str | None = None
    retried_from: str | None = None
    # The runner behind the result: its bundle's sha256, its version and the phone's ABI.
    runner: dict[str, Any] | None = None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    images: list[ImageView]

    @classmethod
    def of(cls, run: Run) -> RunView:
        return cls(
            id=run.id,
            slot=run.slot,
            attempt=run.attempt,
            queue=run.queue,
            device_serial=run.device_serial,
            state=run.state,
            simulated=run.simulated,
            timings=run.timings,
            progress=run.progress,
            error=run.error,
            reason=run.reason,
            retried_from=run.retried_from,
            metrics=run.result.get("metrics", {}),
            runner=run.result.get("runner"),
            started_at=run.started_at,
            finished_at=run.finished_at,
            images=[
                ImageView(
                    id=i.id,
                    index=i.index,
                    prompt=i.prompt,
                    seed=i.seed,
                    sha256=i.sha256,
                    url=f"/api/v1/images/{i.id}",
                )
                for i in run.images
            ],
        )


class JobView(BaseModel):
    version: Literal[1] = API_VERSION
    id: str
    kind: str
    state: str
    selector: str
    priority: int
    submitted_by: str
    created_at: dt.datetime
    finished_at: dt.datetime | None
    spec: dict[str, Any]
    runs: list[RunView] | None = None
    # A finished benchmark job's statistics per phone (each says whether its timings are
    # simulated); computed when shown, so not while the job still runs and is being polled.
    benchmark: list[PhoneStats] | None = None

    @classmethod
    def of(cls, job: Job, with_runs: bool = False) -> JobView:
        finished = job.state in FINAL_JOB_STATES
        stats = with_runs and finished and job.kind == JobKind.BENCHMARK
        return cls(
            id=job.id,
            kind=job.kind,
            state=job.state,
            selector=job.selector,
            priority=job.priority,
            submitted_by=job.submitted_by,
            created_at=job.created_at,
            finished_at=job.finished_at,
            spec=job.spec,
            runs=[RunView.of(r) for r in job.runs] if with_runs else None,
            benchmark=benchmark_stats(job) if stats else None,
        )


class ComparisonView(BaseModel):
    """`compare(a, b)`: per phone × metric, the change of the median from job a to job b."""

    version: Literal[1] = API_VERSION
    job_a: str
    job_b: str
    threshold: float
    alpha: float
    confidence: float
    simulated: bool  # some compared timings come from virtual phones (not device timings)
    regressions: int
    changes: list[Change]
    setup_differences: list[str]
    unpaired: list[str]

    @classmethod
    def of(cls, comparison: Comparison) -> ComparisonView:
        return cls(
            job_a=comparison.job_a,
            job_b=comparison.job_b,
            threshold=comparison.threshold,
            alpha=comparison.alpha,
            confidence=comparison.confidence,
            simulated=any(c.simulated for c in comparison.changes),
            regressions=len(comparison.regressions),
            changes=comparison.changes,
            setup_differences=comparison.setup_differences,
            unpaired=comparison.unpaired,
        )


class DeviceView(BaseModel):
    serial: str
    host: str
    soc: str
    htp_arch: int | None
    model: str
    android_release: str
    state: str
    battery_level: int | None
    temperature_c: float | None
    throttled: bool
    is_virtual: bool
    current_run_id: str | None
    last_seen: dt.datetime

    @classmethod
    def of(cls, device: Device, now: dt.datetime | None = None) -> DeviceView:
        """The phone as people see it: offline once its heartbeats stopped (fleet.phone_state)."""
        now = now or dt.datetime.now(dt.UTC)
        return cls(
            serial=device.serial,
            host=device.host_id,
            soc=device.soc,
            htp_arch=device.htp_arch,
            model=device.model,
            android_release=device.android_release,
            state=phone_state(device, now),
            battery_level=device.battery_level,
            temperature_c=device.temperature_c,
            throttled=device.throttled,
            is_virtual=device.is_virtual,
            current_run_id=device.current_run_id,
            last_seen=device.last_seen,
        )


class RunnerView(BaseModel):
    abi: str
    runner_version: str
    sha256: str
    files: int
    size: int
    registered_at: dt.datetime

    @classmethod
    def of(cls, row: RunnerBundleRow) -> RunnerView:
        bundle = RunnerBundle.model_validate(row.bundle)
        return cls(
            abi=row.abi,
            runner_version=bundle.runner_version,
            sha256=row.sha256,
            files=len(bundle.files),
            size=sum(ref.size for ref in bundle.files),
            registered_at=row.registered_at,
        )


class ModelView(BaseModel):
    name: str
    version: str
    precision: str
    variant: str
    size: int
    files: int
    manifest_sha256: str
    created_at: dt.datetime

    @classmethod
    def of(cls, model: Model) -> ModelView:
        return cls(
            name=model.name,
            version=model.version,
            precision=model.precision,
            variant=model.variant,
            size=sum(a.artifact.size for a in model.artifacts),
            files=len(model.artifacts),
            manifest_sha256=model.manifest_sha256,
            created_at=model.created_at,
        )
