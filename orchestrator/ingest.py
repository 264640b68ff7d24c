"""Result ingestion: writing agents' messages into the database, idempotently.

A result delivered twice (redelivery after a lost acknowledgement, a duplicate publish) is stored
once: a run attempt that already has an outcome ignores later results, and images and metrics are
unique per run. Heartbeats upsert the fleet table.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import ColumnElement, and_, func, select, update
from sqlalchemy.orm import Session, aliased

from hexfleet.errors import NotFound
from hexfleet.messages import Heartbeat, RunProgress, RunResult
from hexfleet.orchestrator.db.schema import Device, Host, Image, Job, Metric, Run
from hexfleet.orchestrator.jobs import Dispatcher, retry_lost, why_not_retried
from hexfleet.states import FINAL_RUN_STATES, JobState, PhoneState, RunState


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _metrics(result: RunResult, run_id: str) -> list[Metric]:
    """Numeric metrics as rows (a scalar, or a series); the rest stays in the run's JSON."""
    rows = []
    for name, raw in sorted(result.metrics.items()):
        if isinstance(raw, bool):
            rows.append(Metric(run_id=run_id, name=name, value=float(raw)))
        elif _number(raw):
            rows.append(Metric(run_id=run_id, name=name, value=float(raw)))
        elif isinstance(raw, list) and raw and all(_number(v) for v in raw):
            rows.append(Metric(run_id=run_id, name=name, series=raw))
    return rows


def ingest_result(
    session: Session, result: RunResult, dispatcher: Dispatcher | None = None
) -> bool:
    """Store `result`; returns False when that run attempt already had one (nothing written).

    A lost run (its phone went away) gets a new attempt on another phone when `dispatcher` is
    given and the retry bound allows; the lost phone is marked offline until it reports again.
    """
    run = session.get(Run, result.run_id, with_for_update=True)
    if run is None:
        raise NotFound(f"run {result.run_id} is not known")
    if run.attempt != result.attempt:
        return False
    if run.state in FINAL_RUN_STATES:
        return _late_result(session, run, result)
    return _store_result(session, run, result, dispatcher)


def _late_result(session: Session, run: Run, result: RunResult) -> bool:
    """A result for an attempt the orchestrator already ended (reconciliation gave up on it).

    Kept on that attempt's row, never counted twice: when a newer attempt of the slot exists, the
    result is noted in the row (`result["late"]`) but its images and metrics are not stored and
    the row stays lost; when none exists (the attempt was failed with no retry left) and the
    result is a success, it is the slot's answer and is stored as usual. Returns False for a
    result that is not late (the attempt ended by its own result) or was already noted.
    """
    if run.reason is None or "late" in run.result:
        return False
    newer = session.scalar(
        select(Run.attempt)
        .where(Run.job_id == run.job_id, Run.slot == run.slot, Run.attempt > run.attempt)
        .limit(1)
    )
    if newer is None and result.outcome == RunState.SUCCEEDED:
        run.reason = f"{run.reason}; its result came later and was stored"
        _store_result(session, run, result, None)
        run.result = {**run.result, "late": True}
        return True
    run.result = {
        **run.result,
        "late": {
            "outcome": result.outcome,
            "serial": result.serial,
            "error": result.error,
            "timings": result.timings,
            "finished_at": result.finished_at.isoformat(),
        },
    }
    run.reason = f"{run.reason}; a late result ({result.outcome}) came after it: not counted"
    return True


def _store_result(
    session: Session, run: Run, result: RunResult, dispatcher: Dispatcher | None
) -> bool:
    run.state = result.outcome
    run.device_serial = result.serial
    run.simulated = result.simulated
    run.timings = result.timings
    run.result = {
        "metrics": result.metrics,
        "runner": result.runner.model_dump() if result.runner else None,
        "tensors": {k: base64.b64encode(v).decode() for k, v in result.tensors.items()},
    }
    run.error = result.error
    run.started_at = result.started_at
    run.finished_at = result.finished_at
    # Added by run id rather than through run.images / run.metrics: appending to a collection
    # loads it first, one more query per result for rows that cannot exist yet.
    session.add_all(
        Image(
            run_id=run.id,
            index=image.index,
            prompt=image.prompt,
            seed=image.seed,
            png=image.png,
            sha256=hashlib.sha256(image.png).hexdigest(),
        )
        for image in result.images
    )
    session.add_all(_metrics(result, run.id))
    if result.outcome == RunState.SUCCEEDED and run.progress.get("total"):
        # The last progress message may arrive after the result: a finished run is complete.
        run.progress = {**run.progress, "step": run.progress["total"]}
    session.flush()
    device = session.get(Device, result.serial)
    if result.outcome == RunState.LOST:
        if device is not None:
            device.state = PhoneState.OFFLINE
        if dispatcher is not None and retry_lost(session, run, dispatcher) is None:
            # No new attempt: the slot's answer is this failure, and the job view says why (a
            # bare `lost` with no successor left the slot unanswered and unexplained).
            run.state = RunState.FAILED
            run.reason = f"its phone was lost; not retried: {why_not_retried(run)}"
    elif device is not None and device.current_run_id == run.id:
        # ... and its result that it is free again (until its next heartbeat says more).
        device.state = PhoneState.IDLE
        device.current_run_id = None
    settle_job(session, run.job)
    return True


_LATER = aliased(Run)
# A run that is the newest attempt of its slot (built once: aliasing Run costs ~1 ms a call).
_NEWEST_ATTEMPT = ~(
    select(_LATER.id)
    .where(_LATER.job_id == Run.job_id, _LATER.slot == Run.slot, _LATER.attempt > Run.attempt)
    .exists()
)


def _newest_attempts(job: Job) -> ColumnElement[bool]:
    """Runs of `job` that are the newest attempt of their slot."""
    return and_(Run.job_id == job.id, _NEWEST_ATTEMPT)


def settle_job(session: Session, job: Job) -> None:
    """A job is finished when the newest attempt of every slot is final.

    Asked of the database, not by loading the job's runs: a result of a 2000-run job would
    otherwise load 2000 rows (ingest fell to a few results per second).
    """
    newest = _newest_attempts(job)
    unfinished = session.scalar(
        select(Run.id).where(newest, Run.state.not_in(FINAL_RUN_STATES)).limit(1)
    )
    if unfinished is not None:
        job.state = JobState.RUNNING
        return
    if job.state == JobState.CANCELLED:
        return
    states = set(session.scalars(select(Run.state).where(newest).distinct()))
    job.state = JobState.SUCCEEDED if states == {RunState.SUCCEEDED} else JobState.FAILED
    job.finished_at = session.scalar(select(func.max(Run.finished_at)).where(newest))


def ingest_heartbeat(session: Session, beat: Heartbeat) -> None:
    """Upsert the phone (and its host) with the facts and health the agent reported."""
    if session.get(Host, beat.host) is None:
        session.add(Host(id=beat.host))
        session.flush()
    session.get_one(Host, beat.host).last_seen = beat.sent_at
    device = session.get(Device, beat.facts.serial)
    if device is None:
        device = Device(serial=beat.facts.serial, host_id=beat.host)
        session.add(device)
    elif beat.state == PhoneState.OFFLINE:
        device.state = PhoneState.OFFLINE
        device.current_run_id = None
        device.last_seen = beat.sent_at
        return
    facts = beat.facts
    device.host_id = beat.host
    device.soc, device.htp_arch, device.model = facts.soc, facts.htp_arch, facts.model
    device.manufacturer, device.abi = facts.manufacturer, facts.abi
    device.android_release, device.sdk = facts.android_release, facts.sdk
    device.storage_free_bytes, device.is_virtual = facts.storage_free_bytes, facts.is_virtual
    device.state = beat.state
    device.battery_level = beat.health.battery_level
    device.temperature_c = beat.health.max_temp_c
    device.throttled = beat.health.throttled
    device.health = beat.health.model_dump(mode="json")
    device.current_run_id = beat.current_run_id
    device.last_seen = beat.sent_at


def record_progress(session: Session, progress: RunProgress) -> None:
    """A running attempt's latest step; the first one marks the run (and its job) running."""
    latest = {"step": progress.step, "total": progress.total, "stage": progress.stage}
    # Most progress is a running run's next step: one UPDATE, no load (ingest's busiest path).
    moved = session.execute(
        update(Run)
        .where(
            Run.id == progress.run_id,
            Run.attempt == progress.attempt,
            Run.state == RunState.RUNNING,
            Run.device_serial == progress.serial,
        )
        .values(progress=latest)
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount:
        return
    run = session.get(Run, progress.run_id)
    if run is None or run.attempt != progress.attempt:
        return
    if run.state not in (RunState.QUEUED, RunState.RUNNING):
        return
    if run.state == RunState.QUEUED:
        run.state = RunState.RUNNING
        run.started_at = dt.datetime.now(dt.UTC)
        run.job.state = JobState.RUNNING
        # Agents send no heartbeat around a run: its first progress says the phone is busy.
        device = session.get(Device, progress.serial)
        if device is not None and device.state != PhoneState.OFFLINE:
            device.state = PhoneState.BUSY
            device.current_run_id = run.id
    run.device_serial = progress.serial
    run.progress = latest
