"""Writing a runner job folder, contract version 2: spec.json plus what the host computed once.

The host turns a user's request into bytes every phone computes the same thing from: token ids
from the model's tokenizer (tokens.npy: the negative prompt, then each prompt), initial latents
(latents.npy, seeded as `models.pipeline` seeds them), the sampler as per-step coefficients
(`sampler_plan`), a benchmark's synthetic inputs. Prompts never reach the phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from hexfleet.errors import InvalidRequest
from hexfleet.manifest import FileRef, Manifest, TensorInfo
from hexfleet.models.pipeline import initial_noise
from hexfleet.models.prompt_tokenizer import load_tokenizer
from hexfleet.models.sampler_plan import plan_sampler
from hexfleet.models.schedulers import SchedulerConfig
from hexfleet.runner_spec import (
    CACHE_DIR,
    LATENTS_FILE,
    TOKENS_FILE,
    BenchmarkParams,
    BenchmarkPlan,
    GenerateParams,
    GeneratePlan,
    ImagePlan,
    InferParams,
    InferPlan,
    QnnLibraries,
    RunnerSpecV2,
    input_file,
)

SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class Placement:
    """Where on the phone the job runs from and how: the Hexagon arch of a compiled context, the
    phone's model cache, the QNN libraries of the runner's bundle, and whether nodes the NPU cannot
    take may fall back to the CPU (off: such a graph fails instead)."""

    htp_arch: str | None = None
    cache_dir: str = CACHE_DIR
    qnn: QnnLibraries | None = None
    allow_cpu_fallback: bool = False


DEFAULT_PLACEMENT = Placement()


class FileSource(Protocol):
    """Where the tokenizer's files come from: a ModelStore, or the agent's host cache."""

    def file_paths(self, refs: list[FileRef]) -> dict[str, Path]: ...


NUMPY_DTYPES = {
    "float32": np.float32,
    "float16": np.float16,
    "float64": np.float64,
    "int64": np.int64,
    "int32": np.int32,
    "uint8": np.uint8,
    "uint16": np.uint16,
}


def token_rows(
    store: FileSource, manifest: Manifest, prompts: list[str], negative: str
) -> np.ndarray:
    """[1 + len(prompts), L] token ids in the text encoder's dtype: the negative prompt first.

    Unknown words are the user's mistake (InvalidRequest), as in the host pipeline.
    """
    tokenizer = load_tokenizer(manifest.tokenizer, store.file_paths(manifest.tokenizer.files))
    ids_input = _input(manifest, "text_encoder", "input_ids")
    rows = []
    for text in (negative, *prompts):
        unknown = tokenizer.unknown_words(text)
        if unknown:
            words = ", ".join(repr(w) for w in unknown)
            raise InvalidRequest(f"words not in the {manifest.name} vocabulary: {words}")
        rows.append(tokenizer.encode(text))
    return np.stack(rows).astype(NUMPY_DTYPES[ids_input.dtype])


def _input(manifest: Manifest, role: str, name: str) -> TensorInfo:
    for info in manifest.components[role].inputs:  # type: ignore[index]
        if info.name == name:
            return info
    raise InvalidRequest(f"{manifest.ref}'s {role} has no input {name!r}")


def _spec(
    run_id: str,
    manifest: Manifest,
    roles: tuple[str, ...],
    params: GeneratePlan | BenchmarkPlan | InferPlan,
    runtime: str,
    placement: Placement,
) -> RunnerSpecV2:
    return RunnerSpecV2(
        run_id=run_id,
        model=manifest.ref,
        runtime=runtime,  # type: ignore[arg-type]
        htp_arch=placement.htp_arch,
        allow_cpu_fallback=placement.allow_cpu_fallback,
        qnn=placement.qnn,
        cache_dir=placement.cache_dir,
        components={role: manifest.components[role] for role in roles},  # type: ignore[index,misc]
        params=params,
    )


def _write(folder: Path, spec: RunnerSpecV2, arrays: dict[str, np.ndarray]) -> RunnerSpecV2:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(folder / name, array, allow_pickle=False)
    (folder / SPEC_FILE).write_text(spec.model_dump_json())
    return spec


def write_generate(
    folder: Path,
    store: FileSource,
    manifest: Manifest,
    params: GenerateParams,
    run_id: str,
    placement: Placement = DEFAULT_PLACEMENT,
) -> RunnerSpecV2:
    """A generate job for the same request `models.pipeline.Pipeline.generate` serves."""
    steps = params.steps or manifest.default_steps
    guidance = manifest.default_guidance if params.guidance is None else params.guidance
    scheduler = params.scheduler or manifest.default_scheduler
    plan = plan_sampler(scheduler, SchedulerConfig.from_dict(dict(manifest.scheduler)), steps)
    tokens = token_rows(store, manifest, params.prompts, params.negative_prompt)
    shape = (1, manifest.latent_channels, manifest.latent_size, manifest.latent_size)
    images, latents = [], []
    for row in range(1, len(params.prompts) + 1):
        for n in range(params.images_per_prompt):
            images.append(ImagePlan(prompt_row=row, seed=params.seed + n))
            latents.append(
                initial_noise(params.seed + n, shape) * np.float32(plan.init_noise_sigma)
            )
    generate = GeneratePlan(
        images=images,
        guidance=guidance,
        latent_scale=manifest.latent_scale,
        scheduler=scheduler,
        steps=plan.steps,
    )
    spec = _spec(
        run_id,
        manifest,
        ("text_encoder", "unet", "vae_decoder"),
        generate,
        params.runtime,
        placement,
    )
    return _write(folder, spec, {TOKENS_FILE: tokens, LATENTS_FILE: np.concatenate(latents)})


def synthetic_inputs(inputs: list[TensorInfo], seed: int) -> dict[str, np.ndarray]:
    """A benchmark's inputs: token id 0, timestep 500, normal noise elsewhere (free dims: 1)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for info in inputs:
        shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in info.shape)
        dtype = NUMPY_DTYPES[info.dtype]
        if np.issubdtype(dtype, np.integer):
            feeds[info.name] = np.zeros(shape, dtype=dtype)
        elif info.name == "timestep":
            feeds[info.name] = np.full(shape, 500, dtype=dtype)
        else:
            feeds[info.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def write_benchmark(
    folder: Path,
    manifest: Manifest,
    params: BenchmarkParams,
    run_id: str,
    placement: Placement = DEFAULT_PLACEMENT,
) -> RunnerSpecV2:
    feeds = synthetic_inputs(manifest.components[params.component].inputs, params.seed)
    plan = BenchmarkPlan(
        component=params.component,
        warmup=params.warmup,
        iterations=params.iterations,
        seed=params.seed,
        inputs=list(feeds),
        max_start_temp_c=params.max_start_temp_c,
    )
    spec = _spec(
        run_id,
        manifest,
        (params.component,),
        plan,
        params.runtime,
        placement,
    )
    return _write(folder, spec, {input_file(i): a for i, a in enumerate(feeds.values())})


def write_infer(
    folder: Path,
    manifest: Manifest,
    params: InferParams,
    inputs: list[np.ndarray],
    run_id: str,
    placement: Placement = DEFAULT_PLACEMENT,
) -> RunnerSpecV2:
    """An infer job: `inputs[i]` is the tensor for `params.inputs[i]`."""
    if len(inputs) != len(params.inputs):
        raise InvalidRequest(f"{len(params.inputs)} inputs named, {len(inputs)} tensors given")
    plan = InferPlan(component=params.component, inputs=params.inputs)
    spec = _spec(
        run_id,
        manifest,
        (params.component,),
        plan,
        params.runtime,
        placement,
    )
    return _write(folder, spec, {input_file(i): a for i, a in enumerate(inputs)})
