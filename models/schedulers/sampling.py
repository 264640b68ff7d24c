"""The sampling loop every generator shares: noise in, one guided prediction and one scheduler
step per timestep, latents out.

The pipeline (ONNX Runtime), tiny-sd's export check (ONNX Runtime) and its training-time
evaluation (torch) differ only in how they predict; they pass that in as a function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np

from hexfleet.models.schedulers.base import Scheduler

Predict = Callable[[np.ndarray, float], np.ndarray]
"""The model's (guided) output for a model input at timestep t."""

Prediction = TypeVar("Prediction")


def guide(uncond: Prediction, cond: Prediction, scale: float | np.floating[Any]) -> Prediction:
    """Classifier-free guidance: uncond + scale · (cond − uncond), for numpy or torch outputs."""
    return uncond + scale * (cond - uncond)  # type: ignore[operator, return-value]


def denoising(scheduler: Scheduler, predict: Predict, noise: np.ndarray) -> Iterator[np.ndarray]:
    """The latents after each step of the scheduler's current timesteps (set_timesteps first).

    The noise is unit-variance; it is scaled to the scheduler's starting sigma in its own dtype.
    A generator so that a caller can time or report each step without a callback.
    """
    latents = noise * noise.dtype.type(scheduler.init_noise_sigma)
    for t in scheduler.timesteps:
        model_input = scheduler.scale_model_input(latents, t)
        latents = scheduler.step(predict(model_input, float(t)), t, latents)
        yield latents


def denoise(scheduler: Scheduler, predict: Predict, noise: np.ndarray) -> np.ndarray:
    """The final latents of `denoising`."""
    latents = noise
    for latents in denoising(scheduler, predict, noise):  # noqa: B007 (the last one is the result)
        pass
    return latents
