"""A virtual phone's compute: ONNX Runtime on the QNN HTP simulator (the phone's `htp_arch`) or CPU.

Also the `hexfleet-onnx-run` tool the phone runs as a subprocess (`python -m
device_agent.virtual.compute ...`), and the "faulty NPU" that perturbs outputs on purpose.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from hexfleet.errors import HexfleetError
from models.runtime import TensorSpec, open_session

ComputeMode = Literal["htp", "cpu"]
COMPUTE_MODES: tuple[ComputeMode, ...] = ("htp", "cpu")

# Environment variables a phone sets for the programs it runs (the runner reads them).
ENV_COMPUTE = "HEXFLEET_VIRTUAL_COMPUTE"
ENV_HTP_ARCH = "HEXFLEET_VIRTUAL_HTP_ARCH"
ENV_SOC = "HEXFLEET_VIRTUAL_SOC"
ENV_FAULTY_NPU = "HEXFLEET_VIRTUAL_FAULTY_NPU"
ENV_SLOW_NPU = "HEXFLEET_VIRTUAL_SLOW_NPU"


@dataclass(frozen=True)
class ComputeSettings:
    """How a phone runs models: backend, Hexagon arch, how faulty its NPU is (0 = healthy) and
    how much slower than the simulator it is (0.05: every inference takes 5 % longer)."""

    mode: ComputeMode = "htp"
    htp_arch: str = "73"
    soc: str = "SM8550"
    faulty_npu: float = 0.0
    slow_npu: float = 0.0

    def to_env(self) -> dict[str, str]:
        """The environment variables that carry these settings to a program."""
        return {
            ENV_COMPUTE: self.mode,
            ENV_HTP_ARCH: self.htp_arch,
            ENV_SOC: self.soc,
            ENV_FAULTY_NPU: repr(self.faulty_npu),
            ENV_SLOW_NPU: repr(self.slow_npu),
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ComputeSettings:
        """Read settings back from a program's environment (defaults where a variable is unset)."""
        mode = env.get(ENV_COMPUTE, "htp")
        if mode not in COMPUTE_MODES:
            raise ValueError(f"{ENV_COMPUTE}={mode!r}: expected one of {COMPUTE_MODES}")
        return cls(
            mode=mode,  # type: ignore[arg-type]
            htp_arch=env.get(ENV_HTP_ARCH, "73"),
            soc=env.get(ENV_SOC, "SM8550"),
            faulty_npu=float(env.get(ENV_FAULTY_NPU, "0") or 0),
            slow_npu=max(0.0, float(env.get(ENV_SLOW_NPU, "0") or 0)),
        )


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


def perturb(array: np.ndarray, magnitude: float, seed: int) -> np.ndarray:
    """What a faulty NPU does: add noise of `magnitude` times the array's spread."""
    if not np.issubdtype(array.dtype, np.floating):
        return array
    rng = np.random.default_rng(seed)
    spread = float(np.std(array)) or 1.0
    noise = rng.standard_normal(array.shape) * magnitude * spread
    return (array + noise).astype(array.dtype)


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
