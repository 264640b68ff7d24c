"""Model files on disk → a manifest in the store: ONNX checks, I/O descriptions, tiny-sd's entry.

Every way a model enters the store (tiny-sd, an SD import, quantize, compile) builds its
components here, so a corrupt or truncated ONNX file is refused the same way everywhere.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import onnx
from google.protobuf.message import DecodeError

from hexfleet.errors import ArtifactMismatch, ModelError, NotFound
from hexfleet.manifest import (
    Component,
    FileRef,
    Manifest,
    Role,
    TensorInfo,
    Thresholds,
    TokenizerSpec,
)
from hexfleet.models.schedulers import SchedulerConfig
from hexfleet.models.store import ModelStore, sha256_file

REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "text_encoder": ("input_ids",),
    "unet": ("sample", "timestep", "encoder_hidden_states"),
    "vae_decoder": ("latent_sample",),
}
TINY_SD_DIR = Path(__file__).with_name("tiny_sd")
TINY_FILES: dict[Role, str] = {
    "text_encoder": "text_encoder.onnx",
    "unet": "unet.onnx",
    "vae_decoder": "vae_decoder.onnx",
}
DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.UINT16: "uint16",
}


def _tensor_info(value: onnx.ValueInfoProto) -> TensorInfo:
    tensor = value.type.tensor_type
    shape: list[int | str] = [
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor.shape.dim
    ]
    dtype = DTYPES.get(tensor.elem_type, onnx.TensorProto.DataType.Name(tensor.elem_type).lower())
    return TensorInfo(name=value.name, shape=shape, dtype=dtype)


def load_onnx(path: Path) -> onnx.ModelProto:
    """Parse an ONNX file's graph (not its external data); garbage or truncation → ModelError."""
    if not path.is_file():
        raise NotFound(f"model file {path} does not exist")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as err:
        raise ModelError(
            f"{path} is not a readable ONNX model (corrupt or truncated?): {err}"
        ) from err
    if not model.graph.node or not model.graph.output:
        raise ModelError(f"{path} has an empty graph (corrupt or truncated?)")
    return model


def external_files(model: onnx.ModelProto, folder: Path) -> list[Path]:
    """Files next to the model that hold its external tensor data (large SD exports)."""
    names: set[str] = set()
    for tensor in model.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            names.update(e.value for e in tensor.external_data if e.key == "location")
    paths = [folder / name for name in sorted(names)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ModelError(f"external data files {missing} are missing next to the model in {folder}")
    return paths


def describe(path: Path, role: Role) -> tuple[list[TensorInfo], list[TensorInfo], list[Path], bool]:
    """Inputs, outputs, external data files and EPContext-ness, checked against the role."""
    model = load_onnx(path)
    initializers = {t.name for t in model.graph.initializer}
    inputs = [_tensor_info(v) for v in model.graph.input if v.name not in initializers]
    outputs = [_tensor_info(v) for v in model.graph.output]
    have = {i.name for i in inputs}
    epcontext = any(node.op_type == "EPContext" for node in model.graph.node)
    missing = [name for name in REQUIRED_INPUTS[role] if name not in have]
    if missing and not epcontext:
        raise ModelError(f"{path.name} is not a {role}: it lacks the inputs {missing}")
    return inputs, outputs, external_files(model, path.parent), epcontext


def store_component(store: ModelStore, path: Path, role: Role) -> Component:
    """Check an ONNX component file and put it (and its external data) in the store."""
    inputs, outputs, extra, epcontext = describe(path, role)
    return Component(
        file=store.put_file(path),
        extra_files=[store.put_file(p) for p in extra],
        format="epcontext" if epcontext else "onnx",
        inputs=inputs,
        outputs=outputs,
    )


def store_files(store: ModelStore, paths: list[Path]) -> list[FileRef]:
    return [store.put_file(p) for p in paths]


def _get(info: dict[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if key in info:
            return info[key]
    if default is None:
        raise ModelError(f"info.json lacks {keys[0]!r}")
    return default


def tiny_sd_manifest_fields(info: dict[str, Any]) -> dict[str, Any]:
    """Manifest fields from tiny-sd's info.json (the training recipe's sampling choices)."""
    scheduler = SchedulerConfig(
        num_train_timesteps=int(_get(info, "num_train_timesteps", default=1000)),
        beta_schedule=_get(info, "beta_schedule", default="squaredcos_cap_v2"),
        prediction_type=_get(info, "prediction_type", default="v_prediction"),
        timestep_spacing=_get(info, "timestep_spacing", default="trailing"),
        set_alpha_to_one=bool(info.get("set_alpha_to_one", True)),
    )
    return {
        "image_size": int(_get(info, "image_size")),
        "latent_channels": int(_get(info, "latent_channels")),
        "latent_size": int(_get(info, "latent_size")),
        "latent_scale": float(_get(info, "latent_scaling_factor", "scaling_factor")),
        "scheduler": scheduler.to_dict(),
        "default_scheduler": str(_get(info, "default_scheduler", default="ddim")),
        "default_steps": int(_get(info, "default_steps", default=20)),
        "default_guidance": float(_get(info, "default_guidance", "guidance_scale", default=1.5)),
    }


def register_tiny_sd(
    store: ModelStore, source: Path = TINY_SD_DIR, version: str | None = None
) -> Manifest:
    """Put tiny-sd's exported FP32 weights, vocabulary and info.json in the store."""
    info_path = source / "info.json"
    if not (source / "weights" / TINY_FILES["unet"]).is_file() or not info_path.is_file():
        raise NotFound(
            f"no exported tiny-sd in {source} (weights/*.onnx + info.json); "
            "train it first: hexfleet models train tiny-sd"
        )
    try:
        info = json.loads(info_path.read_text())
    except ValueError as err:
        raise ModelError(f"{info_path} is not JSON: {err}") from err
    listed = info.get("components", {})
    components = {}
    for role, name in TINY_FILES.items():
        path = source / "weights" / name
        expected = listed.get(role, {}).get("sha256")
        if expected is not None and sha256_file(path) != expected:
            raise ArtifactMismatch(
                f"{path} does not match the sha256 in info.json ({expected[:12]}...): "
                "re-export the model or restore the file"
            )
        components[role] = store_component(store, path, role)
    tokenizer_info = info.get("tokenizer", {})
    vocab = source / str(tokenizer_info.get("file", "vocab.json"))
    max_length = int(
        tokenizer_info.get("max_length") or json.loads(vocab.read_text())["max_length"]
    )
    manifest = Manifest(
        name="tiny-sd",
        version=version or str(info.get("version", "1")),
        precision="fp32",
        components=components,
        tokenizer=TokenizerSpec(
            kind="word", files=store_files(store, [vocab]), max_length=max_length
        ),
        thresholds=Thresholds(min_prompt_accuracy=0.9),
        prompt_world="tiny-sd",
        source=f"trained in-project ({source})",
        **tiny_sd_manifest_fields(info),
    )
    store.save(manifest)
    return manifest


def sync_tiny_sd(store: ModelStore, source: Path = TINY_SD_DIR) -> Manifest | None:
    """Register the shipped tiny-sd export into a store that has no tiny-sd yet.

    A store that has one keeps it (re-register after retraining: `hexfleet models register`).
    None when nothing is exported yet or the store already had it.
    """
    exported = (source / "info.json").is_file() and (
        source / "weights" / TINY_FILES["unet"]
    ).is_file()
    if not exported or store.versions("tiny-sd"):
        return None
    return register_tiny_sd(store, source)
