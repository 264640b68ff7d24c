"""A sampler run as data: each step's UNet timestep, input scale and linear update coefficients.

DDIM, Euler and DPM-Solver++ 2M each take the next sample as a linear function of the current
sample, the current guided prediction and (DPM-Solver++) the previous ones. `plan_sampler` reads
those coefficients off the scheduler itself by probing its `step` on unit vectors, checks them
against the scheduler on random inputs, and `replay` is the arithmetic the native runner does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hexfleet.errors import ModelError
from hexfleet.models.schedulers import SchedulerConfig, make_scheduler
from hexfleet.runner_spec import SamplerStep

Predict = Callable[[np.ndarray, float], np.ndarray]
"""The guided model: (scaled float32 sample, timestep) → float32 prediction of the same shape."""

# Probe lanes per step: the current sample, current output, previous sample, previous output.
_LANES = 4
# Replaying the plan must match the scheduler to float64 rounding (only the order of operations
# differs); anything looser means the scheduler is not a two-step linear update.
_RTOL = 1e-9
_CHECK_LANES = 16


@dataclass(frozen=True)
class SamplerPlan:
    name: str
    init_noise_sigma: float
    steps: list[SamplerStep]


def _probe(name: str, config: SchedulerConfig, count: int) -> SamplerPlan:
    scheduler = make_scheduler(name, config)
    scheduler.set_timesteps(count)
    timesteps = list(scheduler.timesteps)
    lanes = _LANES * len(timesteps)
    # Each step k owns four lanes that are zero everywhere but at one input: x_k, e_k, x_{k-1},
    # e_{k-1}. The scheduler works elementwise, so one pass over the steps probes them all.
    samples = np.zeros((len(timesteps), lanes))
    outputs = np.zeros((len(timesteps), lanes))
    for k in range(len(timesteps)):
        samples[k, _LANES * k] = 1.0
        outputs[k, _LANES * k + 1] = 1.0
        if k > 0:
            samples[k - 1, _LANES * k + 2] = 1.0
            outputs[k - 1, _LANES * k + 3] = 1.0
    steps = []
    for k, t in enumerate(timesteps):
        scale = float(scheduler.scale_model_input(np.ones(1), t)[0])
        result = np.asarray(scheduler.step(outputs[k], t, samples[k]), dtype=np.float64)
        c = result[_LANES * k : _LANES * (k + 1)]
        steps.append(
            SamplerStep(
                timestep=float(t),
                input_scale=scale,
                sample=float(c[0]),
                output=float(c[1]),
                prev_sample=float(c[2]),
                prev_output=float(c[3]),
            )
        )
    return SamplerPlan(name, float(scheduler.init_noise_sigma), steps)


def _check(plan: SamplerPlan, config: SchedulerConfig) -> None:
    """The plan against the scheduler on random samples and predictions, in float64."""
    rng = np.random.default_rng(0)
    scheduler = make_scheduler(plan.name, config)
    scheduler.set_timesteps(len(plan.steps))
    x = rng.standard_normal(_CHECK_LANES)
    planned, x_prev, e_prev = x.copy(), np.zeros_like(x), np.zeros_like(x)
    for step, t in zip(plan.steps, scheduler.timesteps, strict=True):
        e = rng.standard_normal(_CHECK_LANES)
        x = np.asarray(scheduler.step(e, t, x), dtype=np.float64)
        following = (
            step.sample * planned
            + step.output * e
            + step.prev_sample * x_prev
            + step.prev_output * e_prev
        )
        x_prev, e_prev, planned = planned, e, following
        if not np.allclose(planned, x, rtol=_RTOL, atol=_RTOL):
            raise ModelError(
                f"scheduler {plan.name!r} is not a linear update of the last two steps; "
                "the runner contract cannot carry it"
            )


def plan_sampler(name: str, config: SchedulerConfig, steps: int) -> SamplerPlan:
    """The per-step coefficients of scheduler `name` over `steps` steps, checked."""
    plan = _probe(name, config, steps)
    _check(plan, config)
    return plan


def replay(plan: SamplerPlan, latents: np.ndarray, predict: Predict) -> np.ndarray:
    """Run the plan from float32 initial latents: the native runner's loop, step for step."""
    x = latents.astype(np.float32)
    x_prev = np.zeros_like(x)
    e_prev = np.zeros_like(x)
    for step in plan.steps:
        model_in = (x.astype(np.float64) * step.input_scale).astype(np.float32)
        e = predict(model_in, step.timestep).astype(np.float32)
        following = (
            step.sample * x.astype(np.float64)
            + step.output * e.astype(np.float64)
            + step.prev_sample * x_prev.astype(np.float64)
            + step.prev_output * e_prev.astype(np.float64)
        )
        x_prev, e_prev, x = x, e, following.astype(np.float32)
    return x
