"""The benchmark job: one component, warm-up then N timed inferences, statistics and placement."""

from __future__ import annotations

import resource
import statistics
import time
from pathlib import Path

import numpy as np

from hexfleet import progress
from hexfleet.models.runtime import TensorSpec
from hexfleet.runner.device import Device, with_device_faults
from hexfleet.runner.models_on_device import cache_store, open_component
from hexfleet.runner.thermal import Zones
from hexfleet.runner_spec import BenchmarkParams, RunnerResult, RunnerSpec


def synthetic_feeds(inputs: list[TensorSpec], seed: int) -> dict[str, np.ndarray]:
    """Inputs of the right shapes and types: token id 0, timestep 500, normal noise elsewhere."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in spec.shape)
        if np.issubdtype(spec.dtype, np.integer):
            feeds[spec.name] = np.zeros(shape, dtype=spec.dtype)
        elif spec.name == "timestep":
            feeds[spec.name] = np.full(shape, 500, dtype=spec.dtype)
        else:
            feeds[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
    return feeds


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(device: Device, spec: RunnerSpec, job_dir: Path) -> RunnerResult:
    params = spec.params
    assert isinstance(params, BenchmarkParams)
    runtime = device.effective_runtime(params.runtime)
    store = cache_store(device, spec, job_dir)
    total = 1 + params.warmup + params.iterations
    started = time.perf_counter()
    session = open_component(
        store, spec.manifest.components[params.component], runtime, spec.htp_arch
    )
    load_ms = (time.perf_counter() - started) * 1000
    progress.report("load", 1, total)
    (graph,) = with_device_faults(device, [session])
    feeds = synthetic_feeds(session.inputs, params.seed)
    mark = time.perf_counter()
    graph.run(feeds)
    first_ms = (time.perf_counter() - mark) * 1000
    for n in range(max(params.warmup - 1, 0)):
        graph.run(feeds)
        progress.report("warmup", 2 + n, total)
    zones = Zones.of(device)
    samples: list[float] = []
    temps: list[float] = []
    for n in range(params.iterations):
        mark = time.perf_counter()
        graph.run(feeds)
        samples.append((time.perf_counter() - mark) * 1000)
        # Read after the clock stopped: sysfs reads never count as inference time.
        temp = zones.max_temp_c()
        if temp is not None or temps:
            temps.append(temp if temp is not None else temps[-1])
        progress.report("iteration", 1 + params.warmup + n + 1, total)
    hottest = zones.hottest()
    thermal: dict[str, object] = {}
    if hottest is not None and len(temps) == len(samples):
        thermal = {"temp_trace_c": temps, "throttle_temp_c": hottest[1]}
    placement = session.placement()
    placed = len(placement.htp_nodes) + len(placement.cpu_nodes)
    return RunnerResult(
        run_id=spec.run_id,
        kind="benchmark",
        runtime=runtime,  # type: ignore[arg-type]
        htp_arch=spec.htp_arch if runtime == "htp" else None,
        simulated=device.virtual,
        timings={
            "load_ms": load_ms,
            "first_ms": first_ms,
            "iterations_ms": samples,
            "mean_ms": statistics.fmean(samples),
            "std_ms": statistics.pstdev(samples),
            "min_ms": min(samples),
            "p50_ms": percentile(samples, 50),
            "p90_ms": percentile(samples, 90),
            "p99_ms": percentile(samples, 99),
        },
        metrics={
            "component": params.component,
            "peak_rss_mb": peak_rss_mb(),
            "npu_nodes": len(placement.htp_nodes),
            "cpu_nodes": len(placement.cpu_nodes),
            "npu_share": len(placement.htp_nodes) / placed if placed else 0.0,
            **thermal,
        },
    )
