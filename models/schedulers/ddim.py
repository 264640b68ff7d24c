"""DDIM (Song et al. 2020), deterministic (eta = 0): predict x0, then step along the ODE.

Alphas as in diffusers' DDIMScheduler; the previous timestep is the next one in the schedule.
"""

from __future__ import annotations

import numpy as np

from hexfleet.models.schedulers.base import step_index
from hexfleet.models.schedulers.noise_schedule import (
    SchedulerConfig,
    alphas_cumprod,
    spaced_timesteps,
)


class DDIMScheduler:
    """x_prev = √ᾱ_prev · x̂0 + √(1−ᾱ_prev) · ε̂."""

    name = "ddim"

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        self.alphas_cumprod = alphas_cumprod(config)
        self.final_alpha_cumprod = 1.0 if config.set_alpha_to_one else float(self.alphas_cumprod[0])
        self.init_noise_sigma = 1.0
        self.timesteps = np.zeros(0, dtype=np.int64)

    def set_timesteps(self, steps: int) -> None:
        self.timesteps = spaced_timesteps(self.config, steps)

    def scale_model_input(self, sample: np.ndarray, t: float) -> np.ndarray:
        return sample

    def _alpha_prev(self, index: int) -> float:
        if index + 1 < len(self.timesteps):
            return float(self.alphas_cumprod[self.timesteps[index + 1]])
        return self.final_alpha_cumprod

    def step(self, model_output: np.ndarray, t: float, sample: np.ndarray) -> np.ndarray:
        index = step_index(self.timesteps, t)
        alpha = float(self.alphas_cumprod[self.timesteps[index]])
        alpha_prev = self._alpha_prev(index)
        x = sample.astype(np.float64)
        out = model_output.astype(np.float64)
        if self.config.prediction_type == "epsilon":
            x0 = (x - (1 - alpha) ** 0.5 * out) / alpha**0.5
            eps = out
        else:
            x0 = alpha**0.5 * x - (1 - alpha) ** 0.5 * out
            eps = alpha**0.5 * out + (1 - alpha) ** 0.5 * x
        prev = alpha_prev**0.5 * x0 + (1 - alpha_prev) ** 0.5 * eps
        return prev.astype(sample.dtype)
