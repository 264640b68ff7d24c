"""The training noise schedule a scheduler samples from: betas, cumulative alphas, timestep grids.

Formulas follow diffusers (linear, scaled_linear, squaredcos_cap_v2 betas; linspace / leading /
trailing spacing) so a diffusers `scheduler_config.json` means the same thing here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Literal

import numpy as np

from hexfleet.errors import InvalidRequest

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]
PredictionType = Literal["epsilon", "v_prediction"]
TimestepSpacing = Literal["linspace", "leading", "trailing"]

BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")
PREDICTION_TYPES = ("epsilon", "v_prediction")
TIMESTEP_SPACINGS = ("linspace", "leading", "trailing")


@dataclass(frozen=True)
class SchedulerConfig:
    """How the model was trained (betas, prediction type) and how to space inference steps."""

    num_train_timesteps: int = 1000
    beta_start: float = 0.00085
    beta_end: float = 0.012
    beta_schedule: BetaSchedule = "scaled_linear"
    prediction_type: PredictionType = "epsilon"
    timestep_spacing: TimestepSpacing = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = False

    def __post_init__(self) -> None:
        if self.num_train_timesteps < 2:
            raise InvalidRequest("num_train_timesteps must be at least 2")
        if self.beta_schedule not in BETA_SCHEDULES:
            raise InvalidRequest(
                f"unknown beta schedule {self.beta_schedule!r}; expected one of {BETA_SCHEDULES}"
            )
        if self.prediction_type not in PREDICTION_TYPES:
            raise InvalidRequest(
                f"unknown prediction type {self.prediction_type!r}; "
                f"expected one of {PREDICTION_TYPES}"
            )
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise InvalidRequest(
                f"unknown timestep spacing {self.timestep_spacing!r}; "
                f"expected one of {TIMESTEP_SPACINGS}"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SchedulerConfig:
        """Read a diffusers `scheduler_config.json`-style dict, ignoring keys we do not use."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known and v is not None})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _cosine_betas(n: int, max_beta: float = 0.999) -> np.ndarray:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return np.array(
        [min(1 - alpha_bar((i + 1) / n) / alpha_bar(i / n), max_beta) for i in range(n)],
        dtype=np.float64,
    )


def betas(config: SchedulerConfig) -> np.ndarray:
    """The per-timestep noise variances, float64, length num_train_timesteps."""
    n = config.num_train_timesteps
    if config.beta_schedule == "linear":
        return np.linspace(config.beta_start, config.beta_end, n, dtype=np.float64)
    if config.beta_schedule == "scaled_linear":
        return np.linspace(config.beta_start**0.5, config.beta_end**0.5, n, dtype=np.float64) ** 2
    return _cosine_betas(n)


def alphas_cumprod(config: SchedulerConfig) -> np.ndarray:
    """ᾱ_t = Π(1 − β_s), the share of signal left at each training timestep."""
    return np.cumprod(1.0 - betas(config))


def check_steps(config: SchedulerConfig, steps: int) -> None:
    """A step count is a user's choice: 1 up to the number of training timesteps."""
    if steps < 1:
        raise InvalidRequest(f"the number of steps must be at least 1, not {steps}")
    if steps > config.num_train_timesteps:
        raise InvalidRequest(
            f"at most {config.num_train_timesteps} steps for this model, not {steps}"
        )


def spaced_timesteps(config: SchedulerConfig, steps: int, *, extra: int = 0) -> np.ndarray:
    """Integer inference timesteps, highest first, per the config's spacing.

    `extra` asks for a linspace/leading grid of `steps + extra` points of which the last `extra`
    are dropped (DPM-Solver spaces n+1 points and keeps n, as diffusers does).
    """
    check_steps(config, steps)
    n_train = config.num_train_timesteps
    points = steps + extra
    if config.timestep_spacing == "linspace":
        grid = np.linspace(0, n_train - 1, points).round()[::-1]
    elif config.timestep_spacing == "leading":
        ratio = n_train // points
        grid = (np.arange(0, points) * ratio).round()[::-1] + config.steps_offset
    else:
        grid = np.arange(n_train, 0, -n_train / steps).round()[:steps] - 1
    return grid[:steps].astype(np.int64)
