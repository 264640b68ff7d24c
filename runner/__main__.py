"""`hexfleet-runner SPEC_PATH`: run one job, write result.json beside the spec, exit 0 or 1.

Exit status 0 with result.json written, or 1 with one line `hexfleet-runner: <reason>` on stderr
(and no result.json). The environment is read here and nowhere else (device.py says why).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from pydantic import ValidationError

from hexfleet.errors import HexfleetError
from hexfleet.runner import benchmark, generate, infer
from hexfleet.runner.device import Device
from hexfleet.runner_spec import RunnerResult, RunnerSpec

KINDS: dict[str, Callable[[Device, RunnerSpec, Path], RunnerResult]] = {
    "generate": generate.run,
    "benchmark": benchmark.run,
    "infer": infer.run,
}


def fail(reason: str) -> int:
    print(f"hexfleet-runner: {' '.join(reason.split())}", file=sys.stderr, flush=True)
    return 1


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        return fail("usage: hexfleet-runner SPEC_PATH")
    spec_path = Path(argv[0])
    try:
        spec = RunnerSpec.model_validate_json(spec_path.read_bytes())
    except OSError as exc:
        return fail(f"cannot read the spec: {exc.strerror}")
    except ValidationError as exc:
        return fail(f"invalid spec: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}")
    device = Device.from_environment(os.environ)
    job_dir = spec_path.parent
    try:
        result = KINDS[spec.params.kind](device, spec, job_dir)
    except HexfleetError as exc:
        return fail(f"{type(exc).__name__}: {exc}")
    except MemoryError:
        return fail("out of memory")
    tmp = job_dir / "result.json.tmp"
    tmp.write_text(result.model_dump_json(indent=1))
    tmp.replace(job_dir / "result.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
