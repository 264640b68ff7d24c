"""What each dashboard page shows, read from the database into plain dicts for the templates.

Routes (`routes.py`) only call these and render; nothing here writes. Every filter a user typed
is checked against the known values before it reaches a query.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from hexfleet.errors import InvalidRequest
from hexfleet.orchestrator.db.schema import Device, Image, Job, Run, ValidationResult
from hexfleet.orchestrator.jobs import get_job
from hexfleet.orchestrator.presence import heartbeat_age_s, phone_state
from hexfleet.orchestrator.validation.report import load_report
from hexfleet.orchestrator.validation.storage import PHONE_ROW
from hexfleet.states import FINAL_JOB_STATES, JobKind, JobState, RunState

MAX_JOBS = 500


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


# ---------------------------------------------------------------- fleet


def fleet(session: Session) -> list[dict[str, Any]]:
    """One row per phone: identity, state, health and the run it is on."""
    now = _now()
    devices = list(session.scalars(sa.select(Device).order_by(Device.host_id, Device.serial)))
    current = [d.current_run_id for d in devices if d.current_run_id]
    runs = {r.id: r for r in session.scalars(sa.select(Run).where(Run.id.in_(current)))}
    rows = []
    for device in devices:
        run = runs.get(device.current_run_id or "")
        rows.append(
            {
                "serial": device.serial,
                "host": device.host_id,
                "soc": device.soc,
                "htp_arch": device.htp_arch,
                "model": device.model,
                "virtual": device.is_virtual,
                "state": phone_state(device, now).value,
                "battery": device.battery_level,
                "temperature": device.temperature_c,
                "heartbeat_age_s": heartbeat_age_s(device, now),
                "run_id": run.id if run else None,
                "job_id": run.job_id if run else None,
                "progress": _progress(run) if run else None,
            }
        )
    return rows


# ---------------------------------------------------------------- jobs


def _choice(value: str | None, allowed: type[Any], what: str) -> str | None:
    if not value:
        return None
    known = [member.value for member in allowed]
    if value not in known:
        raise InvalidRequest(f"{what} must be one of {', '.join(known)}, not {value!r}")
    return value


def jobs(session: Session, state: str | None, kind: str | None, limit: int) -> list[dict[str, Any]]:
    """The queue and history, newest first, with each job's runs counted by state."""
    state = _choice(state, JobState, "state")
    kind = _choice(kind, JobKind, "kind")
    if not 1 <= limit <= MAX_JOBS:
        raise InvalidRequest(f"limit must be between 1 and {MAX_JOBS}")
    query = sa.select(Job).order_by(Job.created_at.desc()).limit(limit)
    if state:
        query = query.where(Job.state == state)
    if kind:
        query = query.where(Job.kind == kind)
    found = list(session.scalars(query))
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    if found:
        rows = session.execute(
            sa.select(Run.job_id, Run.state, sa.func.count())
            .where(Run.job_id.in_([j.id for j in found]))
            .group_by(Run.job_id, Run.state)
        )
        for job_id, run_state, count in rows:
            counts[job_id][run_state] = count
    return [_job_summary(job, counts[job.id]) for job in found]


def _job_summary(job: Job, runs: dict[str, int]) -> dict[str, Any]:
    finished = sum(n for s, n in runs.items() if s not in (RunState.QUEUED, RunState.RUNNING))
    return {
        "id": job.id,
        "kind": job.kind,
        "state": job.state,
        "model": f"{job.spec.get('model', '')} {job.spec.get('precision', '')}".strip(),
        "selector": job.selector,
        "priority": job.priority,
        "submitted_by": job.submitted_by,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
        "runs_total": sum(runs.values()),
        "runs_finished": finished,
        "runs": runs,
        "final": job.state in FINAL_JOB_STATES,
    }


def _progress(run: Run) -> dict[str, Any]:
    total = int(run.progress.get("total") or 0)
    step = int(run.progress.get("step") or 0)
    if run.state == RunState.SUCCEEDED:
        percent = 100
    else:
        percent = round(100 * step / total) if total else 0
    return {
        "step": step,
        "total": total,
        "stage": run.progress.get("stage", ""),
        "percent": percent,
    }


@dataclass
class JobPage:
    job: dict[str, Any]
    spec: dict[str, Any]
    runs: list[dict[str, Any]]
    images: list[dict[str, Any]]
    timing_columns: list[str]
    simulated: bool
    final: bool
    params: dict[str, Any] = field(default_factory=dict)


def job_page(session: Session, job_id: str) -> JobPage:
    """A job with its runs per phone, their progress, images and per-component timings."""
    job = get_job(session, job_id)
    runs = list(
        session.scalars(sa.select(Run).where(Run.job_id == job.id).order_by(Run.slot, Run.attempt))
    )
    serials = {r.device_serial for r in runs if r.device_serial}
    socs = dict(
        session.execute(
            sa.select(Device.serial, Device.soc).where(Device.serial.in_(serials))
        ).all()
    )
    images = session.execute(
        sa.select(Image.id, Image.run_id, Image.index, Image.prompt, Image.seed)
        .where(Image.run_id.in_([r.id for r in runs]))
        .order_by(Image.run_id, Image.index)
    ).all()
    by_run = {r.id: r for r in runs}
    rows = []
    columns: list[str] = []
    for run in runs:
        timings = component_timings(job.kind, run)
        for name in timings:
            if name not in columns:
                columns.append(name)
        rows.append(
            {
                "id": run.id,
                "slot": run.slot,
                "attempt": run.attempt,
                "serial": run.device_serial,
                "soc": socs.get(run.device_serial or "", ""),
                "state": run.state,
                "simulated": run.simulated,
                "progress": _progress(run),
                "error": run.error,
                "runner": run.result.get("runner"),
                "started_at": run.started_at,
                "finished_at": run.finished_at,
                "duration_s": _seconds(run.started_at, run.finished_at),
                "timings": timings,
            }
        )
    gallery = [
        {
            "id": image_id,
            "url": f"/ui/images/{image_id}",
            "serial": by_run[run_id].device_serial,
            "soc": socs.get(by_run[run_id].device_serial or "", ""),
            "index": index,
            "prompt": prompt,
            "seed": seed,
        }
        for image_id, run_id, index, prompt, seed in images
    ]
    summary = _job_summary(job, _count_states(runs))
    return JobPage(
        job=summary,
        spec=job.spec,
        params=job.spec.get("params", {}),
        runs=rows,
        images=gallery,
        timing_columns=columns,
        simulated=any(r.simulated for r in runs),
        final=summary["final"],
    )


def _count_states(runs: list[Run]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for run in runs:
        counts[run.state] += 1
    return dict(counts)


def _sum(value: Any) -> float | None:
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return float(sum(value))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def component_timings(kind: str, run: Run) -> dict[str, str]:
    """A run's timings per component, formatted: seconds for generate, ms for benchmarks."""
    t, m = run.timings, run.result.get("metrics", {})
    out: dict[str, str] = {}

    def put(label: str, value: float | None, unit: str, digits: int = 2) -> None:
        if value is not None:
            out[label] = f"{value:.{digits}f} {unit}"

    if kind == JobKind.GENERATE:
        put("load", _sum(t.get("load_s")), "s")
        put("text encoder", _sum(t.get("text_encoder_s")), "s", 3)
        put("UNet (all steps)", _sum(t.get("unet_steps_s")), "s")
        put("UNet step mean", _sum(t.get("unet_step_mean_s")), "s", 3)
        put("VAE decoder", _sum(t.get("vae_decoder_s")), "s", 3)
        put("total", _sum(t.get("total_s")), "s")
    elif kind == JobKind.BENCHMARK:
        put("load", _sum(t.get("load_ms")), "ms", 1)
        put("first", _sum(t.get("first_ms")), "ms", 1)
        put("p50", _sum(t.get("p50_ms")), "ms", 1)
        put("p90", _sum(t.get("p90_ms")), "ms", 1)
        put("p99", _sum(t.get("p99_ms")), "ms", 1)
        if isinstance(m.get("npu_share"), int | float):
            out["NPU share"] = f"{100 * m['npu_share']:.0f} %"
    else:
        put("load", _sum(t.get("load_s")), "s")
        put("infer", _sum(t.get("infer_s")), "s", 3)
    put("push", _sum(m.get("push_s")), "s")
    if isinstance(m.get("pushed_bytes"), int | float):
        out["pushed"] = _size(float(m["pushed_bytes"]))
    return out


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


# ---------------------------------------------------------------- benchmarks


@dataclass
class BenchmarkPage:
    models: list[str]
    components: list[str]
    model: str | None
    component: str | None
    distribution: list[dict[str, Any]]
    over_time: dict[str, Any]
    table: list[dict[str, Any]]
    simulated: bool


BENCHMARK_RUNS = 5000  # newest succeeded benchmark runs a page reads


def benchmarks(session: Session, model: str | None, component: str | None) -> BenchmarkPage:
    """Latency per phone for one model and component: the newest run's iterations per phone
    (distribution) and every run's p50 across jobs (over time)."""
    rows = session.execute(
        sa.select(Run, Job.spec, Job.created_at, Device.soc)
        .join(Job, Run.job_id == Job.id)
        .outerjoin(Device, Device.serial == Run.device_serial)
        .where(Job.kind == JobKind.BENCHMARK, Run.state == RunState.SUCCEEDED)
        .order_by(Job.created_at, Run.finished_at)
        .limit(BENCHMARK_RUNS)
    ).all()
    samples = []
    for run, spec, created_at, soc in rows:
        samples.append(
            {
                "run": run,
                "model": f"{spec.get('model', '')}/{spec.get('precision', '')}",
                "component": str(run.result.get("metrics", {}).get("component", "")),
                "created_at": created_at,
                "soc": soc or "",
            }
        )
    models = sorted({s["model"] for s in samples})
    components = sorted({s["component"] for s in samples if s["component"]})
    if model is not None and model not in models:
        raise InvalidRequest(f"no benchmark of model {model!r}; known: {', '.join(models)}")
    if component is not None and component not in components:
        raise InvalidRequest(f"no benchmark of component {component!r}")
    model = model or (samples[-1]["model"] if samples else None)
    chosen = [s for s in samples if s["model"] == model]
    component = component or (chosen[-1]["component"] if chosen else None)
    chosen = [s for s in chosen if s["component"] == component]

    newest: dict[str, dict[str, Any]] = {}
    for sample in chosen:
        newest[sample["run"].device_serial or "?"] = sample
    distribution = []
    table = []
    for serial, sample in sorted(newest.items(), key=lambda kv: (kv[1]["soc"], kv[0])):
        run = sample["run"]
        label = f"{sample['soc']} {serial}".strip()
        iterations = [float(v) for v in run.timings.get("iterations_ms", [])]
        distribution.append(
            {"label": label, "iterations_ms": iterations, "simulated": bool(run.simulated)}
        )
        table.append(
            {
                "label": label,
                "job_id": run.job_id,
                "simulated": bool(run.simulated),
                "iterations": len(iterations),
                **{
                    k: run.timings.get(k)
                    for k in ("load_ms", "first_ms", "p50_ms", "p90_ms", "p99_ms")
                },
                "npu_share": run.result.get("metrics", {}).get("npu_share"),
            }
        )

    jobs_order: list[str] = []
    job_labels: dict[str, str] = {}
    series: dict[str, dict[str, float]] = defaultdict(dict)
    sim: dict[str, bool] = {}
    for sample in chosen:
        run = sample["run"]
        if run.job_id not in job_labels:
            jobs_order.append(run.job_id)
            job_labels[run.job_id] = f"{sample['created_at']:%m-%d %H:%M} {run.job_id[:8]}"
        label = f"{sample['soc']} {run.device_serial}".strip()
        p50 = run.timings.get("p50_ms")
        if isinstance(p50, int | float):
            series[label][run.job_id] = float(p50)
            sim[label] = sim.get(label, False) or bool(run.simulated)
    over_time = {
        "labels": [job_labels[j] for j in jobs_order],
        "series": [
            {
                "label": label,
                "simulated": sim[label],
                "p50_ms": [values.get(j) for j in jobs_order],
            }
            for label, values in sorted(series.items())
        ],
    }
    return BenchmarkPage(
        models=models,
        components=components,
        model=model,
        component=component,
        distribution=distribution,
        over_time=over_time,
        table=table,
        simulated=any(s["run"].simulated for s in chosen),
    )


# ---------------------------------------------------------------- validation


def validations(session: Session, limit: int = 100) -> list[dict[str, Any]]:
    """Validation jobs, newest first, with how many phones have a stored verdict and failed."""
    found = list(
        session.scalars(
            sa.select(Job)
            .where(Job.kind == JobKind.VALIDATE)
            .order_by(Job.created_at.desc())
            .limit(limit)
        )
    )
    verdicts: dict[str, list[bool]] = defaultdict(list)
    if found:
        rows = session.execute(
            sa.select(ValidationResult.job_id, ValidationResult.passed).where(
                ValidationResult.job_id.in_([j.id for j in found]),
                ValidationResult.output == PHONE_ROW,
            )
        )
        for job_id, passed in rows:
            verdicts[job_id].append(passed)
    return [
        {
            **_job_summary(job, {}),
            "phones": len(verdicts[job.id]),
            "failed": verdicts[job.id].count(False),
        }
        for job in found
    ]


def _numbers(scores: dict[str, Any]) -> dict[str, str]:
    return {
        k: f"{v:.4g}"
        for k, v in scores.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


@dataclass
class ValidationPage:
    job: dict[str, Any]
    complete: bool
    passed: bool
    consensus: str
    reference: str
    mode: str
    thresholds: dict[str, float]
    phones: list[dict[str, Any]]
    serials: list[str]
    outputs: list[str]
    agreement: dict[str, dict[str, dict[str, Any]]]
    cells: dict[str, dict[str, dict[str, Any]]]
    simulated: bool


def validation(session: Session, job_id: str) -> ValidationPage:
    """A validation's report as stored by the ingest worker (validation.report.load_report, which
    only reads): per-phone verdicts, the phone-by-phone agreement matrix, and every phone's
    outputs against the reference."""
    report = load_report(session, job_id)
    serials = [p.serial for p in report.phones]
    outputs = sorted({o.output for p in report.phones for o in p.outputs})
    agreement = {
        serial: {
            other: {"agree": bool(cell.get("agree")), "scores": _numbers(cell)}
            for other, cell in row.items()
        }
        for serial, row in report.matrix.items()
    }
    cells = {
        p.serial: {
            o.output: {"passed": o.passed, "reason": o.reason, "scores": _numbers(o.scores)}
            for o in p.outputs
        }
        for p in report.phones
    }
    phones = [
        {
            "serial": p.serial,
            "passed": p.passed,
            "reason": p.reason,
            "outlier": p.serial in report.outliers,
            "scores": _numbers(p.scores),
        }
        for p in report.phones
    ]
    job = get_job(session, job_id)
    return ValidationPage(
        job=_job_summary(job, _count_states(list(job.runs))),
        complete=report.complete,
        passed=report.passed,
        consensus=report.consensus,
        reference=report.reference,
        mode=report.mode,
        thresholds=report.thresholds,
        phones=phones,
        serials=serials,
        outputs=outputs,
        agreement=agreement,
        cells=cells,
        simulated=report.simulated,
    )
