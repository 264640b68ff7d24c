"""Quality of a model variant: prompt accuracy on held-out prompts, PSNR against FP32.

Prompt accuracy needs a judged world (tiny-sd's: held-out scenes of `split()`, read back by its
judge); PSNR compares each image with the FP32 CPU image of the same prompt, seed and steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hexfleet.errors import InvalidRequest
from hexfleet.manifest import Manifest
from hexfleet.models.calibration import GENERIC_PROMPTS
from hexfleet.models.pipeline import Generation, Pipeline
from hexfleet.models.runtime import DEFAULT_HTP_ARCH, Runtime
from hexfleet.models.similarity import psnr
from hexfleet.models.store import ModelStore

ImageCallback = Callable[[int, int], None]
"""Called after each evaluated prompt with (number done, total)."""


@dataclass
class Evaluation:
    """What `hexfleet models evaluate --json` prints."""

    model: str
    runtime: str
    htp_arch: str | None
    steps: int
    scheduler: str
    guidance: float
    seed: int
    prompts: int
    prompt_accuracy: float | None = None
    per_attribute: dict[str, float] | None = None
    psnr_db: dict[str, float] | None = None
    seconds: float = 0.0
    image_seconds: float = 0.0
    unet_step_seconds: float = 0.0
    load_seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "runtime": self.runtime,
            "htp_arch": self.htp_arch,
            "timings_simulated": self.runtime == "htp",
            "steps": self.steps,
            "scheduler": self.scheduler,
            "guidance": self.guidance,
            "seed": self.seed,
            "prompts": self.prompts,
            "prompt_accuracy": self.prompt_accuracy,
            "per_attribute": self.per_attribute,
            "psnr_db_vs_fp32": self.psnr_db,
            "load_s": self.load_seconds,
            "mean_image_s": self.image_seconds,
            "mean_unet_step_s": self.unet_step_seconds,
            "seconds": self.seconds,
            "thresholds_passed": not self.failures,
            "threshold_failures": self.failures,
        }


def held_out_prompts(manifest: Manifest, count: int) -> tuple[list[str], list[object] | None]:
    """`count` held-out prompts (evenly spread) and their scenes; generic prompts otherwise."""
    if count < 1:
        raise InvalidRequest(f"evaluate at least one prompt, not {count}")
    if manifest.prompt_world != "tiny-sd":
        return [GENERIC_PROMPTS[i % len(GENERIC_PROMPTS)] for i in range(count)], None
    from hexfleet.models.tiny_sd.world import prompt_for, split

    _, held_out = split()
    if count > len(held_out):
        raise InvalidRequest(f"the world holds out {len(held_out)} prompts; asked for {count}")
    picks = np.linspace(0, len(held_out) - 1, count).round().astype(int)
    scenes = [held_out[i] for i in picks]
    return [prompt_for(scene) for scene in scenes], list(scenes)


def _judge_all(images: list[np.ndarray], scenes: list[object]) -> tuple[float, dict[str, float]]:
    from hexfleet.models.tiny_sd.judge import accuracy

    per_attribute = accuracy(images, scenes)  # type: ignore[arg-type]
    return per_attribute.pop("prompt_accuracy"), per_attribute


def _failures(manifest: Manifest, result: Evaluation) -> list[str]:
    limits = manifest.thresholds
    out = []
    accuracy = result.prompt_accuracy
    if limits.min_prompt_accuracy is not None and accuracy is not None:
        if accuracy < limits.min_prompt_accuracy:
            out.append(f"prompt accuracy {accuracy:.3f} < {limits.min_prompt_accuracy:.3f}")
    if limits.min_psnr_db is not None and result.psnr_db is not None:
        if result.psnr_db["mean"] < limits.min_psnr_db:
            out.append(f"mean PSNR {result.psnr_db['mean']:.1f} dB < {limits.min_psnr_db:.1f} dB")
    return out


def evaluate(
    store: ModelStore,
    manifest: Manifest,
    *,
    runtime: Runtime = "cpu",
    htp_arch: str | None = None,
    steps: int | None = None,
    prompts: int = 200,
    seed: int = 0,
    scheduler: str | None = None,
    guidance: float | None = None,
    threads: int | None = None,
    on_image: ImageCallback | None = None,
) -> Evaluation:
    """Generate one image per prompt (seed + i) and score the lot."""
    start = time.perf_counter()
    texts, scenes = held_out_prompts(manifest, prompts)
    pipeline = Pipeline.from_manifest(manifest, store, runtime, htp_arch=htp_arch, threads=threads)
    reference = None
    if manifest.precision != "fp32":
        fp32 = store.load(manifest.name, manifest.version, "fp32")
        reference = Pipeline.from_manifest(fp32, store, "cpu", threads=threads)
    steps = manifest.default_steps if steps is None else steps
    scheduler = scheduler or manifest.default_scheduler
    guidance = manifest.default_guidance if guidance is None else guidance
    images, psnrs, image_times, step_times = [], [], [], []

    def make(on: Pipeline, text: str, i: int) -> Generation:
        return on.generate(text, seed=seed + i, steps=steps, scheduler=scheduler, guidance=guidance)

    for i, text in enumerate(texts):
        result = make(pipeline, text, i)
        images.append(result.image)
        image_times.append(result.timings.total)
        step_times.extend(result.timings.unet_steps)
        if reference is not None:
            psnrs.append(psnr(result.image, make(reference, text, i).image))
        if on_image is not None:
            on_image(i + 1, len(texts))
    evaluation = Evaluation(
        model=manifest.ref,
        runtime=runtime,
        htp_arch=(htp_arch or manifest.htp_arch or DEFAULT_HTP_ARCH) if runtime == "htp" else None,
        steps=steps,
        scheduler=scheduler,
        guidance=guidance,
        seed=seed,
        prompts=len(texts),
        seconds=0.0,
        image_seconds=float(np.mean(image_times)),
        unet_step_seconds=float(np.mean(step_times)),
        load_seconds=pipeline.load_seconds,
    )
    if scenes is not None:
        evaluation.prompt_accuracy, evaluation.per_attribute = _judge_all(images, scenes)
    if psnrs:
        values = np.array(psnrs)
        evaluation.psnr_db = {
            "mean": float(values.mean()),
            "median": float(np.median(values)),
            "min": float(values.min()),
        }
    evaluation.failures = _failures(manifest, evaluation)
    evaluation.seconds = time.perf_counter() - start
    return evaluation
