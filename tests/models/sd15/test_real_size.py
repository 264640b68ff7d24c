"""SD 1.5 at its real size through build, import, quantize w8a16 and compile for v73.

On demand only (`pytest --real-size`; deselected by default): gigabytes on disk and tens of
minutes on 2 cores. The export is cached under the data directory (HEXFLEET_DATA_DIR, or the
default), so a second run starts at the import. bench/sd15_real_size.py prints the same steps'
times and peak memory.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hexfleet.models.sd_import import import_optimum_sd
from hexfleet.models.store import ModelStore
from hexfleet.settings import Settings

pytestmark = [pytest.mark.real_size, pytest.mark.timeout(7200)]

pytest.importorskip("optimum.exporters.onnx", reason="needs the export extra")
from hexfleet.models.sd15.config import PARAMETERS, REAL  # noqa: E402
from hexfleet.models.sd15.export import build_and_export  # noqa: E402


@pytest.fixture(scope="module")
def real_export() -> Path:
    folder = Settings().ensure_data_dir() / "exports" / REAL.name
    report = build_and_export(REAL, folder, validate=False)
    assert report.parameters == PARAMETERS
    return folder


def test_real_size_import_quantize_compile(store: ModelStore, real_export: Path) -> None:
    from hexfleet.models.compile import compile_model
    from hexfleet.models.quantize import quantize_model

    manifest = import_optimum_sd(store, real_export, name="sd15")
    unet = manifest.components["unet"]
    assert unet.extra_files and unet.extra_files[0].size > 2**31  # past protobuf's 2 GB
    assert (manifest.image_size, manifest.latent_size) == (512, 64)
    quantized = quantize_model(
        store, manifest, "w8a16", calibration_prompts=2, calibration_steps=2, check_htp=False
    ).manifest
    assert quantized.components["unet"].inputs[0].shape == [2, 4, 64, 64]
    # QNN's default finalization does not finish the VAE decoder in 24 GB (docs/measurements.md).
    compiled = compile_model(store, quantized, "73", finalization="1").manifest
    assert compiled.htp_arch == "73"
    assert all(c.format == "epcontext" for c in compiled.components.values())
