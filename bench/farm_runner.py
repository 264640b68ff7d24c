"""A contract-faithful stand-in for the on-device runner, so farm benchmarks measure the farm.

It keeps runner/CONTRACT.md: reads spec.json (its only argument), prints
`@progress` lines, writes a valid result.json (a `RunnerResult`, no output files) last, exits 0.
It does no inference: it sleeps for the number of seconds in the file named by `--delay-file`
(0 if the file is absent), spreading one `unet` progress line per step over that time. Standard
library only, started with `python -S` (about 30 ms of CPU per run); the benches use its native
twin bench/farm_runner.c (about 1 ms) wherever a C compiler is found.

Usage (as a virtual phone's program command): python -S farm_runner.py --delay-file PATH SPEC
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _delay(path: str) -> float:
    try:
        return max(0.0, float(Path(path).read_text().strip() or 0))
    except (OSError, ValueError):
        return 0.0


def _process_age() -> float:
    """Seconds since this process was created (its interpreter's start-up included), to the
    kernel's clock tick; 0 where /proc is not there."""
    try:
        fields = Path("/proc/self/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)


def _progress(stage: str, step: int, total: int) -> None:
    print("@progress " + json.dumps({"stage": stage, "step": step, "total": total},
                                    separators=(",", ":")), flush=True)


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    if len(argv) != 3 or argv[0] != "--delay-file":
        print("hexfleet-runner: usage: farm_runner.py --delay-file PATH SPEC", file=sys.stderr)
        return 1
    spec_path = Path(argv[2])
    try:
        spec = json.loads(spec_path.read_text())
    except (OSError, ValueError) as exc:
        print(f"hexfleet-runner: cannot read the spec: {exc}", file=sys.stderr)
        return 1
    if spec.get("version") != 1:
        print(f"hexfleet-runner: unsupported spec version {spec.get('version')!r}", file=sys.stderr)
        return 1
    params = spec.get("params", {})
    kind = params.get("kind", "generate")
    runtime = params.get("runtime", "htp")
    steps = int(params.get("steps") or 1)
    delay = _delay(argv[1])
    _progress("load", 1, 1)
    load_s = time.perf_counter() - started
    step_times = []
    for step in range(1, steps + 1):
        mark = time.perf_counter()
        time.sleep(delay / steps)
        step_times.append(time.perf_counter() - mark)
        _progress("unet", step, steps)
    result = {
        "version": 1,
        "run_id": spec["run_id"],
        "kind": kind,
        "runtime": runtime,
        "htp_arch": spec.get("htp_arch") if runtime == "htp" else None,
        "simulated": True,
        "timings": {
            "load_s": load_s,
            "text_encoder_s": [],
            "unet_steps_s": step_times,
            "unet_step_mean_s": sum(step_times) / len(step_times),
            "vae_decoder_s": [],
            "images": [],
            "total_s": time.perf_counter() - started,
            "process_s": _process_age(),
            "stand_in": True,
        },
        "metrics": {"steps": steps, "guidance": params.get("guidance"),
                    "scheduler": params.get("scheduler")},
        "outputs": [],
    }
    tmp = spec_path.with_name("result.json.tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(spec_path.with_name("result.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
