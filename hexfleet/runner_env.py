"""The environment a phone may give the runner: a compute override and the runner's failpoints.

A real phone sets none of these (the runner then does what the spec asks). A virtual phone sets
them for every program it starts. `HEXFLEET_RUNNER_COMPUTE=cpu` runs every graph on the CPU EP
(an emulated phone without an NPU simulator); `faulty_npu` and `slow_npu` are the runner's named
failpoints: off unless set, they perturb outputs or stretch inference so that validation and
regression detection can be tested on purpose (runner/CONTRACT.md lists them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ENV_DEVICE_SERIAL = "HEXFLEET_DEVICE_SERIAL"

ComputeMode = Literal["htp", "cpu"]
COMPUTE_MODES: tuple[ComputeMode, ...] = ("htp", "cpu")

ENV_COMPUTE = "HEXFLEET_RUNNER_COMPUTE"
ENV_FAULTY_NPU = "HEXFLEET_RUNNER_FAULTY_NPU"
ENV_SLOW_NPU = "HEXFLEET_RUNNER_SLOW_NPU"


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
        """The environment variables that carry these settings to the runner. `htp` is what
        the spec asks anyway: only `cpu` overrides it, and a healthy NPU sets no failpoint."""
        env = {ENV_COMPUTE: "cpu"} if self.mode == "cpu" else {}
        if self.faulty_npu > 0:
            env[ENV_FAULTY_NPU] = repr(self.faulty_npu)
        if self.slow_npu > 0:
            env[ENV_SLOW_NPU] = repr(self.slow_npu)
        return env
