"""Benchmark statistics on synthetic series with known answers: the median's bootstrap interval
covers the true median about as often as promised, tails and spread match their definitions,
drift and throttling are found when they are there and not when they are not.
"""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_support import store_benchmark_job, timings
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hexfleet.errors import InvalidRequest, NotFound
from hexfleet.orchestrator.statistics import (
    bootstrap_medians,
    job_benchmark_stats,
    median_ci,
    summarize,
    thermal,
    throttling,
    trend,
)


def test_the_median_interval_covers_the_true_median_about_95_percent_of_the_time() -> None:
    true_median = 100.0  # lognormal around 100 without outliers: its median is exactly 100
    covered = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        low, high = median_ci(timings(rng, 40, cv=0.05, outliers=0.0))
        covered += low <= true_median <= high
    assert 0.90 <= covered / 200 <= 0.99, covered


def test_the_interval_is_exact_and_narrows_with_more_iterations() -> None:
    rng = np.random.default_rng(3)
    few, many = timings(rng, 20, cv=0.05), timings(rng, 2000, cv=0.05)
    assert median_ci(few) == median_ci(few), "computed, not sampled: the same data, same interval"
    (low_few, high_few), (low_many, high_many) = median_ci(few), median_ci(many)
    assert low_few <= float(np.median(few)) <= high_few
    assert high_many - low_many < (high_few - low_few) / 3
    assert median_ci([7.0]) == (7.0, 7.0)
    with pytest.raises(ValueError):
        median_ci([])


def test_the_exact_bootstrap_law_is_what_resampling_estimates() -> None:
    rng = np.random.default_rng(6)
    values = timings(rng, 31, cv=0.05)
    brute = np.median(values[rng.integers(0, 31, size=(20000, 31))], axis=1)
    ordered = np.sort(values)
    low, high = median_ci(values)
    for exact, q in ((low, 0.025), (high, 0.975)):
        sampled = np.quantile(brute, q, method="inverted_cdf")
        # The same order statistic, or its neighbour (Monte Carlo error of the brute force).
        assert abs(np.searchsorted(ordered, exact) - np.searchsorted(ordered, sampled)) <= 1
    drawn = bootstrap_medians(values, 20000, np.random.default_rng(1))
    assert abs(np.mean(drawn) - np.mean(brute)) < 0.05 * np.std(brute)
    assert abs(np.std(drawn) - np.std(brute)) < 0.05 * np.std(brute)


def test_summary_tails_and_spread() -> None:
    values = timings(np.random.default_rng(5), 500, cv=0.04, outliers=0.05)
    summary = summarize(values)
    assert summary.n == 500
    assert summary.median == pytest.approx(np.median(values))
    assert summary.p90 == pytest.approx(np.percentile(values, 90))
    assert summary.p99 == pytest.approx(np.percentile(values, 99))
    assert summary.cv == pytest.approx(np.std(values, ddof=1) / np.mean(values))
    assert summary.min <= summary.ci_low <= summary.median <= summary.ci_high <= summary.p90
    assert summary.p99 > summary.p90 * 1.1, "the 5 % slow outliers show in the tail"
    assert summary.trend is not None and not summary.trend.significant


def test_a_steady_slowdown_within_a_run_is_a_trend_and_noise_is_not() -> None:
    rng = np.random.default_rng(11)
    drifting = timings(rng, 60, cv=0.01) * np.linspace(1.0, 1.08, 60)
    found = trend(drifting)
    assert found is not None and found.significant
    assert found.relative == pytest.approx(0.08, abs=0.02)
    assert found.rho > 0.5 and found.p_value < 0.01
    # Pure noise: about the nominal 1 % of series show a "trend" with p < 0.01, not more.
    false_alarms = sum(
        bool((t := trend(timings(np.random.default_rng(s), 60))) and t.significant)
        for s in range(1000)
    )
    assert false_alarms <= 20, false_alarms
    assert trend([1.0, 2.0, 3.0]) is None, "too few points"
    assert trend([5.0] * 10) is None, "a constant series has no trend"


def test_trend_on_a_long_series_is_binned_and_still_right() -> None:
    rng = np.random.default_rng(2)
    drifting = timings(rng, 5000, cv=0.02) * np.linspace(1.0, 1.05, 5000)
    found = trend(drifting)
    assert found is not None and found.significant
    assert found.relative == pytest.approx(0.05, abs=0.01)


def test_throttling_from_the_temperature_trace() -> None:
    rng = np.random.default_rng(4)
    warming = np.linspace(40.0, 70.0, 30) + rng.normal(0, 0.3, 30)
    slowing = timings(rng, 30, cv=0.01) * np.linspace(1.0, 1.1, 30)
    steady = timings(rng, 30, cv=0.01)

    hot = thermal(np.append(warming, 86.0), trip_c=85.0)
    assert hot is not None and hot.crossed and hot.max_c == 86.0
    assert throttling(trend(steady), hot, agent_says=False).throttled

    warm = thermal(warming, trip_c=85.0)
    assert warm is not None and not warm.crossed and warm.sustained_rise
    assert warm.rise_c == pytest.approx(30.0, abs=2.0)
    verdict = throttling(trend(slowing), warm, agent_says=False)
    assert verdict.throttled and "while the phone warmed" in verdict.reasons[0]
    assert not throttling(trend(steady), warm, agent_says=False).throttled, "warm but not slower"

    flat = thermal(np.full(30, 40.0) + rng.normal(0, 0.2, 30), trip_c=85.0)
    assert flat is not None and not flat.sustained_rise
    assert not throttling(trend(slowing), flat, agent_says=False).throttled, "slower, not hotter"
    assert throttling(None, None, agent_says=True).reasons == [
        "the phone reported thermal throttling"
    ]
    assert thermal([], trip_c=85.0) is None
    assert not thermal([90.0, 91.0], trip_c=None).crossed  # type: ignore[union-attr]


def test_job_benchmark_stats_pools_each_phones_runs(db_engine: Engine) -> None:
    rng = np.random.default_rng(8)
    trace = [40.0 + i for i in range(20)]
    with Session(db_engine) as session:
        job = store_benchmark_job(
            session,
            {
                "vp-b": [timings(rng, 20, median=200.0)],
                "vp-a": [timings(rng, 20), timings(rng, 20)],
            },
            metrics={"temp_trace_c": trace, "throttle_temp_c": 55.0},
        )
        found = job_benchmark_stats(session, job.id)
        with pytest.raises(NotFound):
            job_benchmark_stats(session, "00000000-0000-0000-0000-000000000000")
        with pytest.raises(InvalidRequest):
            job_benchmark_stats(session, "not-a-job")
    assert [s.serial for s in found] == ["vp-a", "vp-b"]
    pooled, single = found
    assert pooled.runs == 2 and pooled.latency.n == 40
    assert single.latency.median == pytest.approx(200.0, rel=0.03)
    assert pooled.simulated and pooled.soc == "SM8550" and pooled.load_ms == 50.0
    assert pooled.thermal is not None and pooled.thermal.crossed and pooled.throttled
    assert pooled.as_dict()["latency"]["ci_low"] <= pooled.latency.median
