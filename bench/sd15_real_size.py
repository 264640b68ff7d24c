"""SD 1.5 at its real size beside tiny-sd: each step's time and peak memory, and the farm's share.

Run: `.venv/bin/python bench/sd15_real_size.py [--skip-real] [--skip-compile] [--farm-only]
[--calibration-prompts 2]` (needs the export extra for the build; no farm may run from the data
directory). Per model:
- each model step is one `hexfleet models ...` process; its wall time and peak resident memory
  (the child's own rusage, from os.wait4) are printed: build (SD 1.5 only, cached after the first
  run), import, quantize w8a16 (calibrated on real prompts, no HTP check), compile for v73
  (QNN finalization mode 1);
- then `hexfleet up` starts the farm (one virtual phone, CPU EP) and `hexfleet generate` runs
  the w8a16 model at 2 steps through it, twice: the first run pushes the model (time, bytes, the
  agent's peak memory), both generate (load, one UNet step, VAE, the runner's peak memory), and
  the farm's overhead is the job's wall time (created → finished) less the push and the runner's
  own time, as a share of that wall time.
Uses the data directory of HEXFLEET_DATA_DIR (the real export is ~4 GB, the store ~6 GB more).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from hexfleet.settings import Settings

HEXFLEET = str(Path(sys.executable).with_name("hexfleet"))


# tiny-sd knows the words of its shapes world only.
PROMPTS = {
    "tiny-sd": "a red circle on the left in a blue background",
    "sd15": "a photo of an astronaut riding a horse on mars",
}


def run(args: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of one `hexfleet models ...` process; exits if it fails."""
    start = time.perf_counter()
    child = subprocess.Popen([HEXFLEET, "models", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"hexfleet models {' '.join(args)} failed")
    return seconds, usage.ru_maxrss * 1024


def farm_cli(*args: str, timeout: float = 3600) -> str:
    done = subprocess.run(
        [HEXFLEET, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        sys.exit(f"hexfleet {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def peak_memory(pid: int) -> int:
    """A live process's resident-memory high-water mark (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def seconds_between(start: str, end: str) -> float:
    return (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)).total_seconds()


def generate(model: str, agent_pid: int) -> list[tuple[str, float, int | None]]:
    """Two generations of `model` (w8a16, CPU EP, 2 steps): rows of (figure, seconds, bytes)."""
    rows: list[tuple[str, float, int | None]] = []
    for attempt in ("first", "second"):
        job = json.loads(
            farm_cli(
                "generate",
                PROMPTS[model],
                "--model",
                model,
                "--precision",
                "w8a16",
                "--runtime",
                "cpu",
                "--steps",
                "2",
                "--json",
            )
        )
        (run_,) = job["runs"]
        timings, metrics = run_["timings"], run_["metrics"]
        wall = seconds_between(job["created_at"], job["finished_at"])
        runner = timings["total_s"]
        push = metrics.get("push_s", 0.0)
        peak = int(metrics["peak_rss_mb"] * 2**20)
        if attempt == "first":
            rows.append(
                (f"push {metrics['pushed_bytes'] / 1e6:.0f} MB", push, peak_memory(agent_pid))
            )
            rows.append(("runner: load", timings["load_s"], None))
            rows.append(("one UNet step", timings["unet_step_mean_s"], peak))
            rows.append(("VAE decode", timings["vae_decoder_s"][0], None))
        overhead = wall - push - runner
        rows.append((f"{attempt} run: wall", wall, None))
        rows.append((f"{attempt} run: farm overhead {overhead / wall:.1%}", overhead, None))
    return rows


def steps(model: str, folder: Path | None, prompts: int) -> list[tuple[str, list[str]]]:
    quantize = ["quantize", model, "--precision", "w8a16", "--no-htp-check"]
    quantize += ["--calibration-prompts", str(prompts), "--calibration-steps", "2"]
    # QNN's fastest finalization: with its default, SD 1.5's VAE decoder does not finish on 24 GB.
    compile_ = ["compile", model, "--htp-arch", "73", "--precision", "w8a16"]
    compile_ += ["--finalization-mode", "1"]
    if folder is None:
        return [("import", ["register", model]), ("quantize", quantize), ("compile", compile_)]
    return [
        ("build", ["build-sd15", "--out", str(folder), "--no-validate"]),
        ("import", ["import", str(folder), "--name", model]),
        ("quantize", quantize),
        ("compile", compile_),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skip-real", action="store_true", help="tiny-sd only")
    parser.add_argument("--skip-compile", action="store_true", help="no compile for v73")
    parser.add_argument("--calibration-prompts", type=int, default=2)
    parser.add_argument(
        "--farm-only", action="store_true", help="only the farm's figures, of the stored models"
    )
    args = parser.parse_args()
    export = Settings().ensure_data_dir() / "exports" / "sd15"
    models = [("tiny-sd", None)] + ([] if args.skip_real else [("sd15", export)])
    print(f"{'model':10} {'step':34} {'time':>10} {'peak RSS':>10}")

    def row(model: str, step: str, seconds: float, peak: int | None) -> None:
        memory = "" if peak is None else f"{peak / 2**30:8.2f}GiB"
        print(f"{model:10} {step:34} {seconds:9.2f}s {memory:>10}", flush=True)

    for model, folder in [] if args.farm_only else models:
        for step, command in steps(model, folder, args.calibration_prompts):
            if step == "compile" and args.skip_compile:
                continue
            row(model, step, *run(command))
    farm_cli("up", "--count", "1", "--compute", "cpu", "--phones", "sm8650", timeout=900)
    try:
        state = json.loads((Settings().data_dir / "farm.json").read_text())
        for model, _ in models:
            for figure in generate(model, state["agent_pid"]):
                row(model, *figure)
    finally:
        farm_cli("down")


if __name__ == "__main__":
    main()
