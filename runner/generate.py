"""The generate job: prompts → PNG images, with per-stage timings and per-step progress."""

from __future__ import annotations

import time
from pathlib import Path

from hexfleet import progress
from hexfleet.models.pipeline import save_png
from hexfleet.runner.device import Device
from hexfleet.runner.models_on_device import cache_store, open_pipeline
from hexfleet.runner_spec import GenerateParams, OutputFile, RunnerResult, RunnerSpec


def run(device: Device, spec: RunnerSpec, job_dir: Path) -> RunnerResult:
    params = spec.params
    assert isinstance(params, GenerateParams)
    runtime = device.effective_runtime(params.runtime)
    started = time.perf_counter()
    progress.report("load", 0, 1)
    pipeline = open_pipeline(device, spec, cache_store(device, spec, job_dir), runtime)
    progress.report("load", 1, 1)
    jobs = [
        (prompt, params.seed + n)
        for prompt in params.prompts
        for n in range(params.images_per_prompt)
    ]
    steps = params.steps or spec.manifest.default_steps
    total_steps = steps * len(jobs)
    outputs: list[OutputFile] = []
    per_image: list[dict[str, object]] = []
    for index, (prompt, seed) in enumerate(jobs):

        def on_step(step: int, _total: int, _seconds: float, done: int = index * steps) -> None:
            progress.report("unet", done + step, total_steps)

        generation = pipeline.generate(
            prompt,
            seed=seed,
            steps=steps,
            guidance=params.guidance,
            scheduler=params.scheduler,
            negative_prompt=params.negative_prompt,
            on_step=on_step,
        )
        name = f"image-{index}.png"
        save_png(generation.image, job_dir / name, generation.metadata())
        outputs.append(OutputFile(name=name, kind="image", index=index, prompt=prompt, seed=seed))
        timings = generation.timings.to_dict()
        timings.pop("load_s")
        per_image.append(timings)
    unet_steps = [s for t in per_image for s in t["unet_steps_s"]]  # type: ignore[attr-defined]
    return RunnerResult(
        run_id=spec.run_id,
        kind="generate",
        runtime=runtime,  # type: ignore[arg-type]
        htp_arch=spec.htp_arch if runtime == "htp" else None,
        simulated=device.virtual,
        timings={
            "load_s": pipeline.load_seconds,
            "text_encoder_s": [t["text_encoder_s"] for t in per_image],
            "unet_steps_s": unet_steps,
            "unet_step_mean_s": sum(unet_steps) / len(unet_steps),
            "vae_decoder_s": [t["vae_decoder_s"] for t in per_image],
            "images": per_image,
            "total_s": time.perf_counter() - started,
        },
        metrics={
            "steps": steps,
            "guidance": pipeline.manifest.default_guidance
            if params.guidance is None
            else params.guidance,
            "scheduler": params.scheduler or pipeline.manifest.default_scheduler,
        },
        outputs=outputs,
    )
