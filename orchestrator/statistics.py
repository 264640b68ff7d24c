"""Benchmark statistics: the median with a bootstrap confidence interval, tails, spread, drift
within a run, and throttling read from the temperature trace (numpy and scipy, nothing else).

`job_benchmark_stats(session, job_id)` is what the CLI, the API and the dashboard show per phone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sps
from sqlalchemy.orm import Session

from hexfleet.orchestrator.db.schema import Job, Run
from hexfleet.orchestrator.jobs import get_job
from hexfleet.states import RunState

CONFIDENCE = 0.95
# A trend is reported as drift only when it is both significant and large enough to matter.
TREND_ALPHA = 0.01
TREND_MIN_CHANGE = 0.02
# Theil–Sen looks at every pair of points: above this many, consecutive points are binned first.
TREND_MAX_POINTS = 400
# A temperature rise this large over the run, monotone enough to be significant, is sustained.
SUSTAINED_RISE_C = 3.0


def _clean(samples: Iterable[float]) -> np.ndarray:
    values = np.asarray(list(samples), dtype=np.float64)
    return values[np.isfinite(values)]


def median_distribution(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bootstrap distribution of the median, exactly: (sorted values, cumulative probability).

    A resample's median (its middle value; the lower one of two) is at most the k-th smallest
    value exactly when at least ⌈n/2⌉ of its n draws fall among the k smallest, a binomial
    event. So the distribution that resampling estimates is computed instead, in O(n log n) at
    any n, with no Monte Carlo error.
    """
    ordered = np.sort(samples)
    n = len(ordered)
    cdf = sps.binom.sf((n + 1) // 2 - 1, n, np.arange(1, n + 1) / n)
    cdf[-1] = 1.0
    return ordered, cdf


def bootstrap_medians(samples: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`resamples` medians of bootstrap resamples of `samples` (drawn from the exact law)."""
    ordered, cdf = median_distribution(samples)
    picks = np.searchsorted(cdf, rng.random(resamples), side="right")
    return ordered[np.minimum(picks, len(ordered) - 1)]


def median_ci(
    samples: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE
) -> tuple[float, float]:
    """Percentile-bootstrap confidence interval of the median: the (1 − confidence)/2 and
    (1 + confidence)/2 quantiles of its exact bootstrap distribution (`median_distribution`).
    With one sample the interval is that value."""
    values = _clean(samples)
    if len(values) == 0:
        raise ValueError("no samples")
    ordered, cdf = median_distribution(values)
    tail = (1 - confidence) / 2
    low, high = np.searchsorted(cdf, [tail, 1 - tail], side="left")
    last = len(ordered) - 1
    return float(ordered[min(low, last)]), float(ordered[min(high, last)])


@dataclass(frozen=True)
class Trend:
    """Drift of a series over its index: Theil–Sen slope and Spearman's rank correlation."""

    slope: float  # units per step (Theil–Sen, robust to outliers)
    change: float  # slope × (n − 1): how much the series moved over the run
    relative: float  # change / median
    rho: float
    p_value: float
    significant: bool  # p < TREND_ALPHA and |relative| ≥ TREND_MIN_CHANGE


def _binned(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) with at most TREND_MAX_POINTS points: medians of runs of consecutive values."""
    n = len(values)
    if n <= TREND_MAX_POINTS:
        return np.arange(n, dtype=np.float64), values
    edges = np.linspace(0, n, TREND_MAX_POINTS + 1).astype(int)
    x = np.array([(a + b - 1) / 2 for a, b in zip(edges[:-1], edges[1:], strict=True)])
    y = np.array([np.median(values[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)])
    return x, y


def trend(samples: Sequence[float] | np.ndarray, alpha: float = TREND_ALPHA) -> Trend | None:
    """The series' drift, or None with fewer than 5 points or a constant series.

    Consecutive iterations are not independent (a phone warms up), so the p-value is a guide,
    which is why a drift must also be large (TREND_MIN_CHANGE) to be called significant.
    """
    values = _clean(samples)
    if len(values) < 5 or np.ptp(values) == 0:
        return None
    x, y = _binned(values)
    slope = float(sps.theilslopes(y, x).slope)
    rho, p_value = sps.spearmanr(np.arange(len(values)), values)
    change = slope * (len(values) - 1)
    median = float(np.median(values))
    relative = change / median if median else 0.0
    return Trend(
        slope=slope,
        change=change,
        relative=relative,
        rho=float(rho),
        p_value=float(p_value),
        significant=bool(p_value < alpha and abs(relative) >= TREND_MIN_CHANGE),
    )


@dataclass(frozen=True)
class Summary:
    """One series of timings: median with its confidence interval, tails and spread."""

    n: int
    median: float
    ci_low: float
    ci_high: float
    confidence: float
    mean: float
    std: float
    cv: float  # std / mean
    p90: float
    p99: float
    min: float
    max: float
    trend: Trend | None


def summarize(samples: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Summary:
    values = _clean(samples)
    if len(values) == 0:
        raise ValueError("no samples")
    low, high = median_ci(values, confidence)
    mean = float(np.mean(values))
    std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    p90, p99 = np.percentile(values, [90, 99])
    return Summary(
        n=len(values),
        median=float(np.median(values)),
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        mean=mean,
        std=std,
        cv=std / mean if mean else 0.0,
        p90=float(p90),
        p99=float(p99),
        min=float(np.min(values)),
        max=float(np.max(values)),
        trend=trend(values),
    )


@dataclass(frozen=True)
class Thermal:
    """The phone's hottest zone over the timed iterations, against its throttling trip point."""

    start_c: float
    end_c: float
    max_c: float
    trip_c: float | None
    crossed: bool  # the hottest zone reached the trip point: the phone throttles
    rise_c: float  # Theil–Sen change over the run
    sustained_rise: bool


def thermal(trace: Sequence[float] | np.ndarray, trip_c: float | None) -> Thermal | None:
    values = _clean(trace)
    if len(values) == 0:
        return None
    drift = trend(values)
    rise = drift.change if drift else 0.0
    return Thermal(
        start_c=float(values[0]),
        end_c=float(values[-1]),
        max_c=float(np.max(values)),
        trip_c=trip_c,
        crossed=trip_c is not None and bool(np.max(values) >= trip_c),
        rise_c=rise,
        sustained_rise=bool(
            drift is not None and drift.p_value < TREND_ALPHA and rise >= SUSTAINED_RISE_C
        ),
    )


@dataclass(frozen=True)
class Verdict:
    throttled: bool
    reasons: list[str]


def throttling(drift: Trend | None, heat: Thermal | None, agent_says: bool) -> Verdict:
    """Throttled when the trace crossed the trip point, when the phone said so, or when latency
    (`drift`: its trend over one run) grew significantly while the phone kept warming."""
    reasons = []
    if heat is not None and heat.crossed:
        reasons.append(f"reached {heat.max_c:.1f} °C, trip point {heat.trip_c:.1f} °C")
    if agent_says:
        reasons.append("the phone reported thermal throttling")
    if (
        heat is not None
        and heat.sustained_rise
        and drift is not None
        and drift.significant
        and drift.relative > 0
    ):
        reasons.append(
            f"latency {drift.relative:+.1%} over the run "
            f"while the phone warmed {heat.rise_c:.1f} °C"
        )
    return Verdict(bool(reasons), reasons)


def _numbers(value: Any) -> list[float]:
    if isinstance(value, list):
        return [float(v) for v in value if isinstance(v, int | float) and not isinstance(v, bool)]
    return []


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass(frozen=True)
class PhoneStats:
    """A benchmark job's latency on one phone (iterations of all its runs, pooled)."""

    serial: str
    soc: str
    simulated: bool
    runs: int
    latency: Summary
    load_ms: float | None  # median over the phone's runs
    first_ms: float | None
    npu_share: float | None
    thermal: Thermal | None  # of the phone's last run
    throttled: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def phone_stats(serial: str, runs: Sequence[Run]) -> PhoneStats | None:
    """Statistics of one phone's succeeded benchmark runs; None when none has iterations."""
    done = [r for r in runs if r.state == RunState.SUCCEEDED and r.timings.get("iterations_ms")]
    if not done:
        return None
    samples = [v for r in done for v in _numbers(r.timings.get("iterations_ms"))]
    latency = summarize(samples)
    metrics = [r.result.get("metrics", {}) for r in done]
    heats = [
        thermal(_numbers(m.get("temp_trace_c")), _number(m.get("throttle_temp_c"))) for m in metrics
    ]
    verdicts = [
        throttling(trend(_numbers(r.timings["iterations_ms"])), heat, bool(m.get("throttled")))
        for r, m, heat in zip(done, metrics, heats, strict=True)
    ]
    reasons = list(dict.fromkeys(reason for v in verdicts for reason in v.reasons))
    return PhoneStats(
        serial=serial,
        soc=str(metrics[-1].get("soc", "")),
        simulated=any(bool(r.simulated) for r in done),
        runs=len(done),
        latency=latency,
        load_ms=_median([x for r in done if (x := _number(r.timings.get("load_ms"))) is not None]),
        first_ms=_median(
            [x for r in done if (x := _number(r.timings.get("first_ms"))) is not None]
        ),
        npu_share=_median([x for m in metrics if (x := _number(m.get("npu_share"))) is not None]),
        thermal=heats[-1],
        throttled=bool(reasons),
        reasons=reasons,
    )


def newest_attempts(runs: Iterable[Run]) -> list[Run]:
    """The newest attempt of each slot (a lost run's retry replaces it)."""
    newest: dict[int, Run] = {}
    for run in runs:
        if run.slot not in newest or run.attempt > newest[run.slot].attempt:
            newest[run.slot] = run
    return [newest[slot] for slot in sorted(newest)]


def runs_by_phone(runs: Iterable[Run]) -> dict[str, list[Run]]:
    """Newest attempts grouped by the phone that ran them, phones in serial order."""
    grouped: dict[str, list[Run]] = {}
    for run in newest_attempts(runs):
        if run.device_serial:
            grouped.setdefault(run.device_serial, []).append(run)
    return {serial: grouped[serial] for serial in sorted(grouped)}


def benchmark_stats(job: Job) -> list[PhoneStats]:
    """Per-phone latency statistics of a benchmark job (phones without a result are left out)."""
    found = (phone_stats(serial, runs) for serial, runs in runs_by_phone(job.runs).items())
    return [s for s in found if s is not None]


def job_benchmark_stats(session: Session, job_id: str) -> list[PhoneStats]:
    """Per-phone latency statistics of the job `job_id` (NotFound if there is no such job)."""
    return benchmark_stats(get_job(session, job_id))
