"""What the program on the phone costs besides inference: the native runner against a Python one.

    .venv/bin/python bench/runner_overhead.py [--runs 8] [--prompts 4] [--steps 20]

Both do the same generation of tiny-sd (fp32, CPU EP, one thread) from the same inputs:

- native: the agent's host side writes the job folder (contract v2: token ids, latents, sampler
  plan), and the native runner runs it inside a virtual phone's sandbox (bubblewrap, the phone's
  own folders), exactly as an emulated x86_64 phone runs it;
- python: a fresh Python process that imports onnxruntime and hexfleet's host pipeline and
  generates the same images — what the Python runner the virtual phones ran before did.

The two alternate run by run (the machine is shared and noisy) and the script prints medians:
process start to first progress line, whole-run wall time, the inference inside it (text
encoder + UNet steps + VAE decoder, as each reports) and the model load, the rest as overhead;
and the host side's share of a native generation (writing the job folder / the whole run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

# The runner build helper is shared with tests/ (tests/support).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from runner_bundle import build_runner, register_bundle  # noqa: E402

from hexfleet.device_agent.execution import write_job  # noqa: E402
from hexfleet.device_agent.phone import runner_dir  # noqa: E402
from hexfleet.messages import RunTask  # noqa: E402
from hexfleet.models.registration import register_tiny_sd  # noqa: E402
from hexfleet.models.store import ModelStore  # noqa: E402
from hexfleet.models.tiny_sd.world import prompt_for, split  # noqa: E402
from hexfleet.progress import PREFIX  # noqa: E402
from hexfleet.runner_env import ComputeSettings  # noqa: E402
from hexfleet.runner_spec import CACHE_DIR, JOBS_DIR  # noqa: E402
from hexfleet.virtual_phone.executables import sandbox_command  # noqa: E402

PYTHON_RUNNER = r"""
import json, sys, time
started = time.perf_counter()
from hexfleet.manifest import Manifest
from hexfleet.models.pipeline import Pipeline
from hexfleet.models.store import ModelStore
print("@progress {\"stage\":\"load\",\"step\":0,\"total\":1}", flush=True)
job = json.loads(open(sys.argv[1]).read())
from pathlib import Path
store = ModelStore(Path(job["store"]))
pipeline = Pipeline.from_manifest(Manifest.model_validate(job["manifest"]), store, "cpu", threads=1)
inference, load = 0.0, pipeline.load_seconds
for prompt in job["prompts"]:
    out = pipeline.generate(prompt, seed=job["seed"], steps=job["steps"])
    t = out.timings
    inference += t.text_encoder + sum(t.unet_steps) + t.vae_decoder
print(json.dumps({"inference_s": inference, "load_s": load}), flush=True)
"""


def _run(argv: list[str], env: dict[str, str] | None) -> tuple[float, float, list[str]]:
    """(seconds to the first progress line, whole wall time, stdout lines)."""
    started = time.perf_counter()
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout is not None
    first = None
    lines = []
    for line in proc.stdout:
        if first is None and line.startswith(PREFIX):
            first = time.perf_counter() - started
        lines.append(line)
    proc.wait()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.read() if proc.stderr else ''}")
    return first or wall, wall, lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hexfleet-runner-bench-"))
    try:
        store = ModelStore(work / "store")
        manifest = register_tiny_sd(store)
        bundle = register_bundle(store, build_runner())
        _, held_out = split()
        prompts = [prompt_for(scene) for scene in held_out[: args.prompts]]
        phone = work / "phone"
        cache = phone / CACHE_DIR.lstrip("/")
        cache.mkdir(parents=True)
        for blob in store.blobs.iterdir():
            os.link(blob, cache / blob.name)
        runners = runner_dir(bundle.sha256)
        (phone / runners.lstrip("/")).mkdir(parents=True)
        for ref in bundle.files:
            shutil.copy2(store.blobs / ref.sha256, phone / runners.lstrip("/") / ref.name)
        os.chmod(phone / runners.lstrip("/") / "hexfleet-runner", 0o755)
        python_job = work / "python-job.json"
        python_job.write_text(json.dumps({
            "store": str(store.root), "manifest": manifest.model_dump(mode="json"),
            "prompts": prompts, "seed": 7, "steps": args.steps,
        }))
        figures: dict[str, dict[str, list[float]]] = {"native": {}, "python": {}}

        def record(name: str, **values: float) -> None:
            for key, value in values.items():
                figures[name].setdefault(key, []).append(value)

        for _ in range(args.runs):
            run_id = str(uuid.uuid4())
            task = RunTask(
                run_id=run_id, job_id=str(uuid.uuid4()), attempt=1, kind="generate",
                model=manifest.name, manifest=manifest.model_dump(mode="json"),
                params={"kind": "generate", "prompts": prompts, "seed": 7, "steps": args.steps,
                        "runtime": "cpu"},
                deadline_s=600,
            )
            mark = time.perf_counter()
            job = write_job(task, manifest, bundle, store, None)
            device_job = f"{JOBS_DIR}/{run_id}"
            folder = phone / device_job.lstrip("/")
            folder.mkdir(parents=True)
            for name, data in job.files.items():
                (folder / name).write_bytes(data)
            host_s = time.perf_counter() - mark
            argv = sandbox_command(phone, "x86_64", f"{runners}/hexfleet-runner",
                                   [f"{device_job}/spec.json"], device_job, work / "state")
            env = {"LD_LIBRARY_PATH": runners, **ComputeSettings(mode="cpu").to_env()}
            first, wall, _ = _run(argv, env)
            timings = json.loads((folder / "result.json").read_text())["timings"]
            inference = (sum(timings["text_encoder_s"]) + sum(timings["unet_steps_s"])
                         + sum(timings["vae_decoder_s"]))
            record("native", first=first, wall=wall, inference=inference, load=timings["load_s"],
                   overhead=wall - inference - timings["load_s"], host=host_s,
                   host_share=host_s / (host_s + wall))
            shutil.rmtree(folder)

            first, wall, lines = _run([sys.executable, "-c", PYTHON_RUNNER, str(python_job)], None)
            done = json.loads(lines[-1])
            record("python", first=first, wall=wall, inference=done["inference_s"],
                   load=done["load_s"], overhead=wall - done["inference_s"] - done["load_s"])
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name: str, key: str) -> float:
        return statistics.median(figures[name][key])

    print(f"tiny-sd fp32, CPU EP, {args.prompts} prompts x {args.steps} steps, "
          f"{args.runs} runs each, alternating; medians")
    print(f"{'':28}{'native':>10}{'python':>10}{'python/native':>15}")
    for key, label in (("first", "start to first progress (s)"), ("wall", "whole run (s)"),
                       ("load", "model load (s)"), ("inference", "inference (s)"),
                       ("overhead", "wall - load - inference (s)")):
        native, python = med("native", key), med("python", key)
        print(f"{label:28}{native:10.3f}{python:10.3f}{python / native:15.1f}")
    print(f"host side (job folder) {med('native', 'host'):.3f} s = "
          f"{100 * med('native', 'host_share'):.1f} % of a native generation (goal <= 3 %)")


if __name__ == "__main__":
    main()
