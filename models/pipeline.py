"""Text-to-image in numpy + ONNX Runtime: tokenizer → text encoder → guided scheduler loop → VAE.

Works for any manifest: tiny-sd (word tokenizer, static batch-2 UNet) and imported SD 1.5
exports (CLIP BPE, dynamic batch, int timestep). Same seed, same runtime → same bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image, PngImagePlugin

from hexfleet.errors import InvalidRequest, ModelError
from hexfleet.manifest import ROLES, Manifest
from hexfleet.models.prompt_tokenizer import PromptTokenizer, load_tokenizer
from hexfleet.models.runtime import Runtime, TensorSpec, open_session
from hexfleet.models.schedulers import SchedulerConfig, denoising, guide, make_scheduler
from hexfleet.models.store import ModelStore

StepCallback = Callable[[int, int, float], None]
"""Called after every UNet step with (step number from 1, total steps, seconds of that step)."""


class Graph(Protocol):
    """What the pipeline needs of a model: its inputs and a run; runtime.Session is one."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


@dataclass
class Timings:
    """Seconds per stage of one generation (load is the pipeline's, shared by its images)."""

    load: float = 0.0
    text_encoder: float = 0.0
    unet_steps: list[float] = field(default_factory=list)
    vae_decoder: float = 0.0
    total: float = 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "load_s": self.load,
            "text_encoder_s": self.text_encoder,
            "unet_steps_s": list(self.unet_steps),
            "unet_total_s": sum(self.unet_steps),
            "vae_decoder_s": self.vae_decoder,
            "total_s": self.total,
        }


@dataclass
class Generation:
    """One image and how it was made."""

    image: np.ndarray
    latents: np.ndarray
    prompt: str
    seed: int
    steps: int
    guidance: float
    scheduler: str
    timings: Timings

    def metadata(self) -> dict[str, str]:
        return {
            "prompt": self.prompt,
            "seed": str(self.seed),
            "steps": str(self.steps),
            "guidance": str(self.guidance),
            "scheduler": self.scheduler,
        }


def initial_noise(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    """The starting latent: numpy's PCG64 float64 normal draws (identical on every platform, and
    the same as tiny-sd's export check), rounded to float32."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def to_image(decoded: np.ndarray) -> np.ndarray:
    """VAE output [1, 3, H, W] in [-1, 1] → uint8 H x W x 3."""
    pixels = np.clip(decoded[0].transpose(1, 2, 0), -1.0, 1.0)
    return np.round((pixels + 1.0) * 127.5).astype(np.uint8)


def save_png(image: np.ndarray, path: Path, metadata: Mapping[str, str] | None = None) -> Path:
    """Write an H x W x 3 uint8 image as PNG with text chunks (prompt, seed, ...)."""
    info = PngImagePlugin.PngInfo()
    for key, value in (metadata or {}).items():
        info.add_text(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image, mode="RGB").save(path, format="PNG", pnginfo=info)
    return path


def _input(graph: Graph, name: str) -> TensorSpec:
    for spec in graph.inputs:
        if spec.name == name:
            return spec
    raise ModelError(f"model has no input {name!r} (it has {[s.name for s in graph.inputs]})")


def _output(outputs: dict[str, np.ndarray], name: str) -> np.ndarray:
    return outputs[name] if name in outputs else next(iter(outputs.values()))


class Pipeline:
    """Three graphs, a tokenizer and the manifest that says how to sample them."""

    def __init__(
        self,
        manifest: Manifest,
        text_encoder: Graph,
        unet: Graph,
        vae_decoder: Graph,
        tokenizer: PromptTokenizer,
        load_seconds: float = 0.0,
    ) -> None:
        self.manifest = manifest
        self.text_encoder = text_encoder
        self.unet = unet
        self.vae_decoder = vae_decoder
        self.tokenizer = tokenizer
        self.load_seconds = load_seconds
        self.scheduler_config = SchedulerConfig.from_dict(dict(manifest.scheduler))
        self._ids = _input(text_encoder, "input_ids")
        self._sample = _input(unet, "sample")
        self._timestep = _input(unet, "timestep")
        batch = self._sample.shape[0]
        self._unet_batch = batch if isinstance(batch, int) and batch > 0 else 2
        if self._unet_batch not in (1, 2):
            raise ModelError(f"the UNet's batch must be 1, 2 or free, not {batch}")

    @classmethod
    def from_manifest(
        cls,
        manifest: Manifest,
        store: ModelStore,
        runtime: Runtime = "cpu",
        *,
        htp_arch: str | None = None,
        allow_cpu_fallback: bool = False,
        threads: int | None = None,
    ) -> Pipeline:
        """Open a stored manifest's verified files on a runtime (HTP needs QDQ or a context)."""
        return cls.from_paths(
            manifest,
            {role: store.component_path(manifest.components[role]) for role in ROLES},
            store.file_paths(manifest.tokenizer.files),
            runtime,
            htp_arch=htp_arch,
            allow_cpu_fallback=allow_cpu_fallback,
            threads=threads,
        )

    @classmethod
    def from_paths(
        cls,
        manifest: Manifest,
        components: Mapping[str, Path],
        tokenizer_files: Mapping[str, Path],
        runtime: Runtime = "cpu",
        *,
        htp_arch: str | None = None,
        allow_cpu_fallback: bool = False,
        threads: int | None = None,
    ) -> Pipeline:
        """Open a manifest whose files the caller has placed (and checked), e.g. in a device's
        cache: `components` by role, `tokenizer_files` by file name (vocab.json, ...)."""
        start = time.perf_counter()
        if runtime == "htp" and manifest.precision == "fp32" and not allow_cpu_fallback:
            raise InvalidRequest(
                f"{manifest.ref} is FP32; the HTP backend runs quantized models "
                "(quantize it first, or use --runtime cpu)"
            )
        compiled = any(c.format == "epcontext" for c in manifest.components.values())
        if compiled and runtime != "htp":
            raise InvalidRequest(
                f"{manifest.ref} holds QNN context binaries; run it with --runtime htp"
            )
        arch = htp_arch or manifest.htp_arch
        graphs = [
            open_session(
                components[role],
                runtime,
                htp_arch=arch,
                allow_cpu_fallback=allow_cpu_fallback,
                threads=threads,
            )
            for role in ROLES
        ]
        tokenizer = load_tokenizer(manifest.tokenizer, dict(tokenizer_files))
        return cls(manifest, *graphs, tokenizer, load_seconds=time.perf_counter() - start)

    # stages ------------------------------------------------------------------------------

    def token_ids(self, prompt: str, allow_unknown_words: bool = False) -> np.ndarray:
        """[1, L] ids in the text encoder's dtype; unknown words are an InvalidRequest."""
        unknown = self.tokenizer.unknown_words(prompt)
        if unknown and not allow_unknown_words:
            words = ", ".join(repr(w) for w in unknown)
            raise InvalidRequest(f"words not in the {self.manifest.name} vocabulary: {words}")
        ids = self.tokenizer.encode(prompt)
        length = self._ids.shape[1] if len(self._ids.shape) == 2 else None
        if isinstance(length, int) and length != ids.shape[0]:
            raise ModelError(
                f"the text encoder takes {length} tokens, the tokenizer gives {len(ids)}"
            )
        return ids[None, :].astype(self._ids.dtype)

    def encode_prompt(self, prompt: str, allow_unknown_words: bool = False) -> np.ndarray:
        """Text → hidden states [1, L, D]."""
        ids = self.token_ids(prompt, allow_unknown_words)
        return _output(self.text_encoder.run({"input_ids": ids}), "last_hidden_state")

    def _timestep_feed(self, t: float) -> np.ndarray:
        """t in the UNet's timestep dtype (diffusers' ONNX pipeline reads it from the model too):
        a scalar, [1] or [batch], as the graph declares."""
        if not self._timestep.shape:
            return np.asarray(t).astype(self._timestep.dtype)
        length = self._timestep.shape[0]
        count = length if isinstance(length, int) and length > 0 else self._unet_batch
        return np.full((count,), t).astype(self._timestep.dtype)

    def predict(
        self, latents: np.ndarray, t: float, context: np.ndarray, guidance: float
    ) -> np.ndarray:
        """One guided UNet evaluation: uncond + guidance · (cond − uncond)."""
        feeds_t = self._timestep_feed(t)
        if self._unet_batch == 2:
            out = self.unet.run(
                {
                    "sample": np.concatenate([latents, latents]),
                    "timestep": feeds_t,
                    "encoder_hidden_states": context,
                }
            )
            uncond, cond = np.split(_output(out, "out_sample"), 2)
        else:
            uncond, cond = (
                _output(
                    self.unet.run(
                        {"sample": latents, "timestep": feeds_t, "encoder_hidden_states": c[None]}
                    ),
                    "out_sample",
                )
                for c in context
            )
        return guide(uncond, cond, np.float32(guidance)).astype(np.float32)

    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latents → uint8 image, after undoing the latent scale."""
        scaled = (latents / np.float32(self.manifest.latent_scale)).astype(np.float32)
        return to_image(_output(self.vae_decoder.run({"latent_sample": scaled}), "sample"))

    # the whole thing ---------------------------------------------------------------------

    def generate(
        self,
        prompt: str,
        *,
        seed: int = 0,
        steps: int | None = None,
        guidance: float | None = None,
        scheduler: str | None = None,
        negative_prompt: str = "",
        on_step: StepCallback | None = None,
        allow_unknown_words: bool = False,
    ) -> Generation:
        """One image for a prompt; every unset option comes from the manifest."""
        start = time.perf_counter()
        steps = self.manifest.default_steps if steps is None else steps
        guidance = self.manifest.default_guidance if guidance is None else guidance
        scheduler_name = scheduler or self.manifest.default_scheduler
        sampler = make_scheduler(scheduler_name, self.scheduler_config)
        sampler.set_timesteps(steps)
        timings = Timings(load=self.load_seconds)

        mark = time.perf_counter()
        cond = self.encode_prompt(prompt, allow_unknown_words)
        uncond = self.encode_prompt(negative_prompt, allow_unknown_words)
        context = np.concatenate([uncond, cond]).astype(np.float32)
        timings.text_encoder = time.perf_counter() - mark

        m = self.manifest
        shape = (1, m.latent_channels, m.latent_size, m.latent_size)
        noise = initial_noise(seed, shape)
        latents = noise

        def predict(sample: np.ndarray, t: float) -> np.ndarray:
            return self.predict(sample, t, context, guidance)

        mark = time.perf_counter()
        # The last latents are the result.
        for number, latents in enumerate(denoising(sampler, predict, noise), start=1):  # noqa: B007
            timings.unet_steps.append(time.perf_counter() - mark)
            if on_step is not None:
                on_step(number, steps, timings.unet_steps[-1])
            mark = time.perf_counter()

        mark = time.perf_counter()
        image = self.decode(latents)
        timings.vae_decoder = time.perf_counter() - mark
        timings.total = time.perf_counter() - start
        return Generation(image, latents, prompt, seed, steps, guidance, scheduler_name, timings)
