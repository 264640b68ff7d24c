"""Schedulers: diffusers' alphas and timestep grids, and exact sampling with a perfect predictor."""

from __future__ import annotations

import numpy as np
import pytest

from hexfleet.errors import InvalidRequest
from hexfleet.models.schedulers import SCHEDULERS, SchedulerConfig, make_scheduler
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
