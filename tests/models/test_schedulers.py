"""Schedulers: diffusers' alphas and timestep grids, and exact sampling with a perfect predictor."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from hexfleet.errors import InvalidRequest
from hexfleet.models.schedulers import (
    SCHEDULERS,
    Predict,
    SchedulerConfig,
    denoise,
    denoising,
    guide,
    make_scheduler,
)
from hexfleet.models.schedulers.noise_schedule import alphas_cumprod, betas, spaced_timesteps

SD15 = SchedulerConfig(
    beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
)


def test_scaled_linear_matches_stable_diffusion() -> None:
    acp = alphas_cumprod(SD15)
    assert betas(SD15)[0] == pytest.approx(0.00085)
    assert betas(SD15)[-1] == pytest.approx(0.012)
    # Stable Diffusion's largest sigma, the Euler scheduler's well-known init_noise_sigma.
    assert ((1 - acp[-1]) / acp[-1]) ** 0.5 == pytest.approx(14.6146, abs=1e-3)
    assert make_scheduler(
        "euler",
        SchedulerConfig.from_dict(
            {
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "beta_schedule": "scaled_linear",
                "timestep_spacing": "linspace",
            }
        ),
    ).init_noise_sigma == pytest.approx(14.6146, abs=1e-3)


def test_linear_and_cosine_betas() -> None:
    linear = SchedulerConfig(beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
    assert np.allclose(betas(linear), np.linspace(1e-4, 0.02, 1000))
    cosine = SchedulerConfig(beta_schedule="squaredcos_cap_v2")
    b = betas(cosine)
    assert b.max() == pytest.approx(0.999)  # clipped like diffusers' betas_for_alpha_bar
    # ᾱ follows cos²((t/T + s)/(1 + s) · π/2) with s = 0.008, up to the first step's offset.
    t = np.arange(1, 1001) / 1000
    expected = np.cos((t + 0.008) / 1.008 * np.pi / 2) ** 2 / np.cos(0.008 / 1.008 * np.pi / 2) ** 2
    assert np.allclose(alphas_cumprod(cosine)[:900], expected[:900], rtol=1e-6)


def test_timestep_spacings() -> None:
    assert spaced_timesteps(SD15, 50)[:3].tolist() == [981, 961, 941]
    assert spaced_timesteps(SD15, 50)[-1] == 1
    linspace = SchedulerConfig(timestep_spacing="linspace")
    assert spaced_timesteps(linspace, 20, extra=1)[:3].tolist() == [999, 949, 899]
    assert spaced_timesteps(linspace, 20, extra=1)[-1] == 50
    trailing = SchedulerConfig(timestep_spacing="trailing")
    assert spaced_timesteps(trailing, 4).tolist() == [999, 749, 499, 249]


def _vp(acp: float) -> tuple[float, float]:
    return acp**0.5, (1 - acp) ** 0.5


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("spacing", ["leading", "linspace", "trailing"])
def test_perfect_predictor_lands_on_x0(name: str, prediction_type: str, spacing: str) -> None:
    """A model that knows x0 and the noise makes every scheduler end exactly on x0."""
    config = SchedulerConfig(
        beta_schedule="squaredcos_cap_v2",
        prediction_type=prediction_type,  # type: ignore[arg-type]
        timestep_spacing=spacing,  # type: ignore[arg-type]
        set_alpha_to_one=True,
    )
    scheduler = make_scheduler(name, config)
    scheduler.set_timesteps(8)
    acp = alphas_cumprod(config)
    rng = np.random.default_rng(0)
    x0 = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    noise = rng.standard_normal((1, 4, 8, 8)).astype(np.float32)
    sample = noise * np.float32(scheduler.init_noise_sigma)
    for t in scheduler.timesteps:
        model_in = scheduler.scale_model_input(sample, t)
        # In variance-preserving terms the model input is √ᾱ·x0 + √(1−ᾱ)·ε: solve for ε.
        a = float(np.interp(t, np.arange(1000), acp))
        alpha, sigma = _vp(a)
        eps = (model_in.astype(np.float64) - alpha * x0) / sigma
        out = eps if prediction_type == "epsilon" else alpha * eps - sigma * x0
        sample = scheduler.step(out.astype(np.float32), t, sample)
        assert sample.dtype == np.float32
    assert np.allclose(sample, x0, atol=1e-4)


def _trajectory_error(name: str, steps: int) -> float:
    """Largest relative error along the probability-flow ODE for Gaussian data x0 ~ N(0, s²).

    There the ideal x0 predictor is linear, E[x0 | x_t] = √ᾱ·s²/(ᾱs² + 1 − ᾱ) · x_t, and the exact
    ODE solution keeps x_t / std(x_t) constant, so every intermediate sample has a known value.
    """
    config = SchedulerConfig(timestep_spacing="linspace", set_alpha_to_one=True)
    acp = alphas_cumprod(config)
    s2 = 0.25

    def std(t: int) -> float:
        return float(acp[t] * s2 + 1 - acp[t]) ** 0.5

    scheduler = make_scheduler(name, config)
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    x = np.ones(1)
    ratio = 1.0 / std(timesteps[0])
    errors = []
    for t, t_next in zip(timesteps, timesteps[1:], strict=False):
        alpha, sigma = _vp(float(acp[t]))
        x0 = alpha * s2 / (alpha**2 * s2 + sigma**2) * x
        x = scheduler.step((x - alpha * x0) / sigma, t, x)
        errors.append(abs(x[0] / (ratio * std(t_next)) - 1))
    return max(errors)


def test_dpm_solver_is_second_order_and_ddim_first_order() -> None:
    ddim_10, ddim_20 = _trajectory_error("ddim", 10), _trajectory_error("ddim", 20)
    assert 0.4 < ddim_20 / ddim_10 < 0.6  # halving the step halves a first-order error
    assert _trajectory_error("dpm++2m", 10) < 0.1 * ddim_10


def test_unknown_names_are_invalid_requests() -> None:
    with pytest.raises(InvalidRequest, match="unknown scheduler 'pndm'"):
        make_scheduler("pndm", SD15)
    with pytest.raises(InvalidRequest, match="beta schedule"):
        SchedulerConfig(beta_schedule="sigmoid")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="prediction type"):
        SchedulerConfig(prediction_type="sample")  # type: ignore[arg-type]
    with pytest.raises(InvalidRequest, match="steps"):
        make_scheduler("ddim", SD15).set_timesteps(0)


def test_the_registry_implements_exactly_the_names_a_spec_may_carry() -> None:
    from hexfleet.runner_spec import SCHEDULER_NAMES

    assert tuple(SCHEDULERS) == SCHEDULER_NAMES


# tiny-sd's schedule: once written out in models/tiny_sd/train.py, now read from noise_schedule.
# The old formulas, verbatim, are the reference; the weights were trained and exported on them.
TINY_SD = SchedulerConfig(
    beta_schedule="squaredcos_cap_v2",
    prediction_type="v_prediction",
    timestep_spacing="trailing",
    set_alpha_to_one=True,
)


def _old_cosine_alphas_cumprod(num_steps: int = 1000) -> np.ndarray:
    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = np.array(
        [
            min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), 0.999)
            for i in range(num_steps)
        ]
    )
    return np.cumprod(1.0 - betas)


def _old_trailing_timesteps(steps: int, num_train: int = 1000) -> np.ndarray:
    return np.round(np.arange(num_train, 0, -num_train / steps)).astype(np.int64) - 1


def test_tiny_sd_alphas_are_bit_identical_to_the_old_formula() -> None:
    shared = alphas_cumprod(TINY_SD)
    assert shared.dtype == np.float64
    assert shared.tobytes() == _old_cosine_alphas_cumprod().tobytes()
    # The same bytes, captured from models/tiny_sd/train.py before the move.
    digest = hashlib.sha256(shared.tobytes()).hexdigest()
    assert digest == "3c1e39abad8af8814244fdf45152e511445687f0a85efd967bdeab47cf14dfcc"


def test_trailing_timesteps_are_bit_identical_to_the_old_formula() -> None:
    captured = {
        1: [999],
        2: [999, 499],
        3: [999, 666, 332],
        8: [999, 874, 749, 624, 499, 374, 249, 124],
        20: list(range(999, 0, -50)),
    }
    for steps, expected in captured.items():
        assert spaced_timesteps(TINY_SD, steps).tolist() == expected
    overlong = []
    for steps in range(1, 1001):
        old, shared = _old_trailing_timesteps(steps), spaced_timesteps(TINY_SD, steps)
        assert shared.dtype == old.dtype == np.int64
        if len(old) == steps:
            assert shared.tobytes() == old.tobytes(), steps
        else:
            # Float rounding in arange gave the old formula one point too many, timestep -1
            # (ᾱ[-1] by wraparound); the shared grid keeps the first `steps`, as diffusers does.
            assert old[-1] == -1 and shared.tobytes() == old[:steps].tobytes(), steps
            overlong.append(steps)
    assert overlong[:3] == [61, 103, 121] and len(overlong) == 62
    assert 20 not in overlong and 8 not in overlong  # the step counts tiny-sd is evaluated at


def _old_onnx_ddim_loop(predict: Predict, noise: np.ndarray, steps: int) -> np.ndarray:
    """models/tiny_sd/export.py's former float64 DDIM loop, verbatim but for the model call."""
    acp = _old_cosine_alphas_cumprod()
    x = noise
    timesteps = _old_trailing_timesteps(steps)
    for i, t in enumerate(timesteps):
        a = acp[t]
        a_prev = acp[timesteps[i + 1]] if i + 1 < len(timesteps) else 1.0
        v = predict(x, float(t))
        x0 = np.sqrt(a) * x - np.sqrt(1 - a) * v
        eps = np.sqrt(1 - a) * x + np.sqrt(a) * v
        x = np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps
    return x


@pytest.mark.parametrize("steps", [1, 8, 20])
def test_the_shared_ddim_loop_repeats_the_old_export_sampler_bit_for_bit(steps: int) -> None:
    weights = np.random.default_rng(1).standard_normal((1, 3, 4, 4))

    def predict(x: np.ndarray, t: float) -> np.ndarray:
        # Any deterministic function of (x, t) will do; this one is not linear in x.
        return np.tanh(x * weights + t / 1000)

    noise = np.random.default_rng(0).standard_normal((1, 3, 4, 4))
    scheduler = make_scheduler("ddim", TINY_SD)
    scheduler.set_timesteps(steps)
    shared = denoise(scheduler, predict, noise)
    assert shared.tobytes() == _old_onnx_ddim_loop(predict, noise, steps).tobytes()


def test_denoising_yields_every_step_and_scales_the_noise() -> None:
    config = SchedulerConfig(timestep_spacing="linspace")
    scheduler = make_scheduler("euler", config)
    scheduler.set_timesteps(5)
    seen: list[tuple[float, float]] = []

    def predict(x: np.ndarray, t: float) -> np.ndarray:
        seen.append((t, float(np.abs(x).max())))
        return np.zeros_like(x)

    noise = np.ones((1, 1, 2, 2), dtype=np.float32)
    steps = list(denoising(scheduler, predict, noise))
    assert len(steps) == 5 and all(s.dtype == np.float32 for s in steps)
    assert [t for t, _ in seen] == scheduler.timesteps.tolist()
    # Euler starts at sigma_max and feeds the model x / √(σ² + 1).
    sigma = scheduler.init_noise_sigma
    assert seen[0][1] == pytest.approx(sigma / (sigma**2 + 1) ** 0.5, rel=1e-6)
    assert denoise(scheduler, predict, noise).tobytes() == steps[-1].tobytes()


def test_guidance() -> None:
    uncond, cond = np.array([1.0, 2.0]), np.array([3.0, 2.0])
    assert guide(uncond, cond, 1.0).tolist() == cond.tolist()
    assert guide(uncond, cond, 0.0).tolist() == uncond.tolist()
    assert guide(uncond, cond, 1.5).tolist() == [4.0, 2.0]
