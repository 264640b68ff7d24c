"""Build SD 1.5's architecture with random weights and export it with Hugging Face's exporter.

diffusers' UNet2DConditionModel and AutoencoderKL and transformers' CLIPTextModel are built from
config.py's published values (nothing is downloaded), the tokenizer from CLIP's real merges
(vocab.py), and optimum's `onnx_export_from_model` writes the export in optimum's layout:
text_encoder/, unet/ (external data: the real UNet is 3.4 GB), vae_encoder/, vae_decoder/,
tokenizer/, scheduler/, model_index.json. The export is written to a scratch folder beside the
target and renamed into place when complete, so a cached export is always a whole one.

Needs the `export` extra (torch, diffusers, transformers, optimum-onnx, open-clip-torch).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import patch

from hexfleet.errors import InvalidRequest, ModelError
from hexfleet.models.sd15.config import MAX_LENGTH, Sd15Config
from hexfleet.models.sd15.vocab import write_vocab_files
from hexfleet.progress import StageCallback

BUILD_INFO = "hexfleet-build.json"
ROLES = ("text_encoder", "unet", "vae_decoder")
# optimum announces each submodel it exports on this logger, in this form.
_OPTIMUM_LOGGER = "optimum.exporters.onnx.convert"
_SUBMODEL = re.compile(r"Exporting submodel (\d+)/(\d+)")

# Stages reported: "build" (the networks built) and "export" (optimum's submodels exported).


@dataclass
class BuildReport:
    folder: Path
    config: str
    cached: bool
    build_s: float
    export_s: float
    parameters: dict[str, int]
    bytes_on_disk: dict[str, int]

    def to_dict(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "config": self.config,
            "cached": self.cached,
            "build_s": self.build_s,
            "export_s": self.export_s,
            "parameters": self.parameters,
            "bytes_on_disk": self.bytes_on_disk,
        }


def _require_export_extra() -> None:
    try:
        import diffusers  # noqa: F401
        import optimum.exporters.onnx  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as err:
        raise InvalidRequest(
            f"building SD 1.5 needs the export extra ({err.name} is missing): "
            "pip install -e '.[export]'"
        ) from err


def build_modules(config: Sd15Config, device: str = "cpu") -> dict[str, Any]:
    """The three networks of `config` with random weights (on `device`; "meta" allocates none)."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    vae_config = {k: v for k, v in config.vae.items() if k != "sample_size"}
    with torch.device(device):
        return {
            "text_encoder": CLIPTextModel(CLIPTextConfig(**config.text_encoder)),
            "unet": UNet2DConditionModel(**config.unet),
            "vae": AutoencoderKL(sample_size=config.vae["sample_size"], **vae_config),
        }


def parameter_counts(modules: dict[str, Any]) -> dict[str, int]:
    """Parameters per exported component (the VAE decoder is decoder + post_quant_conv)."""
    vae = modules["vae"]
    return {
        "text_encoder": sum(p.numel() for p in modules["text_encoder"].parameters()),
        "unet": sum(p.numel() for p in modules["unet"].parameters()),
        "vae_decoder": sum(
            p.numel() for m in (vae.decoder, vae.post_quant_conv) for p in m.parameters()
        ),
    }


def build_pipeline(
    config: Sd15Config,
    tokenizer_dir: Path,
    seed: int = 0,
    on_stage: StageCallback | None = None,
) -> Any:
    """A diffusers StableDiffusionPipeline with random weights and CLIP's real tokenizer."""
    import torch
    from diffusers import PNDMScheduler, StableDiffusionPipeline
    from transformers import CLIPTokenizer

    torch.manual_seed(seed)
    vocab, merges = write_vocab_files(tokenizer_dir)
    tokenizer = CLIPTokenizer(str(vocab), str(merges), model_max_length=MAX_LENGTH)
    if on_stage:
        on_stage("build", 0, 1)
    modules = build_modules(config)
    for module in modules.values():
        module.eval()
    if on_stage:
        on_stage("build", 1, 1)
    return StableDiffusionPipeline(
        vae=modules["vae"],
        text_encoder=modules["text_encoder"],
        tokenizer=tokenizer,
        unet=modules["unet"],
        scheduler=PNDMScheduler.from_config(config.scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


class _SubmodelProgress(logging.Handler):
    """Turns optimum's "Exporting submodel i/n" log lines into progress callbacks."""

    def __init__(self, on_stage: StageCallback) -> None:
        super().__init__(logging.INFO)
        self.on_stage = on_stage
        self.total = 1

    def emit(self, record: logging.LogRecord) -> None:
        match = _SUBMODEL.search(record.getMessage())
        if match:
            self.total = int(match.group(2))
            self.on_stage("export", int(match.group(1)) - 1, self.total)


@contextmanager
def _export_progress(on_stage: StageCallback | None) -> Iterator[None]:
    """Submodel i of n being exported → on_stage("export", i - 1, n); n of n once done."""
    if on_stage is None:
        yield
        return
    logger = logging.getLogger(_OPTIMUM_LOGGER)
    handler, level, propagate = _SubmodelProgress(on_stage), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # optimum's own handler would print every INFO line; the progress bar says it instead.
    logger.propagate = False
    try:
        yield
        on_stage("export", handler.total, handler.total)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


@contextmanager
def _forced_external_data(force: bool) -> Iterator[None]:
    """optimum's own switch (an environment variable it reads at export time) for saving a
    small model with external data; set only around the export, then restored."""
    if not force:
        yield
        return
    with patch.dict(os.environ, {"FORCE_ONNX_EXTERNAL_DATA": "1"}):
        yield


def folder_sizes(folder: Path) -> dict[str, int]:
    """Bytes on disk per top-level subfolder of an export."""
    return {
        sub.name: sum(f.stat().st_size for f in sub.rglob("*") if f.is_file())
        for sub in sorted(folder.iterdir())
        if sub.is_dir()
    }


def is_complete(folder: Path, config: Sd15Config) -> bool:
    """A finished export of `config` (the marker is written last, before the rename)."""
    marker = folder / BUILD_INFO
    if not marker.is_file():
        return False
    try:
        info = json.loads(marker.read_text())
    except ValueError:
        return False
    return isinstance(info, dict) and info.get("config") == config.name


def build_and_export(
    config: Sd15Config,
    out: Path,
    *,
    seed: int = 0,
    force: bool = False,
    validate: bool = True,
    on_stage: StageCallback | None = None,
) -> BuildReport:
    """Build `config` with random weights and export it to `out` (reused when already there)."""
    if is_complete(out, config) and not force:
        info = json.loads((out / BUILD_INFO).read_text())
        return BuildReport(
            out, config.name, True, 0.0, 0.0, info.get("parameters", {}), folder_sizes(out)
        )
    _require_export_extra()
    import torch
    from optimum.exporters.onnx import onnx_export_from_model

    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = out.with_name(f".{out.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        start = time.perf_counter()
        pipeline = build_pipeline(config, scratch / "clip-vocab", seed, on_stage)
        parameters = parameter_counts(
            {"text_encoder": pipeline.text_encoder, "unet": pipeline.unet, "vae": pipeline.vae}
        )
        built = time.perf_counter()
        with (
            torch.inference_mode(False),
            torch.no_grad(),
            _forced_external_data(config.force_external_data),
            _export_progress(on_stage),
            warnings.catch_warnings(),
        ):
            # torch's tracer warns about every Python-level shape check in diffusers' code.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            onnx_export_from_model(pipeline, scratch, do_validation=validate, task="text-to-image")
        del pipeline
        exported = time.perf_counter()
        shutil.rmtree(scratch / "clip-vocab")
        missing = [r for r in ROLES if not (scratch / r / "model.onnx").is_file()]
        if missing:
            raise ModelError(f"optimum's export wrote no model.onnx for {missing}")
        (scratch / BUILD_INFO).write_text(
            json.dumps(
                {
                    "config": config.name,
                    "seed": seed,
                    "parameters": parameters,
                    "versions": _versions(),
                },
                indent=1,
            )
        )
        if out.exists():
            shutil.rmtree(out)
        os.replace(scratch, out)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return BuildReport(
        out,
        config.name,
        False,
        built - start,
        exported - built,
        parameters,
        folder_sizes(out),
    )


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {
        name: version(name)
        for name in ("torch", "diffusers", "transformers", "optimum", "optimum-onnx")
    }
