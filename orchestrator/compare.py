"""Two jobs' timings compared phone by phone and metric by metric: the change in median with a
bootstrap interval and a Mann–Whitney U test; a regression is a change above a threshold AND p < α.

Both conditions are needed: with thousands of iterations a 0.5 % change is "significant" yet
irrelevant, and with a handful a 10 % change can be noise. The iterations of one run share the
state of their phone and host, so they cannot show how much a whole run moves from one run to the
next; when a phone ran a job more than once, a change must also exceed that run-to-run spread.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats as sps
from sqlalchemy.orm import Session

from hexfleet.errors import Conflict, InvalidRequest
from hexfleet.orchestrator.db.schema import Job, Run
from hexfleet.orchestrator.jobs import get_job
from hexfleet.orchestrator.statistics import CONFIDENCE, bootstrap_medians, runs_by_phone
from hexfleet.states import FINAL_JOB_STATES, RunState

THRESHOLD = 0.03
# Draws of each job's median for the interval of their ratio (seeded: the same data, the same CI).
RESAMPLES = 4000
SEED = 0
ALPHA = 0.01
# Below five samples a side, no two-sided Mann–Whitney p-value can fall under 0.01.
MIN_SAMPLES = 5
# Per-run scalar timings: compared over a phone's runs when the jobs repeated enough times.
SCALAR_TIMINGS = ("load_ms", "first_ms", "load_s", "total_s", "infer_s")

Verdict = Literal["regression", "improvement", "unchanged", "within run spread", "too few samples"]


@dataclass(frozen=True)
class Difference:
    """How series `b` differs from series `a` (both timings: larger is slower)."""

    n_a: int
    n_b: int
    median_a: float
    median_b: float
    change: float  # median_b / median_a − 1
    ci_low: float
    ci_high: float
    p_value: float | None  # two-sided Mann–Whitney U; None with too few samples
    run_spread: float | None  # relative range of per-run medians; None with one run a side
    verdict: Verdict


def run_spread(
    runs_a: Sequence[Sequence[float]], runs_b: Sequence[Sequence[float]]
) -> float | None:
    """How far whole runs of the same job moved apart: the larger of the two jobs' (max − min) /
    median of their runs' medians; None when neither job ran more than once."""
    spreads = []
    for runs in (runs_a, runs_b):
        medians = [float(np.median(r)) for r in runs if len(r)]
        if len(medians) >= 2 and np.median(medians) > 0:
            spreads.append((max(medians) - min(medians)) / float(np.median(medians)))
    return max(spreads) if spreads else None


def difference(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    threshold: float = THRESHOLD,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = SEED,
    spread: float | None = None,
) -> Difference:
    """Change of the median from `a` to `b`, its percentile-bootstrap interval (ratio of medians
    of independent resamples, seeded), the Mann–Whitney p-value, and the verdict. `spread` is
    the run-to-run spread (`run_spread`): a significant change no larger than it is not flagged."""
    xa = np.asarray(a, dtype=np.float64)
    xb = np.asarray(b, dtype=np.float64)
    xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
    if len(xa) == 0 or len(xb) == 0:
        raise ValueError("both series need samples")
    median_a, median_b = float(np.median(xa)), float(np.median(xb))
    if median_a <= 0:
        raise ValueError("the baseline's median must be positive")
    rng = np.random.default_rng(seed)
    ratios = bootstrap_medians(xb, resamples, rng) / np.maximum(
        bootstrap_medians(xa, resamples, rng), np.finfo(np.float64).tiny
    )
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios - 1, [tail, 100 - tail])
    change = median_b / median_a - 1
    p_value: float | None = None
    verdict: Verdict = "too few samples"
    if min(len(xa), len(xb)) >= MIN_SAMPLES:
        p = float(sps.mannwhitneyu(xb, xa, alternative="two-sided").pvalue)
        p_value = 1.0 if math.isnan(p) else p
        verdict = "unchanged"
        if p_value < alpha and abs(change) > threshold:
            if spread is not None and abs(change) <= spread:
                verdict = "within run spread"
            else:
                verdict = "regression" if change > 0 else "improvement"
    return Difference(
        n_a=len(xa),
        n_b=len(xb),
        median_a=median_a,
        median_b=median_b,
        change=change,
        ci_low=float(low),
        ci_high=float(high),
        p_value=p_value,
        run_spread=spread,
        verdict=verdict,
    )


@dataclass(frozen=True)
class Change:
    """One phone × one metric of the comparison."""

    serial: str
    soc: str
    metric: str
    unit: str
    simulated: bool  # either job's runs on this phone had simulated timings
    n_a: int
    n_b: int
    median_a: float
    median_b: float
    change: float
    ci_low: float
    ci_high: float
    p_value: float | None
    run_spread: float | None
    verdict: Verdict


@dataclass(frozen=True)
class Comparison:
    job_a: str
    job_b: str
    threshold: float
    alpha: float
    confidence: float
    changes: list[Change]
    setup_differences: list[str] = field(default_factory=list)  # what differs in the requests
    unpaired: list[str] = field(default_factory=list)  # phones that ran only one of the jobs

    @property
    def regressions(self) -> list[Change]:
        return [c for c in self.changes if c.verdict == "regression"]

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "regressions": len(self.regressions)}


def _unit(metric: str) -> str:
    return metric.rsplit("_", 1)[-1] if metric.endswith(("_ms", "_s")) else ""


def _numbers(values: Any) -> list[float]:
    return [
        float(v)
        for v in values
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]


def timing_series(runs: Sequence[Run]) -> dict[str, list[list[float]]]:
    """A phone's timing series by metric, one list per succeeded run (every iteration or step)."""
    series: dict[str, list[list[float]]] = {}
    for run in runs:
        if run.state != RunState.SUCCEEDED:
            continue
        for name, value in run.timings.items():
            if isinstance(value, list):
                numbers = _numbers(value)
                if numbers and len(numbers) == len(value):
                    series.setdefault(name, []).append(numbers)
    return series


def timing_samples(runs: Sequence[Run]) -> dict[str, list[float]]:
    """A phone's timings by metric: series pooled over its succeeded runs, and per-run scalars
    (load, first inference, total) as one sample per run."""
    samples = {
        name: [v for one in runs_of for v in one] for name, runs_of in timing_series(runs).items()
    }
    for run in runs:
        if run.state != RunState.SUCCEEDED:
            continue
        for name in SCALAR_TIMINGS:
            if name in run.timings:
                samples.setdefault(name, []).extend(_numbers([run.timings[name]]))
    return {name: values for name, values in samples.items() if values}


def _flat(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in spec.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setup_differences(job_a: Job, job_b: Job) -> list[str]:
    """What the two requests asked differently (model, precision, params ...), as `key: a → b`."""
    ignore = {"model_id", "version", "priority", "deadline_s"}
    a = {k: v for k, v in _flat(job_a.spec).items() if k not in ignore}
    b = {k: v for k, v in _flat(job_b.spec).items() if k not in ignore}
    return [
        f"{key}: {a.get(key)} → {b.get(key)}" for key in sorted(a | b) if a.get(key) != b.get(key)
    ]


def _finished(job: Job) -> Job:
    if job.state not in FINAL_JOB_STATES:
        raise Conflict(f"job {job.id} is still {job.state}; compare it once it has finished")
    return job


def compare_jobs(
    job_a: Job,
    job_b: Job,
    threshold: float = THRESHOLD,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> Comparison:
    if not 0 <= threshold < 10:
        raise InvalidRequest(f"the threshold must be a fraction in [0, 10), not {threshold}")
    if not 0 < alpha < 1 or not 0 < confidence < 1:
        raise InvalidRequest("alpha and confidence must be in (0, 1)")
    phones_a, phones_b = runs_by_phone(job_a.runs), runs_by_phone(job_b.runs)
    changes = []
    for serial in sorted(phones_a.keys() & phones_b.keys()):
        runs_a, runs_b = phones_a[serial], phones_b[serial]
        samples_a, samples_b = timing_samples(runs_a), timing_samples(runs_b)
        series_a, series_b = timing_series(runs_a), timing_series(runs_b)
        simulated = any(bool(r.simulated) for r in [*runs_a, *runs_b] if r.simulated is not None)
        soc = next(
            (
                str(r.result["metrics"]["soc"])
                for r in runs_b
                if "soc" in r.result.get("metrics", {})
            ),
            "",
        )
        for metric in sorted(samples_a.keys() & samples_b.keys()):
            spread = None
            if metric in series_a and metric in series_b:
                spread = run_spread(series_a[metric], series_b[metric])
            diff = difference(
                samples_a[metric], samples_b[metric], threshold, alpha, confidence, spread=spread
            )
            changes.append(
                Change(
                    serial=serial,
                    soc=soc,
                    metric=metric,
                    unit=_unit(metric),
                    simulated=simulated,
                    **asdict(diff),
                )
            )
    if not changes:
        raise Conflict(
            f"jobs {job_a.id} and {job_b.id} have no phone with timings in both "
            "(compare jobs of the same kind that succeeded on the same phones)"
        )
    return Comparison(
        job_a=job_a.id,
        job_b=job_b.id,
        threshold=threshold,
        alpha=alpha,
        confidence=confidence,
        changes=changes,
        setup_differences=setup_differences(job_a, job_b),
        unpaired=sorted(phones_a.keys() ^ phones_b.keys()),
    )


def compare(
    session: Session,
    job_a: str,
    job_b: str,
    threshold: float = THRESHOLD,
    alpha: float = ALPHA,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """Compare the finished jobs `job_a` (baseline) and `job_b` stored in the database."""
    return compare_jobs(
        _finished(get_job(session, job_a)),
        _finished(get_job(session, job_b)),
        threshold,
        alpha,
        confidence,
    )
