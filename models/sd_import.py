"""Import a Stable Diffusion ONNX export in Hugging Face optimum's layout into the model store.

Reads `text_encoder/`, `unet/`, `vae_decoder/` (model.onnx, optional config.json and external
data), `tokenizer/` (vocab.json, merges.txt) and `scheduler/scheduler_config.json`. Nothing is read
from outside the folder (a symlink leaving it is refused, see registration.inside), and nothing
is stored until every file passed its checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from hexfleet.errors import InvalidRequest, ModelError, NotFound
from hexfleet.manifest import Component, Manifest, Thresholds, TokenizerSpec, check_name
from hexfleet.models.registration import (
    check_component,
    check_files,
    inside,
    put_component,
    store_files,
)
from hexfleet.models.schedulers import SchedulerConfig
from hexfleet.models.store import ModelStore
from hexfleet.progress import StageCallback

SD_LATENT_SCALE = 0.18215
SD_VAE_FACTOR = 8
TOKENIZER_FILES = ("vocab.json", "merges.txt", "special_tokens_map.json", "tokenizer_config.json")


def _json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise ModelError(f"{path} is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise ModelError(f"{path} is not a JSON object")
    return value


def default_name(folder: Path) -> str:
    """A store name from the folder name: lower case, anything unusual as '-'."""
    name = re.sub(r"[^a-z0-9._-]+", "-", folder.resolve().name.lower()).strip("-._")
    return name[:64] or "sd-import"


def _static(dim: int | str) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def scheduler_config(folder: Path) -> SchedulerConfig:
    """The training schedule from diffusers' scheduler_config.json (SD 1.5's if absent)."""
    root = folder.resolve()
    values = _json(inside(root, folder / "scheduler" / "scheduler_config.json"))
    defaults = {
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "steps_offset": 1,
        "timestep_spacing": "leading",
    }
    return SchedulerConfig.from_dict({**defaults, **values})


def import_optimum_sd(
    store: ModelStore,
    folder: Path,
    name: str | None = None,
    version: str = "1",
    on_stage: StageCallback | None = None,
) -> Manifest:
    """Check and store an optimum SD export; the result is an FP32 manifest like tiny-sd's.

    Progress: on_stage("store", bytes copied, bytes to copy).
    """
    if not folder.is_dir():
        raise NotFound(f"{folder} is not a folder")
    name = check_name("model name", name or default_name(folder))
    check_name("version", version)
    missing = [
        part
        for part in (
            "text_encoder/model.onnx",
            "unet/model.onnx",
            "vae_decoder/model.onnx",
            "tokenizer/vocab.json",
            "tokenizer/merges.txt",
        )
        if not (folder / part).is_file()
    ]
    if missing:
        raise InvalidRequest(
            f"{folder} is not an optimum Stable Diffusion export: missing {missing}"
        )
    root = folder.resolve()
    checked = {
        role: check_component(folder / role / "model.onnx", role, root)  # type: ignore[arg-type]
        for role in ("text_encoder", "unet", "vae_decoder")
    }
    unet_config = _json(inside(root, folder / "unet" / "config.json"))
    vae_config = _json(inside(root, folder / "vae_decoder" / "config.json"))
    text_config = _json(inside(root, folder / "text_encoder" / "config.json"))
    tokenizer_files = check_files(
        [folder / "tokenizer" / n for n in TOKENIZER_FILES if (folder / "tokenizer" / n).is_file()],
        root,
    )
    schedule = scheduler_config(folder).to_dict()
    sample = next(i for i in checked["unet"].inputs if i.name == "sample")
    ids = next(i for i in checked["text_encoder"].inputs if i.name == "input_ids")
    image_out = checked["vae_decoder"].outputs[0]
    try:
        latent_channels = int(unet_config.get("in_channels") or _static(sample.shape[1]) or 4)
        latent_size = int(unet_config.get("sample_size") or _static(sample.shape[-1]) or 64)
        image_size = int(_static(image_out.shape[-1]) or latent_size * SD_VAE_FACTOR)
        max_length = int(_static(ids.shape[-1]) or text_config.get("max_position_embeddings") or 77)
        latent_scale = float(vae_config.get("scaling_factor") or SD_LATENT_SCALE)
    except (TypeError, ValueError) as err:
        raise ModelError(f"{folder}: a config.json holds an unusable number: {err}") from err

    # Every file is checked: only now does anything enter the store.
    total = sum(f.path.stat().st_size for c in checked.values() for f in (c.file, *c.extra_files))
    copied = 0

    def on_bytes(count: int) -> None:
        nonlocal copied
        copied += count
        if on_stage:
            on_stage("store", copied, total)

    components: dict[str, Component] = {
        role: put_component(store, c, on_bytes) for role, c in checked.items()
    }
    manifest = Manifest(
        name=name,
        version=version,
        precision="fp32",
        components=components,
        tokenizer=TokenizerSpec(
            kind="clip-bpe", files=store_files(store, tokenizer_files), max_length=max_length
        ),
        image_size=image_size,
        latent_channels=latent_channels,
        latent_size=latent_size,
        latent_scale=latent_scale,
        scheduler=schedule,
        default_scheduler="dpm++2m",
        default_steps=20,
        default_guidance=7.5,
        thresholds=Thresholds(),
        source=f"optimum export imported from {root}",
    )
    store.save(manifest)
    return manifest
