"""The environment a phone gives the runner: its filesystem root, the compute it offers, failpoints.

A real phone sets none of these (the runner then runs at `/` with what the spec asks). A virtual
phone sets them for every program it starts. `faulty_npu` and `slow_npu` are the runner's named
failpoints: off unless set, they perturb outputs or stretch inference so that validation and
regression detection can be tested on purpose (docs/architecture.md lists them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

ENV_DEVICE_ROOT = "HEXFLEET_DEVICE_ROOT"
ENV_DEVICE_SERIAL = "HEXFLEET_DEVICE_SERIAL"

ComputeMode = Literal["htp", "cpu"]
COMPUTE_MODES: tuple[ComputeMode, ...] = ("htp", "cpu")

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


def perturb(array: np.ndarray, magnitude: float, seed: int) -> np.ndarray:
    """What a faulty NPU does: add noise of `magnitude` times the array's spread."""
    if not np.issubdtype(array.dtype, np.floating):
        return array
    rng = np.random.default_rng(seed)
    spread = float(np.std(array)) or 1.0
    noise = rng.standard_normal(array.shape) * magnitude * spread
    return (array + noise).astype(array.dtype)
