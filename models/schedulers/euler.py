"""Euler (Karras et al. 2022, "Algorithm 2" without churn) on diffusers' discrete sigma grid.

The sample lives in sigma space (x = x0 + σ·ε); the model sees it scaled by 1/√(σ²+1).
"""

from __future__ import annotations

import numpy as np

from hexfleet.models.schedulers.base import step_index
from hexfleet.models.schedulers.noise_schedule import (
    SchedulerConfig,
    alphas_cumprod,
    check_steps,
    spaced_timesteps,
)


class EulerDiscreteScheduler:
    """x_next = x + (x − x̂0)/σ · (σ_next − σ)."""

    name = "euler"

    def __init__(self, config: SchedulerConfig) -> None:
        self.config = config
        acp = alphas_cumprod(config)
        self.train_sigmas = ((1 - acp) / acp) ** 0.5
        self.timesteps = np.zeros(0, dtype=np.float64)
        self.sigmas = np.zeros(1, dtype=np.float64)
        self.init_noise_sigma = self._init_sigma(float(self.train_sigmas.max()))

    def _init_sigma(self, sigma_max: float) -> float:
        if self.config.timestep_spacing in ("linspace", "trailing"):
            return sigma_max
        return (sigma_max**2 + 1) ** 0.5

    def set_timesteps(self, steps: int) -> None:
        n_train = self.config.num_train_timesteps
        if self.config.timestep_spacing == "linspace":
            check_steps(self.config, steps)
            timesteps = np.linspace(0, n_train - 1, steps, dtype=np.float64)[::-1].copy()
        else:
            timesteps = spaced_timesteps(self.config, steps).astype(np.float64)
        sigmas = np.interp(timesteps, np.arange(n_train), self.train_sigmas)
        self.timesteps = timesteps
        self.sigmas = np.concatenate([sigmas, [0.0]])
        self.init_noise_sigma = self._init_sigma(float(sigmas.max()))

    def scale_model_input(self, sample: np.ndarray, t: float) -> np.ndarray:
        sigma = self.sigmas[step_index(self.timesteps, t)]
        return (sample / (sigma**2 + 1) ** 0.5).astype(sample.dtype)

    def step(self, model_output: np.ndarray, t: float, sample: np.ndarray) -> np.ndarray:
        index = step_index(self.timesteps, t)
        sigma, sigma_next = self.sigmas[index], self.sigmas[index + 1]
        x = sample.astype(np.float64)
        out = model_output.astype(np.float64)
        if self.config.prediction_type == "epsilon":
            x0 = x - sigma * out
        else:
            x0 = out * (-sigma / (sigma**2 + 1) ** 0.5) + x / (sigma**2 + 1)
        derivative = (x - x0) / sigma
        return (x + derivative * (sigma_next - sigma)).astype(sample.dtype)
