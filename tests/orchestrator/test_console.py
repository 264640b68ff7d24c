"""The CLI's benchmark and comparison tables, rendered from the API's own views of stored jobs:
statistics columns present, and every timing labelled simulated or device."""

from __future__ import annotations

from typing import Any

import numpy as np
from benchmark_support import store_benchmark_job, timings
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hexfleet.cli.views import bench_table, compare_table, runs_table
from hexfleet.orchestrator.api.views import ComparisonView, JobView
from hexfleet.orchestrator.compare import compare


def render(table: Table) -> str:
    console = Console(record=True, width=250)
    console.print(table)
    return console.export_text()


def views(engine: Engine) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    rng = np.random.default_rng(5)
    with Session(engine) as session:
        virtual = store_benchmark_job(session, {"vp-1": [timings(rng, 30)]})
        real = store_benchmark_job(
            session, {"vp-1": [timings(rng, 30, median=120.0)]}, simulated=False
        )
        job = JobView.of(virtual, with_runs=True).model_dump(mode="json")
        real_job = JobView.of(real, with_runs=True).model_dump(mode="json")
        comparison = ComparisonView.of(compare(session, virtual.id, real.id))
    return job, real_job, comparison.model_dump(mode="json")


def test_bench_compare_and_runs_tables_show_statistics_labelled_simulated(
    db_engine: Engine,
) -> None:
    job, real_job, comparison = views(db_engine)

    bench = render(bench_table(job))
    assert "simulated timings: QNN HTP simulator" in bench
    for column in ("median ms", "p99 ms", "CV", "trend", "throttled", "timing"):
        assert column in bench
    stats = job["benchmark"][0]["latency"]
    assert f"{stats['median']:.1f} [{stats['ci_low']:.1f}, {stats['ci_high']:.1f}]" in bench
    assert "95% bootstrap CI" in bench

    device = render(bench_table(real_job))
    assert "simulated" not in device and "device" in device

    compared = render(compare_table(comparison))
    assert "simulated timings" in compared and "regression" in compared
    assert "iterations_ms" in compared and "p < 0.01" in compared

    runs = render(runs_table(job))
    assert "simulated" in runs
