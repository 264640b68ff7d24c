"""SD 1.5 at its real size through the whole farm, on demand (`pytest --real-size`).

The real architecture (random weights, built and exported once, cached under the data
directory) is imported into the farm's store; then `hexfleet generate` goes CLI → API → broker →
agent → a virtual phone over the real adb server, which receives the 4.1 GB model and runs the
native runner on the CPU EP at 512x512 (2 steps: the image is noise, what is tested is shapes,
memory, timings and transport); and `hexfleet validate` compares the phone's image with the
host's reference pipeline. bench/sd15_real_size.py prints the same run's figures.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from farm_support import Farm, build_farm
from PIL import Image

from hexfleet.models.sd_import import import_optimum_sd
from hexfleet.models.store import ModelStore
from hexfleet.settings import Settings

pytestmark = [pytest.mark.real_size, pytest.mark.timeout(3600)]

pytest.importorskip("optimum.exporters.onnx", reason="needs the export extra")
from hexfleet.models.sd15.config import REAL  # noqa: E402
from hexfleet.models.sd15.export import build_and_export  # noqa: E402

PROMPT = "a photo of an astronaut riding a horse on mars"
MINUTES = 60.0


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Farm]:
    export = Settings().ensure_data_dir() / "exports" / REAL.name
    build_and_export(REAL, export, validate=False)
    root = tmp_path_factory.mktemp("real-size-farm")
    store = ModelStore.from_settings(Settings(data_dir=root / "data"))
    import_optimum_sd(store, export, name="sd15")
    yield from build_farm(root, {}, ["sm8650"])


def test_a_512px_image_through_the_farm_with_timings_and_memory(farm: Farm, tmp_path: Path) -> None:
    args = ("--model", "sd15", "--precision", "fp32", "--runtime", "cpu", "--steps", "2")
    result = farm.cli(
        "generate", PROMPT, *args, "--out", str(tmp_path), "--json", timeout=30 * MINUTES
    )
    assert result.returncode == 0, result.stderr + farm.logs()
    (run,) = json.loads(result.stdout)["runs"]
    assert run["state"] == "succeeded"
    png = next((tmp_path / run["device_serial"]).glob("*.png"))
    assert Image.open(png).size == (512, 512)
    timings, metrics = run["timings"], run["metrics"]
    assert len(timings["unet_steps_s"]) == 2 and all(s > 0 for s in timings["unet_steps_s"])
    assert timings["load_s"] > 0 and timings["text_encoder_s"][0] > 0
    assert timings["vae_decoder_s"][0] > 0
    # The phone process held the weights (4.1 GB in FP32) and the activations.
    assert metrics["peak_rss_mb"] > 4000
    assert metrics["pushed_bytes"] > 4 * 10**9

    again = farm.cli("generate", PROMPT, *args, "--json", timeout=30 * MINUTES)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["runs"][0]["metrics"]["pushed_bytes"] == 0


def test_validate_compares_the_phone_with_the_host_reference(farm: Farm, tmp_path: Path) -> None:
    result = farm.cli(
        "validate",
        "sd15",
        "--precision",
        "fp32",
        "--runtime",
        "cpu",
        "--steps",
        "2",
        "--prompt-count",
        "1",
        "--out",
        str(tmp_path),
        "--json",
        timeout=30 * MINUTES,
    )
    assert result.returncode == 0, result.stderr + farm.logs()
    report = json.loads(result.stdout)
    assert report["passed"] is True, report["phones"]
    (phone,) = report["phones"]
    assert phone["serial"] == farm.phones[0].serial
    (html,) = tmp_path.glob("validation-*.html")
    assert html.read_text().count("data:image/png;base64,") == 2  # reference + the phone
