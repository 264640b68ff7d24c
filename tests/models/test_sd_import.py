"""Import of an optimum-layout SD 1.5 export (random weights, shrunk) and generation from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
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
    with pytest.raises(InvalidRequest, match="prompt is 80 tokens"):
        pipeline.generate("mars " * 80, steps=1)


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
