"""Calibration data for quantization: each component's real inputs while the FP32 pipeline runs.

The text encoder sees real prompts' token ids, the UNet every step's latents, timesteps and
text states of real prompts, the VAE the final latents: no random tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
from onnxruntime.quantization import CalibrationDataReader

from hexfleet.manifest import Manifest
from hexfleet.models.pipeline import Graph, Pipeline
from hexfleet.models.runtime import TensorSpec

GENERIC_PROMPTS = (
    "a photo of an astronaut riding a horse on mars",
    "a watercolor painting of a lighthouse at sunset",
    "a red sports car parked in front of a modern house",
    "a bowl of fruit on a wooden table, studio lighting",
    "a portrait of an old man with a beard, oil painting",
    "a snowy mountain landscape with a frozen lake",
    "a cat sleeping on a windowsill in the sun",
    "a futuristic city skyline at night with neon lights",
    "a plate of sushi, top view, high detail",
    "a forest path in autumn with fallen leaves",
    "a cozy living room with a fireplace and a sofa",
    "a sailing boat on a calm sea under a blue sky",
    "a pencil sketch of a dragon",
    "a cup of coffee with latte art on a cafe table",
    "an aerial view of a tropical island",
    "a robot reading a book in a library",
)


def default_prompts(manifest: Manifest, count: int) -> list[str]:
    """Calibration prompts: tiny-sd's training prompts (never its held-out ones), else generic."""
    if manifest.prompt_world == "tiny-sd":
        from hexfleet.models.tiny_sd.world import prompt_for, split

        train, _ = split()
        stride = max(1, len(train) // count)
        return [prompt_for(scene) for scene in train[::stride][:count]]
    return [GENERIC_PROMPTS[i % len(GENERIC_PROMPTS)] for i in range(count)]


class RecordingGraph:
    """A Graph that keeps a copy of every feed it runs (then runs it for real)."""

    def __init__(self, inner: Graph) -> None:
        self.inner = inner
        self.inputs: list[TensorSpec] = inner.inputs
        self.outputs: list[TensorSpec] = inner.outputs
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.feeds.append({name: np.array(value, copy=True) for name, value in feeds.items()})
        return self.inner.run(feeds)


@dataclass
class Activations:
    """Recorded feeds per component role, in the order the pipeline made them."""

    feeds: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)
    prompts: list[str] = field(default_factory=list)

    def count(self, role: str) -> int:
        return len(self.feeds.get(role, []))


def record_activations(
    pipeline: Pipeline,
    prompts: list[str],
    steps: int | None = None,
    scheduler: str | None = None,
    seed: int = 0,
    on_prompt: Callable[[int, int], None] | None = None,
) -> Activations:
    """Run the pipeline over the prompts (seed + i each) and keep every component's inputs;
    on_prompt(done, total) after each prompt."""
    recorders = {
        "text_encoder": RecordingGraph(pipeline.text_encoder),
        "unet": RecordingGraph(pipeline.unet),
        "vae_decoder": RecordingGraph(pipeline.vae_decoder),
    }
    recording = Pipeline(
        pipeline.manifest,
        recorders["text_encoder"],
        recorders["unet"],
        recorders["vae_decoder"],
        pipeline.tokenizer,
    )
    for i, prompt in enumerate(prompts):
        recording.generate(
            prompt, seed=seed + i, steps=steps, scheduler=scheduler, allow_unknown_words=True
        )
        if on_prompt:
            on_prompt(i + 1, len(prompts))
    return Activations({role: r.feeds for role, r in recorders.items()}, list(prompts))


class FeedsReader(CalibrationDataReader):
    """onnxruntime's calibration reader over recorded feeds: rewindable, and windowed for
    strided calibration (`set_range`), which bounds the calibrator's memory."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._feeds = feeds
        self._iter: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = iter(self._feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._iter = iter(self._feeds[start_index:end_index])

    def __len__(self) -> int:
        return len(self._feeds)


def calibration_stride(count: int, most: int = 16) -> int:
    """The largest divisor of `count` up to `most`: onnxruntime's strided MinMax calibration
    needs one, and collects ranges window by window instead of keeping every activation."""
    return max(d for d in range(1, min(count, most) + 1) if count % d == 0)
