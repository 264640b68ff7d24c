"""The sampler plan: its linear steps, replayed in numpy, give the host pipeline's images."""

from __future__ import annotations

import numpy as np
import pytest
from native_jobs import held_out_prompts

from hexfleet.manifest import Manifest
from hexfleet.models.pipeline import Pipeline, initial_noise
from hexfleet.models.sampler_plan import plan_sampler, replay
from hexfleet.models.schedulers import SchedulerConfig
from hexfleet.models.store import ModelStore
from hexfleet.runner_spec import SCHEDULER_NAMES

PROMPTS = held_out_prompts(3)


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_replayed_plan_gives_the_pipelines_images(
    model_store: ModelStore, fp32: Manifest, scheduler: str
) -> None:
    pipeline = Pipeline.from_manifest(fp32, model_store, "cpu", threads=1)
    plan = plan_sampler(scheduler, pipeline.scheduler_config, 8)
    shape = (1, fp32.latent_channels, fp32.latent_size, fp32.latent_size)
    for seed, prompt in enumerate(PROMPTS, start=3):
        expected = pipeline.generate(prompt, seed=seed, steps=8, scheduler=scheduler)
        context = np.concatenate([pipeline.encode_prompt(""), pipeline.encode_prompt(prompt)])
        latents = initial_noise(seed, shape) * np.float32(plan.init_noise_sigma)
        final = replay(
            plan,
            latents,
            lambda x, t, c=context: pipeline.predict(x, t, c, fp32.default_guidance),
        )
        np.testing.assert_array_equal(pipeline.decode(final), expected.image)


def test_plan_coefficients_follow_the_schedulers_form() -> None:
    config = SchedulerConfig(prediction_type="epsilon", timestep_spacing="leading")
    ddim = plan_sampler("ddim", config, 10)
    assert all(s.prev_sample == 0 and s.prev_output == 0 for s in ddim.steps)
    assert all(s.input_scale == 1.0 for s in ddim.steps)
    euler = plan_sampler("euler", config, 10)
    assert euler.init_noise_sigma > 1 and all(0 < s.input_scale < 1 for s in euler.steps)
    dpm = plan_sampler("dpm++2m", config, 10)
    # Second order in the middle, first order on the first and the last step.
    assert dpm.steps[0].prev_output == 0 and dpm.steps[-1].prev_output == 0
    assert all(s.prev_output != 0 for s in dpm.steps[1:-1])
    assert [s.timestep for s in ddim.steps] == sorted(
        (s.timestep for s in ddim.steps), reverse=True
    )
