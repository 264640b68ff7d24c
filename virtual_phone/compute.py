"""A virtual phone's compute: ONNX Runtime on the QNN HTP simulator (the phone's `htp_arch`) or CPU.

Also the `hexfleet-onnx-run` tool the phone runs as a subprocess (`python -m
hexfleet.virtual_phone.compute ...`), and the "faulty NPU" that perturbs outputs on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hexfleet.errors import HexfleetError
from hexfleet.models.runtime import TensorSpec, open_session
from hexfleet.runner_env import COMPUTE_MODES, ComputeSettings, perturb


class PhoneSession:
    """A model as the phone runs it (models.runtime on its backend); a faulty NPU perturbs every
    output."""

    def __init__(self, model_path: Path, settings: ComputeSettings) -> None:
        self.settings = settings
        self._session = open_session(
            model_path,
            settings.mode,
            htp_arch=settings.htp_arch,
            allow_cpu_fallback=True,
            threads=1,
        )
        self._seed = int.from_bytes(hashlib.sha256(str(model_path).encode()).digest()[:4], "little")

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._session.inputs

    def providers(self) -> list[str]:
        return self._session.inner.get_providers()

    def run(self, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        results = list(self._session.run(feeds).values())
        if self.settings.faulty_npu > 0:
            results = [
                perturb(r, self.settings.faulty_npu, self._seed + i) for i, r in enumerate(results)
            ]
        return results


def _load_inputs(path: Path, session: PhoneSession) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path) as archive:
            return {name: archive[name] for name in archive.files}
    return {session.inputs[0].name: np.load(path)}


def run_tool(argv: Sequence[str] | None = None) -> int:
    """`hexfleet-onnx-run MODEL INPUT(.npy|.npz) OUTPUT.npy`: run a model once, print timings."""
    parser = argparse.ArgumentParser(prog="hexfleet-onnx-run")
    parser.add_argument("--compute", choices=COMPUTE_MODES, default="htp")
    parser.add_argument("--htp-arch", default="73")
    parser.add_argument("--soc", default="SM8550")
    parser.add_argument("--faulty-npu", type=float, default=0.0)
    parser.add_argument("model", type=Path)
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    args = parser.parse_args(argv)
    settings = ComputeSettings(args.compute, args.htp_arch, args.soc, args.faulty_npu)
    started = time.perf_counter()
    try:
        session = PhoneSession(args.model, settings)
        where = f"htp (htp_arch {settings.htp_arch})" if settings.mode == "htp" else "cpu"
        print(
            f"loaded model on {where} in {(time.perf_counter() - started) * 1000:.0f} ms",
            flush=True,
        )
        feeds = _load_inputs(args.input, session)
        started = time.perf_counter()
        outputs = session.run(feeds)
    except (HexfleetError, OSError, ValueError) as exc:
        print(f"hexfleet-onnx-run: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    elapsed_ms = (time.perf_counter() - started) * 1000
    with args.output.open("wb") as handle:
        np.save(handle, outputs[0])
    print(f"inference {elapsed_ms:.1f} ms (simulated, {settings.mode})", flush=True)
    print(f"providers {','.join(session.providers())}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_tool())
