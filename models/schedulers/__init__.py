"""Numpy schedulers for diffusion sampling (DDIM, Euler, DPM-Solver++ 2M), their registry and the
sampling loop.

`make_scheduler(name, config)` is the one way in; the names are what users type. `denoise` runs
a scheduler over a model's predictions.
"""

from __future__ import annotations

from collections.abc import Callable

from hexfleet.errors import InvalidRequest
from hexfleet.models.schedulers.base import Scheduler
from hexfleet.models.schedulers.ddim import DDIMScheduler
from hexfleet.models.schedulers.dpm_solver import DPMSolverMultistepScheduler
from hexfleet.models.schedulers.euler import EulerDiscreteScheduler
from hexfleet.models.schedulers.noise_schedule import SchedulerConfig
from hexfleet.models.schedulers.sampling import Predict, denoise, denoising, guide

SCHEDULERS: dict[str, Callable[[SchedulerConfig], Scheduler]] = {
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "dpm++2m": DPMSolverMultistepScheduler,
}


def make_scheduler(name: str, config: SchedulerConfig) -> Scheduler:
    """A fresh scheduler by name; an unknown name is the user's mistake (InvalidRequest)."""
    factory = SCHEDULERS.get(name.lower())
    if factory is None:
        raise InvalidRequest(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
    return factory(config)


__all__ = [
    "SCHEDULERS",
    "Predict",
    "Scheduler",
    "SchedulerConfig",
    "denoise",
    "denoising",
    "guide",
    "make_scheduler",
]
