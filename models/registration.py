"""Model files on disk → a manifest in the store: ONNX checks, I/O descriptions, tiny-sd's entry.

Every way a model enters the store (tiny-sd, an SD import, quantize, compile) builds its
components here, so a corrupt or truncated ONNX file is refused the same way everywhere. Files
are checked first (`check_component`) and stored after (`put_component`), so a refused model
leaves the store as it was; every file read is resolved once and must stay inside the folder
the model comes from (a symlink or an external-data location cannot pull in another file).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from hexfleet.errors import ArtifactMismatch, InvalidRequest, ModelError, NotFound
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


def inside(root: Path, path: Path) -> Path:
    """`path` with every symlink resolved, refused if that leaves `root` (an absolute folder).

    The resolved path is what the caller reads, so the file checked is the file stored.
    """
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise InvalidRequest(
            f"{path} leads outside {root} (to {resolved}): a model is read only from inside its "
            "folder; copy the file in instead of linking to it"
        )
    return resolved


@dataclass(frozen=True)
class CheckedFile:
    """A file to store: the resolved path to read and the name it keeps in the manifest."""

    path: Path
    name: str


@dataclass(frozen=True)
class CheckedComponent:
    """An ONNX component that passed every check and is not in the store yet."""

    file: CheckedFile
    extra_files: list[CheckedFile]
    epcontext: bool
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


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


def _plain_location(model_name: str, location: str) -> str:
    """An external-data location must be a file name beside the model: the store keeps it
    there, and `..` or an absolute path would read a file from anywhere on the disk."""
    parts = PurePosixPath(location.replace("\\", "/")).parts
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute():
        raise ModelError(
            f"{model_name}: external data location {location!r} is an absolute path; "
            "it must name a file next to the model"
        )
    if ".." in parts:
        raise ModelError(
            f"{model_name}: external data location {location!r} leaves the model's folder ('..'); "
            "it must name a file next to the model"
        )
    if len(parts) != 1 or not location or "\x00" in location:
        raise ModelError(
            f"{model_name}: external data location {location!r} is not a plain file name "
            "next to the model"
        )
    return parts[0]


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            if attribute.HasField("g"):
                yield from _tensors(attribute.g)
            for subgraph in attribute.graphs:
                yield from _tensors(subgraph)


def external_tensors(model: onnx.ModelProto) -> list[onnx.TensorProto]:
    """The model's tensors whose bytes live in a file beside it (initializers and constants)."""
    return [t for t in _tensors(model.graph) if t.data_location == onnx.TensorProto.EXTERNAL]


def _extent(tensor: onnx.TensorProto, model_name: str) -> tuple[str, int, int]:
    """(file name, offset, length) of an external tensor's bytes."""
    info = external_data_helper.ExternalDataInfo(tensor)
    location = _plain_location(model_name, info.location or "")
    length = info.length
    if length is None:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
        length = int(np.prod(tensor.dims, dtype=np.int64)) * itemsize
    return location, int(info.offset or 0), int(length)


def external_files(model: onnx.ModelProto, path: Path, root: Path) -> list[CheckedFile]:
    """Files next to the model at `path` that hold its external tensor data (large SD exports),
    each resolved and inside `root`, present, and long enough for every tensor it holds."""
    needed: dict[str, tuple[int, str]] = {}
    for tensor in external_tensors(model):
        name, offset, length = _extent(tensor, path.name)
        if offset + length > needed.get(name, (0, ""))[0]:
            needed[name] = (offset + length, tensor.name)
    files = [CheckedFile(inside(root, path.parent / name), name) for name in sorted(needed)]
    missing = [f.name for f in files if not f.path.is_file()]
    if missing:
        raise ModelError(
            f"{path.parent.name}/{path.name}: its external data file {', '.join(missing)} is "
            f"missing (it must sit next to the model in {path.parent})"
        )
    for f in files:
        size, tensor = f.path.stat().st_size, needed[f.name][1]
        if size < needed[f.name][0]:
            raise ModelError(
                f"{path.parent.name}/{f.name} is truncated: {size} bytes, but tensor {tensor!r} "
                f"of {path.name} needs {needed[f.name][0]}"
            )
    return files


def attach_external_data(model: onnx.ModelProto, path: Path) -> onnx.ModelProto:
    """`model` (the graph read from `path` without its weights) with its external tensors read
    into memory from the files beside `path`.

    onnx.load refuses external data with several hard links, and the store materializes a
    component's files as hard links to its blobs; so the bytes are read here, from files the
    import checked (plain names next to the model, each tensor within its file).
    """
    handles: dict[str, Any] = {}
    try:
        for tensor in external_tensors(model):
            name, offset, length = _extent(tensor, path.name)
            if name not in handles:
                handles[name] = (path.parent / name).open("rb")
            handle = handles[name]
            handle.seek(offset)
            data = handle.read(length)
            if len(data) != length:
                raise ModelError(
                    f"{path.parent.name}/{name} is truncated at tensor {tensor.name!r}"
                )
            tensor.raw_data = data
            del tensor.external_data[:]
            tensor.data_location = onnx.TensorProto.DEFAULT
    except OSError as err:
        raise ModelError(f"cannot read the external data of {path}: {err}") from err
    finally:
        for handle in handles.values():
            handle.close()
    return model


def save_onnx(model: onnx.ModelProto, path: Path, external: bool) -> Path:
    """Write a model; with `external`, its tensors over 1 KiB go to `<name>.data` beside it
    (needed past protobuf's 2 GB, kept for any model that came with external data)."""
    if external:
        onnx.save_model(
            model,
            str(path),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=f"{path.name}.data",
            size_threshold=1024,
        )
    else:
        onnx.save_model(model, str(path))
    return path


def describe(
    model: onnx.ModelProto, path: Path, role: Role
) -> tuple[list[TensorInfo], list[TensorInfo], bool]:
    """Inputs, outputs and EPContext-ness of the model read from `path`, checked against role."""
    initializers = {t.name for t in model.graph.initializer}
    inputs = [_tensor_info(v) for v in model.graph.input if v.name not in initializers]
    outputs = [_tensor_info(v) for v in model.graph.output]
    have = {i.name for i in inputs}
    epcontext = any(node.op_type == "EPContext" for node in model.graph.node)
    missing = [name for name in REQUIRED_INPUTS[role] if name not in have]
    if missing and not epcontext:
        raise ModelError(f"{path.name} is not a {role}: it lacks the inputs {missing}")
    return inputs, outputs, epcontext


def check_component(path: Path, role: Role, root: Path | None = None) -> CheckedComponent:
    """Check an ONNX component file and its external data, reading nothing outside `root`
    (default: the model's own folder). Nothing is stored yet."""
    root = (root or path.parent).resolve()
    source = inside(root, path)
    model = load_onnx(source)
    inputs, outputs, epcontext = describe(model, path, role)
    return CheckedComponent(
        file=CheckedFile(source, path.name),
        extra_files=external_files(model, path, root),
        epcontext=epcontext,
        inputs=inputs,
        outputs=outputs,
    )


def put_component(
    store: ModelStore, checked: CheckedComponent, on_bytes: Callable[[int], None] | None = None
) -> Component:
    """Put a checked component's files in the store."""
    return Component(
        file=store.put_file(checked.file.path, name=checked.file.name, on_bytes=on_bytes),
        extra_files=[
            store.put_file(f.path, name=f.name, on_bytes=on_bytes) for f in checked.extra_files
        ],
        format="epcontext" if checked.epcontext else "onnx",
        inputs=checked.inputs,
        outputs=checked.outputs,
    )


def store_component(store: ModelStore, path: Path, role: Role) -> Component:
    """Check an ONNX component file and put it (and its external data) in the store."""
    return put_component(store, check_component(path, role))


def check_files(paths: list[Path], root: Path) -> list[CheckedFile]:
    """Plain files (tokenizer, configs) resolved and kept inside `root`, under their names."""
    return [CheckedFile(inside(root, p), p.name) for p in paths]


def store_files(store: ModelStore, files: list[CheckedFile]) -> list[FileRef]:
    return [store.put_file(f.path, name=f.name) for f in files]


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
    root = source.resolve()
    checked = {}
    for role, name in TINY_FILES.items():
        path = source / "weights" / name
        checked[role] = check_component(path, role, root)
        expected = listed.get(role, {}).get("sha256")
        if expected is not None and sha256_file(checked[role].file.path) != expected:
            raise ArtifactMismatch(
                f"{path} does not match the sha256 in info.json ({expected[:12]}...): "
                "re-export the model or restore the file"
            )
    tokenizer_info = info.get("tokenizer", {})
    vocab = check_files([source / str(tokenizer_info.get("file", "vocab.json"))], root)
    max_length = int(
        tokenizer_info.get("max_length") or json.loads(vocab[0].path.read_text())["max_length"]
    )
    # Only now, with every file checked, does anything enter the store.
    components = {role: put_component(store, c) for role, c in checked.items()}
    manifest = Manifest(
        name="tiny-sd",
        version=version or str(info.get("version", "1")),
        precision="fp32",
        components=components,
        tokenizer=TokenizerSpec(
            kind="word", files=store_files(store, vocab), max_length=max_length
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
