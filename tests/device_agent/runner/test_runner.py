"""The runner as a process, per its contract: spec in, result.json and files out, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sd import write_tiny_layout

from hexfleet import progress
from hexfleet.manifest import Manifest
from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore
from hexfleet.runner.device import Device, with_device_faults
from hexfleet.runner_env import ENV_DEVICE_ROOT, ComputeSettings
from hexfleet.runner_spec import CACHE_DIR, RunnerSpec


@pytest.fixture(scope="module")
def manifest_and_blobs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manifest, Path]:
    source = write_tiny_layout(tmp_path_factory.mktemp("tiny"))
    store = ModelStore(tmp_path_factory.mktemp("store"))
    return register_tiny_sd(store, source), store.blobs


@pytest.fixture
def phone_root(tmp_path: Path, manifest_and_blobs: tuple[Manifest, Path]) -> Path:
    """A device root whose cache holds the model's blobs by sha256."""
    root = tmp_path / "phone"
    cache = root / CACHE_DIR.lstrip("/")
    cache.mkdir(parents=True)
    for blob in manifest_and_blobs[1].iterdir():
        (cache / blob.name).write_bytes(blob.read_bytes())
    return root


def run_runner(
    root: Path, spec: dict, *, compute: str = "cpu", faulty: float = 0.0, name: str = "job"
) -> tuple[subprocess.CompletedProcess[str], Path]:
    job = root / "data/local/tmp/hexfleet/jobs" / name
    job.mkdir(parents=True, exist_ok=True)
    (job / "spec.json").write_text(json.dumps(spec))
    env = {
        **os.environ,
        ENV_DEVICE_ROOT: str(root),
        **ComputeSettings(mode=compute, faulty_npu=faulty).to_env(),
    }  # type: ignore[arg-type]
    result = subprocess.run(
        [sys.executable, "-m", "hexfleet.runner", str(job / "spec.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return result, job


def spec_for(manifest: Manifest, params: dict) -> dict:
    return {
        "version": 1,
        "run_id": str(uuid.uuid4()),
        "manifest": manifest.model_dump(mode="json"),
        "params": params,
        "htp_arch": "73",
    }


def test_generate_writes_images_timings_and_progress(
    phone_root: Path, manifest_and_blobs: tuple[Manifest, Path]
) -> None:
    manifest = manifest_and_blobs[0]
    params = {
        "kind": "generate",
        "prompts": ["a red circle on the left in a blue background"],
        "steps": 3,
        "seed": 5,
        "images_per_prompt": 2,
    }
    result, job = run_runner(phone_root, spec_for(manifest, params))
    assert result.returncode == 0, result.stderr
    events = [progress.parse(line) for line in result.stdout.splitlines()]
    unet = [e for e in events if e and e["stage"] == "unet"]
    assert [e["step"] for e in unet] == [1, 2, 3, 4, 5, 6] and unet[-1]["total"] == 6
    outcome = json.loads((job / "result.json").read_text())
    assert outcome["simulated"] is True and outcome["runtime"] == "cpu"
    assert len(outcome["timings"]["unet_steps_s"]) == 6
    names = [o["name"] for o in outcome["outputs"]]
    assert names == ["image-0.png", "image-1.png"]
    first = np.asarray(Image.open(job / "image-0.png"))
    assert first.shape == (manifest.image_size, manifest.image_size, 3)
    again, job2 = run_runner(phone_root, spec_for(manifest, params), name="again")
    assert again.returncode == 0
    assert (job2 / "image-0.png").read_bytes() == (job / "image-0.png").read_bytes()


def test_a_faulty_npu_changes_the_image(
    phone_root: Path, manifest_and_blobs: tuple[Manifest, Path]
) -> None:
    params = {
        "kind": "generate",
        "prompts": ["a red circle on the left in a blue background"],
        "steps": 2,
    }
    _, healthy = run_runner(phone_root, spec_for(manifest_and_blobs[0], params), name="ok")
    _, faulty = run_runner(
        phone_root, spec_for(manifest_and_blobs[0], params), faulty=0.5, name="bad"
    )
    assert (healthy / "image-0.png").read_bytes() != (faulty / "image-0.png").read_bytes()


def test_benchmark_statistics(phone_root: Path, manifest_and_blobs: tuple[Manifest, Path]) -> None:
    params = {"kind": "benchmark", "component": "unet", "warmup": 1, "iterations": 5}
    result, job = run_runner(phone_root, spec_for(manifest_and_blobs[0], params))
    assert result.returncode == 0, result.stderr
    timings = json.loads((job / "result.json").read_text())["timings"]
    assert len(timings["iterations_ms"]) == 5
    assert timings["min_ms"] <= timings["p50_ms"] <= timings["p90_ms"] <= timings["p99_ms"]
    metrics = json.loads((job / "result.json").read_text())["metrics"]
    assert metrics["npu_share"] == 0.0 and metrics["cpu_nodes"] > 0 and metrics["peak_rss_mb"] > 0


def _zone(root: Path, index: int, temp: str, trip: str | None = None) -> None:
    folder = root / f"sys/class/thermal/thermal_zone{index}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "temp").write_text(temp)
    if trip is not None:
        (folder / "trip_point_0_temp").write_text(trip)


def test_benchmark_records_the_hottest_zone_after_every_iteration(
    phone_root: Path, manifest_and_blobs: tuple[Manifest, Path]
) -> None:
    params = {"kind": "benchmark", "component": "unet", "warmup": 0, "iterations": 4}
    spec = spec_for(manifest_and_blobs[0], params)
    result, job = run_runner(phone_root, spec, name="no-sys")
    assert result.returncode == 0, result.stderr
    assert "temp_trace_c" not in json.loads((job / "result.json").read_text())["metrics"]

    _zone(phone_root, 0, "45000\n", "85000\n")
    _zone(phone_root, 1, "-273000\n", "85000\n")  # a dead sensor: ignored
    _zone(phone_root, 2, "51500\n", "95000\n")  # the hottest: its trip point counts
    _zone(phone_root, 10, "garbage\n")
    result, job = run_runner(phone_root, spec, name="with-sys")
    assert result.returncode == 0, result.stderr
    metrics = json.loads((job / "result.json").read_text())["metrics"]
    assert metrics["temp_trace_c"] == [51.5] * 4
    assert metrics["throttle_temp_c"] == 95.0


def test_infer_on_given_tensors(
    phone_root: Path, manifest_and_blobs: tuple[Manifest, Path]
) -> None:
    manifest = manifest_and_blobs[0]
    latent = (
        np.random.default_rng(0)
        .standard_normal((1, manifest.latent_channels, manifest.latent_size, manifest.latent_size))
        .astype(np.float32)
    )
    job = phone_root / "data/local/tmp/hexfleet/jobs/infer"
    job.mkdir(parents=True)
    np.save(job / "input-0.npy", latent)
    params = {"kind": "infer", "component": "vae_decoder", "inputs": ["latent_sample"]}
    result, _ = run_runner(phone_root, spec_for(manifest, params), name="infer")
    assert result.returncode == 0, result.stderr
    out = np.load(job / "output-0.npy")
    assert out.shape == (1, 3, manifest.image_size, manifest.image_size)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        ({"version": 2}, "invalid spec"),
        ("not json", "invalid spec"),
    ],
)
def test_a_bad_spec_is_exit_1_with_one_line(phone_root: Path, spec: object, reason: str) -> None:
    result, job = run_runner(phone_root, spec)  # type: ignore[arg-type]
    assert result.returncode == 1
    assert result.stderr.startswith(f"hexfleet-runner: {reason}")
    assert result.stderr.count("\n") == 1
    assert not (job / "result.json").exists()


def test_an_unknown_word_fails_the_run_with_its_reason(
    phone_root: Path, manifest_and_blobs: tuple[Manifest, Path]
) -> None:
    params = {"kind": "generate", "prompts": ["a purple unicorn; rm -rf /"], "steps": 1}
    result, job = run_runner(phone_root, spec_for(manifest_and_blobs[0], params))
    assert result.returncode == 1
    assert "InvalidRequest" in result.stderr and "unicorn" in result.stderr
    assert not (job / "result.json").exists()


def test_a_missing_model_file_is_a_clear_failure(
    phone_root: Path, manifest_and_blobs: tuple[Manifest, Path]
) -> None:
    manifest = manifest_and_blobs[0]
    (phone_root / CACHE_DIR.lstrip("/") / manifest.components["unet"].file.sha256).unlink()
    params = {"kind": "benchmark", "component": "unet", "iterations": 1}
    result, _ = run_runner(phone_root, spec_for(manifest, params))
    assert result.returncode == 1 and "not in the model store" in result.stderr


def test_spec_round_trip(manifest_and_blobs: tuple[Manifest, Path]) -> None:
    spec = spec_for(
        manifest_and_blobs[0], {"kind": "infer", "component": "unet", "inputs": ["sample"]}
    )
    assert RunnerSpec.model_validate(spec).model_dump(mode="json")["params"]["inputs"] == ["sample"]


class _BusyGraph:
    """A graph whose every run computes for 20 ms."""

    inputs: list = []
    outputs: list = []

    def run(self, feeds: dict) -> dict:
        started = time.perf_counter()
        while time.perf_counter() - started < 0.02:
            pass
        return {}


def test_a_slow_npu_makes_every_inference_longer_by_its_fraction() -> None:
    settings = ComputeSettings(mode="cpu", slow_npu=0.5)
    assert ComputeSettings.from_env(settings.to_env()) == settings
    device = Device(Path("/"), True, settings)
    (graph,) = with_device_faults(device, [_BusyGraph()])
    started = time.perf_counter()
    graph.run({})
    assert time.perf_counter() - started >= 0.03, "20 ms of compute + 50 % = at least 30 ms"
    healthy = Device(Path("/"), True, ComputeSettings(mode="cpu"))
    assert with_device_faults(healthy, [graph]) == [graph], "a healthy phone wraps nothing"
