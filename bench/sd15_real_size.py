"""SD 1.5 at its real size beside tiny-sd: each model step's time and peak memory.

Run: `.venv/bin/python bench/sd15_real_size.py [--skip-real] [--calibration-prompts 2]`
(needs the export extra for the build). Each step is one `hexfleet models ...` process; its wall
time and peak resident memory (the child's own rusage, from os.wait4) are printed per model:
build (SD 1.5 only: cached after the first run), import, quantize w8a16 (calibrated on real
prompts, no HTP check), compile for v73. Uses the data directory of HEXFLEET_DATA_DIR (the real
export is ~4 GB, the store holds ~6 GB more). Push and generation figures are not here.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from hexfleet.settings import Settings

HEXFLEET = str(Path(sys.executable).with_name("hexfleet"))


def run(args: list[str]) -> tuple[float, int]:
    """(seconds, peak RSS bytes) of one `hexfleet models ...` process; exits if it fails."""
    start = time.perf_counter()
    child = subprocess.Popen([HEXFLEET, "models", *args], stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"hexfleet models {' '.join(args)} failed")
    return seconds, usage.ru_maxrss * 1024


def steps(model: str, folder: Path | None, prompts: int) -> list[tuple[str, list[str]]]:
    quantize = ["quantize", model, "--precision", "w8a16", "--no-htp-check"]
    quantize += ["--calibration-prompts", str(prompts), "--calibration-steps", "2"]
    compile_ = ["compile", model, "--htp-arch", "73", "--precision", "w8a16"]
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
    parser.add_argument("--calibration-prompts", type=int, default=2)
    args = parser.parse_args()
    export = Settings().ensure_data_dir() / "exports" / "sd15"
    models = [("tiny-sd", None)] + ([] if args.skip_real else [("sd15", export)])
    print(f"{'model':10} {'step':10} {'time':>10} {'peak RSS':>10}")
    for model, folder in models:
        for step, command in steps(model, folder, args.calibration_prompts):
            seconds, peak = run(command)
            print(f"{model:10} {step:10} {seconds:9.1f}s {peak / 2**30:8.2f}GiB", flush=True)


if __name__ == "__main__":
    main()
