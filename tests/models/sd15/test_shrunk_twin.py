"""SD 1.5's shrunk twin through the real-size code path: build with diffusers and transformers,
export with optimum (external data forced, as every real UNet has it), import, quantize w8a16,
generate on the HTP simulator. And an export whose external data is missing or truncated is
refused with one line, the store left as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hexfleet.errors import ModelError
from hexfleet.models.pipeline import Pipeline
from hexfleet.models.sd_import import import_optimum_sd
from hexfleet.models.store import ModelStore

pytest.importorskip("optimum.exporters.onnx", reason="needs the export extra")
from hexfleet.models.sd15.config import SHRUNK  # noqa: E402
from hexfleet.models.sd15.export import BUILD_INFO, build_and_export  # noqa: E402


@pytest.fixture(scope="module")
def shrunk_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("exports") / "sd15-shrunk"
    stages: list[tuple[str, int, int]] = []
    report = build_and_export(SHRUNK, folder, on_stage=lambda *event: stages.append(event))
    assert not report.cached and ("build", 1, 1) in stages
    # optimum exports text_encoder, unet, vae_encoder, vae_decoder, one after the other.
    assert [s for s in stages if s[0] == "export"] == [("export", i, 4) for i in range(5)]
    return folder


def test_export_is_in_optimums_layout_with_external_data(shrunk_export: Path) -> None:
    for part in ("text_encoder", "unet", "vae_decoder"):
        assert (shrunk_export / part / "model.onnx").is_file()
        assert (shrunk_export / part / "model.onnx_data").stat().st_size > 0
    vocab = json.loads((shrunk_export / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    assert len(vocab) == 49408
    assert json.loads((shrunk_export / BUILD_INFO).read_text())["config"] == "sd15-shrunk"
    assert not list(shrunk_export.parent.glob(".*partial"))
    again = build_and_export(SHRUNK, shrunk_export)
    assert again.cached and again.parameters["unet"] < 10**6


@pytest.mark.slow
def test_build_import_quantize_generate(store: ModelStore, shrunk_export: Path) -> None:
    from hexfleet.models.quantize import quantize_model

    manifest = import_optimum_sd(store, shrunk_export, name="sd15-shrunk")
    unet = manifest.components["unet"]
    assert [f.name for f in unet.extra_files] == ["model.onnx_data"]
    assert (manifest.image_size, manifest.latent_size) == (64, 8)
    report = quantize_model(store, manifest, "w8a16", calibration_prompts=2, calibration_steps=2)
    for role, part in report.components.items():
        assert part.fully_on_htp, (role, part.to_dict())
    quantized = report.manifest.components["unet"]
    assert [f.name for f in quantized.extra_files] == ["unet.w8a16.onnx.data"]
    assert quantized.inputs[0].shape == [2, 4, 8, 8]  # guided: uncond and cond in one batch
    pipeline = Pipeline.from_manifest(report.manifest, store, "htp")
    image = pipeline.generate("a photo of an astronaut riding a horse on mars", steps=2).image
    assert image.shape == (64, 64, 3)


# Bad input at that size ----------------------------------------------------------------


def _contents(store: ModelStore) -> dict[str, int]:
    if not store.root.exists():
        return {}
    return {str(p.relative_to(store.root)): p.stat().st_size for p in store.root.rglob("*")}


def _refused(store: ModelStore, folder: Path, reason: str) -> None:
    before = _contents(store)
    with pytest.raises(ModelError, match=reason) as refused:
        import_optimum_sd(store, folder, name="refused")
    assert "\n" not in str(refused.value)
    assert _contents(store) == before


@pytest.fixture
def export_copy(shrunk_export: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(shrunk_export, tmp_path / "export"))


def test_missing_external_data_is_refused(store: ModelStore, export_copy: Path) -> None:
    (export_copy / "unet" / "model.onnx_data").unlink()
    _refused(
        store, export_copy, r"unet/model.onnx: its external data file model.onnx_data is missing"
    )


def test_truncated_external_data_is_refused(store: ModelStore, export_copy: Path) -> None:
    data = export_copy / "unet" / "model.onnx_data"
    size = data.stat().st_size
    with data.open("r+b") as handle:
        handle.truncate(size - 1000)
    _refused(store, export_copy, rf"unet/model.onnx_data is truncated: {size - 1000} bytes, but")


def test_refused_import_after_a_good_one_leaves_the_store_consistent(
    store: ModelStore, shrunk_export: Path, export_copy: Path
) -> None:
    import_optimum_sd(store, shrunk_export, name="good")
    data = export_copy / "vae_decoder" / "model.onnx_data"
    data.write_bytes(data.read_bytes()[:100])
    _refused(store, export_copy, "vae_decoder/model.onnx_data is truncated")
    assert [m.ref for m in store.list()] == ["good/1/fp32"]
    manifest = store.load("good")
    for ref in manifest.files():
        store.blob_path(ref)  # every stored file still has its size and hash
