"""The interface every numpy scheduler follows, shaped like diffusers' (`set_timesteps`, `step`).

A pipeline only needs these five members; adding a scheduler touches its own module and the
registry in `hexfleet.models.schedulers`.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from hexfleet.models.schedulers.noise_schedule import SchedulerConfig


class Scheduler(Protocol):
    """Turns a model's prediction at timestep t into the sample at the next (lower) timestep."""

    config: SchedulerConfig
    timesteps: np.ndarray
    init_noise_sigma: float

    def set_timesteps(self, steps: int) -> None:
        """Choose the `steps` timesteps of one sampling run (highest first) and reset state."""

    def scale_model_input(self, sample: np.ndarray, t: float) -> np.ndarray:
        """The sample as the model expects it at timestep t."""

    def step(self, model_output: np.ndarray, t: float, sample: np.ndarray) -> np.ndarray:
        """The sample at the timestep after t, given the model's output at t."""


def step_index(timesteps: np.ndarray, t: float) -> int:
    """Position of t in the current schedule; a t not in it is a caller error."""
    hits = np.flatnonzero(timesteps == t)
    if hits.size == 0:
        raise ValueError(f"timestep {t} is not in the current schedule; call set_timesteps first")
    return int(hits[0])
