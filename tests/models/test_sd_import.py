"""Import of an optimum-layout SD 1.5 export (random weights, shrunk) and generation from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from hexfleet.errors import InvalidRequest, ModelError
from hexfleet.models.pipeline import Pipeline
from hexfleet.models.sd_import import import_optimum_sd
from hexfleet.models.store import ModelStore


def test_import_and_generate(store: ModelStore, optimum_layout: Path) -> None:
    manifest = import_optimum_sd(store, optimum_layout, name="sd15-tiny")
    assert manifest.ref == "sd15-tiny/1/fp32"
    assert manifest.tokenizer.kind == "clip-bpe" and manifest.tokenizer.max_length == 77
    assert (manifest.latent_channels, manifest.latent_size, manifest.image_size) == (4, 8, 64)
    assert manifest.latent_scale == pytest.approx(0.18215)
    assert manifest.scheduler["steps_offset"] == 1
    assert manifest.scheduler["beta_schedule"] == "scaled_linear"
    unet = manifest.components["unet"]
    assert unet.inputs[0].shape == ["batch", 4, 8, 8]
    assert [(i.name, i.dtype) for i in unet.inputs] == [
        ("sample", "float32"),
        ("timestep", "int64"),
        ("encoder_hidden_states", "float32"),
    ]
    text = manifest.components["text_encoder"]
    assert [o.name for o in text.outputs] == ["last_hidden_state", "pooler_output"]
    assert text.inputs[0].dtype == "int32"

    pipeline = Pipeline.from_manifest(manifest, store, threads=1)
    ids = pipeline.token_ids("a photo of an astronaut riding a horse on mars")
    assert ids.dtype == np.int32 and ids.shape == (1, 77)
    vocab = pipeline.tokenizer.vocab  # type: ignore[attr-defined]
    assert ids[0, :3].tolist() == [vocab["<|startoftext|>"], vocab["a</w>"], vocab["photo</w>"]]
    prompt = "a photo of an astronaut riding a horse on mars"
    results = [
        pipeline.generate(prompt, seed=5, steps=3, scheduler=s) for s in ("dpm++2m", "euler")
    ]
    again = pipeline.generate(prompt, seed=5, steps=3, scheduler="dpm++2m")
    assert results[0].image.shape == (64, 64, 3)
    assert results[0].image.tobytes() == again.image.tobytes()
    # Words outside the merges still tokenize, byte by byte: CLIP has no unknown words.
    assert pipeline.generate("a zebra!", seed=5, steps=1).image.shape == (64, 64, 3)
    # A prompt past 77 tokens is cut to fit, as in diffusers' pipelines.
    long = pipeline.token_ids("mars " * 80)
    assert long[0, 1:76].tolist() == [vocab["mars</w>"]] * 75
    assert long[0, 76] == vocab["<|endoftext|>"]


def test_incomplete_or_corrupt_export(
    store: ModelStore, optimum_layout: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "export"
    shutil.copytree(optimum_layout, copy)
    (copy / "tokenizer" / "merges.txt").unlink()
    with pytest.raises(InvalidRequest, match=r"missing \['tokenizer/merges.txt'\]"):
        import_optimum_sd(store, copy)
    shutil.copy(optimum_layout / "tokenizer" / "merges.txt", copy / "tokenizer" / "merges.txt")
    unet = copy / "unet" / "model.onnx"
    unet.write_bytes(unet.read_bytes()[:2000])
    with pytest.raises(ModelError, match="model.onnx"):
        import_optimum_sd(store, copy)


@pytest.mark.slow
def test_imported_export_quantizes_to_static_shapes_for_htp(
    store: ModelStore, optimum_layout: Path
) -> None:
    """Dynamic batch and timestep dims are fixed to what the pipeline feeds (HTP is static)."""
    from hexfleet.models.quantize import quantize_model

    manifest = import_optimum_sd(store, optimum_layout, name="sd15-tiny")
    report = quantize_model(store, manifest, "w8a8", calibration_prompts=2, calibration_steps=2)
    assert all(part.fully_on_htp for part in report.components.values())
    unet = report.manifest.components["unet"]
    assert [i.shape for i in unet.inputs] == [[2, 4, 8, 8], [2], [2, 77, 32]]
    assert report.manifest.components["text_encoder"].inputs[0].shape == [1, 77]
    image = (
        Pipeline.from_manifest(report.manifest, store, "htp").generate("a red cat", steps=2).image
    )
    assert image.shape == (64, 64, 3)


# An import never reads outside its folder ------------------------------------------------


def _contents(store: ModelStore) -> dict[str, bytes]:
    """Every file under the store's root, by relative path (to show a refusal changed nothing)."""
    if not store.root.exists():
        return {}
    return {
        str(p.relative_to(store.root)): p.read_bytes()
        for p in sorted(store.root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def export(optimum_layout: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "export"
    shutil.copytree(optimum_layout, copy)
    return copy


def _external_data(model_file: Path, location: str, data_file: Path) -> None:
    """Move the model's weights into `data_file` and record `location` as where they are."""
    model = onnx.load(str(model_file))
    onnx.save_model(
        model,
        str(model_file),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=1024,
    )
    if data_file != model_file.parent / "weights.bin":
        shutil.move(model_file.parent / "weights.bin", data_file)
    model = onnx.load(str(model_file), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, str(model_file))


def _refused(store: ModelStore, folder: Path, kind: type[Exception], reason: str) -> None:
    before = _contents(store)
    with pytest.raises(kind, match=reason) as refused:
        import_optimum_sd(store, folder, name="refused")
    assert "\n" not in str(refused.value)
    assert _contents(store) == before
    assert not (store.root / "manifests" / "refused").exists()


def test_symlinked_file_leaving_the_folder_is_refused(
    store: ModelStore, export: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.json"
    shutil.copy(export / "tokenizer" / "vocab.json", secret)
    (export / "tokenizer" / "vocab.json").unlink()
    (export / "tokenizer" / "vocab.json").symlink_to("../../secret.json")
    _refused(store, export, InvalidRequest, r"tokenizer/vocab.json leads outside .*secret.json")


def test_symlinked_folder_leaving_the_folder_is_refused(
    store: ModelStore, export: Path, tmp_path: Path
) -> None:
    shutil.move(export / "unet", tmp_path / "elsewhere")
    (export / "unet").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    _refused(store, export, InvalidRequest, r"unet/model.onnx leads outside")


def test_absolute_symlink_leaving_the_folder_is_refused(
    store: ModelStore, export: Path, tmp_path: Path
) -> None:
    outside = (tmp_path / "text_encoder.onnx").absolute()
    shutil.move(export / "text_encoder" / "model.onnx", outside)
    (export / "text_encoder" / "model.onnx").symlink_to(outside)
    _refused(store, export, InvalidRequest, r"text_encoder/model.onnx leads outside")


def test_external_data_location_with_dotdot_is_refused(
    store: ModelStore, export: Path, tmp_path: Path
) -> None:
    _external_data(export / "unet" / "model.onnx", "../../unet.bin", tmp_path / "unet.bin")
    _refused(store, export, ModelError, r"'../../unet.bin' leaves the model's folder")


def test_external_data_location_absolute_is_refused(
    store: ModelStore, export: Path, tmp_path: Path
) -> None:
    data = (tmp_path / "unet.bin").absolute()
    _external_data(export / "unet" / "model.onnx", str(data), data)
    _refused(store, export, ModelError, r"unet.bin' is an absolute path")


def test_external_data_symlinked_outside_is_refused(
    store: ModelStore, export: Path, tmp_path: Path
) -> None:
    unet = export / "unet" / "model.onnx"
    _external_data(unet, "weights.bin", tmp_path / "unet.bin")
    (unet.parent / "weights.bin").symlink_to(tmp_path / "unet.bin")
    _refused(store, export, InvalidRequest, r"unet/weights.bin leads outside")


def test_symlinks_and_external_data_inside_the_folder_are_allowed(
    store: ModelStore, export: Path
) -> None:
    (export / "shared").mkdir()
    shutil.move(export / "tokenizer" / "merges.txt", export / "shared" / "bpe.txt")
    (export / "tokenizer" / "merges.txt").symlink_to("../shared/bpe.txt")
    unet = export / "unet" / "model.onnx"
    _external_data(unet, "model.onnx_data", export / "shared" / "unet.bin")
    (unet.parent / "model.onnx_data").symlink_to(export / "shared" / "unet.bin")
    manifest = import_optimum_sd(store, export, name="linked")
    assert sorted(f.name for f in manifest.tokenizer.files) == ["merges.txt", "vocab.json"]
    assert [f.name for f in manifest.components["unet"].extra_files] == ["model.onnx_data"]
    path = store.component_path(manifest.components["unet"])
    assert (path.parent / "model.onnx_data").is_file()
    image = Pipeline.from_manifest(manifest, store, threads=1).generate("a cat", steps=1).image
    assert image.shape == (64, 64, 3)


def test_truncated_onnx_leaves_the_store_unchanged(store: ModelStore, export: Path) -> None:
    unet = export / "unet" / "model.onnx"
    unet.write_bytes(unet.read_bytes()[:2000])
    _refused(store, export, ModelError, r"unet/model.onnx is not a readable ONNX model")
