"""The infer job: the component on given inputs (`input-<i>.npy`) → `output-<i>.npy` tensors."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from hexfleet import progress
from hexfleet.errors import InvalidRequest
from hexfleet.runner.device import Device, with_device_faults
from hexfleet.runner.models_on_device import cache_store, open_component
from hexfleet.runner_spec import InferParams, OutputFile, RunnerResult, RunnerSpec


def run(device: Device, spec: RunnerSpec, job_dir: Path) -> RunnerResult:
    params = spec.params
    assert isinstance(params, InferParams)
    runtime = device.effective_runtime(params.runtime)
    started = time.perf_counter()
    session = open_component(
        cache_store(device, spec, job_dir),
        spec.manifest.components[params.component],
        runtime,
        spec.htp_arch,
    )
    load_s = time.perf_counter() - started
    (graph,) = with_device_faults(device, [session])
    feeds = {}
    for index, name in enumerate(params.inputs):
        path = job_dir / f"input-{index}.npy"
        if not path.is_file():
            raise InvalidRequest(f"input {name!r} is missing (expected {path.name})")
        feeds[name] = np.load(path, allow_pickle=False)
    progress.report("infer", 0, 1)
    mark = time.perf_counter()
    results = graph.run(feeds)
    infer_s = time.perf_counter() - mark
    progress.report("infer", 1, 1)
    outputs = []
    for index, (name, value) in enumerate(results.items()):
        file = f"output-{index}.npy"
        np.save(job_dir / file, value, allow_pickle=False)
        outputs.append(OutputFile(name=file, kind="tensor", index=index, prompt=name))
    return RunnerResult(
        run_id=spec.run_id,
        kind="infer",
        runtime=runtime,  # type: ignore[arg-type]
        htp_arch=spec.htp_arch if runtime == "htp" else None,
        simulated=device.virtual,
        timings={"load_s": load_s, "infer_s": infer_s},
        outputs=outputs,
        metrics={"component": params.component},
    )
