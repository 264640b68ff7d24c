"""What the runner knows of the phone it runs on: where `/` is, its NPU arch, whether it is virtual.

On a real phone `/` is `/` and the facts come from the phone. A virtual phone starts the runner as
a host process and hands these over in the process environment (`from_environment`, read once by
`__main__`): its folder on the host, its compute mode, Hexagon arch, and any injected NPU fault.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from hexfleet.errors import InvalidRequest
from hexfleet.models.runtime import TensorSpec
from hexfleet.runner_env import ENV_DEVICE_ROOT, ComputeSettings, perturb


@dataclass(frozen=True)
class Device:
    root: Path
    virtual: bool
    compute: ComputeSettings

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Device:
        root = env.get(ENV_DEVICE_ROOT)
        if root is None:
            return cls(Path("/"), False, ComputeSettings.from_env(env))
        return cls(Path(root).resolve(), True, ComputeSettings.from_env(env))

    def path(self, device_path: str) -> Path:
        """The host path of an absolute device path, never outside the device's root."""
        pure = PurePosixPath(device_path)
        if not pure.is_absolute() or ".." in pure.parts:
            raise InvalidRequest(f"device path {device_path!r} must be absolute without '..'")
        host = (self.root / pure.relative_to("/")).resolve()
        if host != self.root and self.root not in host.parents:
            raise InvalidRequest(f"device path {device_path!r} leaves the device's filesystem")
        return host

    def effective_runtime(self, requested: str) -> str:
        """A virtual phone started with `--compute cpu` runs everything on the CPU EP."""
        return "cpu" if self.virtual and self.compute.mode == "cpu" else requested


class FaultyNpu:
    """Wraps a graph so every output is perturbed, as a virtual phone's injected fault demands."""

    def __init__(self, graph: Any, magnitude: float, seed: int) -> None:
        self._graph = graph
        self._magnitude = magnitude
        self._seed = seed
        self.inputs: list[TensorSpec] = graph.inputs
        self.outputs: list[TensorSpec] = graph.outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._seed += 1
        return {
            name: perturb(value, self._magnitude, self._seed)
            for name, value in self._graph.run(feeds).items()
        }

    def __getattr__(self, name: str) -> Any:
        return getattr(self._graph, name)


class SlowNpu:
    """Wraps a graph so every run takes `fraction` longer: a virtual phone's injected slowdown,
    which is how a timing regression is produced on purpose (the simulator has no clock)."""

    def __init__(self, graph: Any, fraction: float) -> None:
        self._graph = graph
        self._fraction = fraction
        self.inputs: list[TensorSpec] = graph.inputs
        self.outputs: list[TensorSpec] = graph.outputs

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        started = time.perf_counter()
        outputs = self._graph.run(feeds)
        time.sleep((time.perf_counter() - started) * self._fraction)
        return outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self._graph, name)


def with_device_faults(device: Device, graphs: Sequence[Any]) -> list[Any]:
    wrapped = list(graphs)
    if device.compute.faulty_npu > 0:
        wrapped = [FaultyNpu(g, device.compute.faulty_npu, 1000 * i) for i, g in enumerate(wrapped)]
    if device.compute.slow_npu > 0:
        wrapped = [SlowNpu(g, device.compute.slow_npu) for g in wrapped]
    return wrapped
