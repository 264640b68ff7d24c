"""The numpy + ONNX Runtime pipeline on random-weight models: determinism, stages, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hexfleet.errors import InvalidRequest, ModelError
from hexfleet.manifest import Manifest
from hexfleet.models.pipeline import Pipeline, save_png
from hexfleet.models.runtime import open_session
from hexfleet.models.store import ModelStore

PROMPT = "a red circle on the left"


@pytest.fixture
def pipeline(tiny_manifest: Manifest, store: ModelStore) -> Pipeline:
    return Pipeline.from_manifest(tiny_manifest, store, threads=1)


@pytest.mark.parametrize("scheduler", ["ddim", "euler", "dpm++2m"])
def test_same_seed_same_image_bit_for_bit(
    tiny_manifest: Manifest, store: ModelStore, scheduler: str
) -> None:
    first = Pipeline.from_manifest(tiny_manifest, store, threads=1)
    second = Pipeline.from_manifest(tiny_manifest, store, threads=2)
    a = first.generate(PROMPT, seed=7, steps=4, scheduler=scheduler)
    b = second.generate(PROMPT, seed=7, steps=4, scheduler=scheduler)
    assert a.image.dtype == np.uint8 and a.image.shape == (16, 16, 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.latents.tobytes() == b.latents.tobytes()
    other = first.generate(PROMPT, seed=8, steps=4, scheduler=scheduler)
    assert other.image.tobytes() != a.image.tobytes()


def test_ddim_and_euler_are_the_same_ode_step(pipeline: Pipeline) -> None:
    """On one timestep grid DDIM and Euler are the same update in different coordinates."""
    ddim = pipeline.generate(PROMPT, seed=3, steps=5, scheduler="ddim")
    euler = pipeline.generate(PROMPT, seed=3, steps=5, scheduler="euler")
    assert np.allclose(ddim.latents, euler.latents, atol=1e-4)


def test_prompt_and_guidance_change_the_image(pipeline: Pipeline) -> None:
    base = pipeline.generate(PROMPT, seed=1, steps=3)
    assert (
        pipeline.generate("a green square", seed=1, steps=3).image.tobytes() != base.image.tobytes()
    )
    unguided = pipeline.generate(PROMPT, seed=1, steps=3, guidance=1.0)
    assert unguided.image.tobytes() != base.image.tobytes()


def test_timings_and_progress(pipeline: Pipeline) -> None:
    seen: list[tuple[int, int]] = []
    result = pipeline.generate(PROMPT, steps=4, on_step=lambda n, total, s: seen.append((n, total)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    t = result.timings.to_dict()
    assert len(t["unet_steps_s"]) == 4  # type: ignore[arg-type]
    assert t["load_s"] > 0 and t["text_encoder_s"] > 0 and t["vae_decoder_s"] > 0
    assert t["total_s"] >= t["unet_total_s"] + t["vae_decoder_s"]  # type: ignore[operator]
    assert result.steps == 4 and result.guidance == 1.5 and result.scheduler == "ddim"


def test_png_keeps_pixels_and_metadata(pipeline: Pipeline, tmp_path: Path) -> None:
    result = pipeline.generate(PROMPT, seed=2, steps=2)
    path = save_png(result.image, tmp_path / "out" / "image.png", result.metadata())
    with Image.open(path) as png:
        assert np.array_equal(np.asarray(png.convert("RGB")), result.image)
        assert png.text["prompt"] == PROMPT and png.text["seed"] == "2"


def test_out_of_vocabulary_words_are_named(pipeline: Pipeline) -> None:
    with pytest.raises(InvalidRequest, match="not in the tiny-sd vocabulary: 'zebra', 'stripes'"):
        pipeline.generate("a zebra stripes", steps=1)
    allowed = pipeline.generate("a zebra stripes", steps=1, allow_unknown_words=True)
    assert allowed.image.shape == (16, 16, 3)


def test_prompt_over_the_tokenizer_length(pipeline: Pipeline) -> None:
    with pytest.raises(InvalidRequest, match="at most 14"):
        pipeline.generate("a red circle on the left in a blue background " * 2, steps=1)


def test_unknown_scheduler_and_bad_steps(pipeline: Pipeline) -> None:
    with pytest.raises(InvalidRequest, match="unknown scheduler 'lms'"):
        pipeline.generate("a red circle", scheduler="lms")
    with pytest.raises(InvalidRequest, match="steps"):
        pipeline.generate("a red circle", steps=5000)
    with pytest.raises(InvalidRequest, match="at least 1, not 0"):
        pipeline.generate("a red circle", steps=0)


def test_fp32_on_htp_needs_quantizing(tiny_manifest: Manifest, store: ModelStore) -> None:
    with pytest.raises(InvalidRequest, match="quantize it first"):
        Pipeline.from_manifest(tiny_manifest, store, runtime="htp")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_onnx_is_a_model_error_at_load(
    tiny_layout: Path, tmp_path: Path, damage: str
) -> None:
    data = (tiny_layout / "weights" / "unet.onnx").read_bytes()
    bad = tmp_path / "unet.onnx"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"not onnx")
    with pytest.raises(ModelError, match="cannot load unet.onnx on cpu"):
        open_session(bad, "cpu")


def test_from_paths_opens_files_placed_elsewhere(
    tiny_manifest: Manifest, store: ModelStore, tmp_path: Path
) -> None:
    """The on-device runner's way in: files in its own cache, named by hash."""
    cache = tmp_path / "device-cache"
    cache.mkdir()
    for ref in tiny_manifest.files():
        (cache / ref.sha256).write_bytes(store.blob_path(ref).read_bytes())
    components = {r: cache / c.file.sha256 for r, c in tiny_manifest.components.items()}
    tokenizer = {ref.name: cache / ref.sha256 for ref in tiny_manifest.tokenizer.files}
    placed = Pipeline.from_paths(tiny_manifest, components, tokenizer, threads=1)
    stored = Pipeline.from_manifest(tiny_manifest, store, threads=1)
    a = placed.generate(PROMPT, seed=9, steps=3)
    assert a.image.tobytes() == stored.generate(PROMPT, seed=9, steps=3).image.tobytes()
