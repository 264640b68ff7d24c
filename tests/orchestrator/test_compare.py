"""`compare` on synthetic timing series with known answers: a 5 % slowdown is flagged on every
seed, pure noise on none; a change must be both significant and larger than the threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
from benchmark_support import store_benchmark_job, timings
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hexfleet.errors import InvalidRequest, NotFound
from hexfleet.orchestrator.compare import compare, difference
from hexfleet.states import JobState

SEEDS = range(200)


def test_a_known_5_percent_slowdown_is_flagged_on_every_seed() -> None:
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        found = difference(timings(rng, 50), timings(rng, 50, median=105.0), seed=seed)
        assert found.verdict == "regression", (seed, found)
        assert found.p_value is not None and found.p_value < 0.01
        assert found.ci_low <= 0.05 <= found.ci_high or abs(found.change - 0.05) < 0.02


def test_pure_noise_is_never_flagged_and_its_p_values_are_honest() -> None:
    p_values = []
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        found = difference(timings(rng, 50), timings(rng, 50), seed=seed)
        assert found.verdict == "unchanged", (seed, found)
        assert found.p_value is not None
        p_values.append(found.p_value)
    # Mann–Whitney alone: about 1 % of pure-noise pairs have p < 0.01, half have p < 0.5.
    assert sum(p < 0.01 for p in p_values) <= 6
    assert 0.4 <= float(np.mean(np.array(p_values) < 0.5)) <= 0.6


def test_a_speedup_is_an_improvement_not_a_regression() -> None:
    rng = np.random.default_rng(1)
    found = difference(timings(rng, 50), timings(rng, 50, median=90.0))
    assert found.verdict == "improvement"
    assert found.change == pytest.approx(-0.10, abs=0.02)
    assert found.ci_low < found.change < found.ci_high < 0


def test_significant_but_small_and_large_but_noisy_changes_are_not_flagged() -> None:
    rng = np.random.default_rng(2)
    small = difference(timings(rng, 3000), timings(rng, 3000, median=101.0))
    assert small.p_value is not None and small.p_value < 0.01
    assert small.verdict == "unchanged", "1 % is below the 3 % threshold"
    assert difference(
        timings(rng, 3000), timings(rng, 3000, median=101.0), threshold=0.005
    ).verdict == ("regression")
    noisy = difference(timings(rng, 6, cv=0.3), timings(rng, 6, median=110.0, cv=0.3))
    assert noisy.p_value is not None and noisy.p_value >= 0.01
    assert noisy.verdict == "unchanged", "10 % within 30 % noise on six iterations proves nothing"
    few = difference([100.0, 101.0, 99.0], [150.0, 151.0, 149.0])
    assert few.verdict == "too few samples" and few.p_value is None
    assert few.change == pytest.approx(0.5)


def test_compare_pairs_phones_and_metrics_of_two_stored_jobs(db_engine: Engine) -> None:
    rng = np.random.default_rng(9)
    with Session(db_engine) as session:
        base = store_benchmark_job(
            session,
            {"vp-1": [timings(rng, 40)], "vp-2": [timings(rng, 40)], "vp-3": [timings(rng, 40)]},
        )
        slower = store_benchmark_job(
            session,
            {
                "vp-1": [timings(rng, 40, median=110.0)],
                "vp-2": [timings(rng, 40)],
                "vp-4": [timings(rng, 40)],
            },
            spec={"kind": "benchmark", "model": "tiny-sd", "params": {"component": "vae_decoder"}},
        )
        result = compare(session, base.id, slower.id)
        running = store_benchmark_job(session, {"vp-1": [timings(rng, 40)]}, state=JobState.RUNNING)
        with pytest.raises(InvalidRequest, match="still running"):
            compare(session, base.id, running.id)
        with pytest.raises(NotFound):
            compare(session, base.id, "00000000-0000-0000-0000-000000000000")
        with pytest.raises(InvalidRequest):
            compare(session, base.id, "; rm -rf /")
        nothing = store_benchmark_job(session, {"vp-9": [timings(rng, 40)]})
        with pytest.raises(InvalidRequest, match="no phone with timings in both"):
            compare(session, base.id, nothing.id)
    latency = {c.serial: c for c in result.changes if c.metric == "iterations_ms"}
    assert sorted(latency) == ["vp-1", "vp-2"]
    assert latency["vp-1"].verdict == "regression" and latency["vp-1"].unit == "ms"
    assert latency["vp-1"].change == pytest.approx(0.10, abs=0.02)
    assert latency["vp-2"].verdict == "unchanged"
    assert all(c.simulated for c in result.changes)
    assert [c.serial for c in result.regressions] == ["vp-1"]
    assert result.unpaired == ["vp-3", "vp-4"]
    assert result.setup_differences == ["params.component: unet → vae_decoder"]
    first = next(c for c in result.changes if c.metric == "first_ms")
    assert first.verdict == "too few samples", "one run per phone: one first-inference sample"
    assert result.as_dict()["regressions"] == 1


def test_with_repeats_a_change_must_also_exceed_the_run_to_run_spread(db_engine: Engine) -> None:
    """Whole runs shift (host load, a phone's state): 5 % between jobs whose runs move ±10 %
    among themselves is not a regression, however many iterations say p < 0.01."""
    rng = np.random.default_rng(12)

    def runs(median: float) -> list[np.ndarray]:
        return [timings(rng, 200, median=median * shift) for shift in (0.9, 1.0, 1.1)]

    with Session(db_engine) as session:
        base = store_benchmark_job(session, {"vp-1": runs(100.0)})
        shifted = store_benchmark_job(session, {"vp-1": runs(105.0)})
        much_slower = store_benchmark_job(session, {"vp-1": runs(140.0)})
        within = compare(session, base.id, shifted.id)
        beyond = compare(session, base.id, much_slower.id)
    (small,) = [c for c in within.changes if c.metric == "iterations_ms"]
    assert small.p_value is not None and small.p_value < 0.01
    assert small.run_spread == pytest.approx(0.2, abs=0.02)
    assert small.verdict == "within run spread"
    (large,) = [c for c in beyond.changes if c.metric == "iterations_ms"]
    assert large.verdict == "regression"
    first = next(c for c in within.changes if c.metric == "first_ms")
    assert first.run_spread is None and first.n_a == 3, "scalars are already one sample per run"
