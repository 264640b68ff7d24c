"""The native runner on the CPU EP: the host pipeline's images, benchmark and infer, failpoints."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from host_tools import require_tool
from native_jobs import held_out_prompts, psnr_db
from PIL import Image

from hexfleet.manifest import Manifest
from hexfleet.models.job_folder import Placement, write_benchmark, write_generate, write_infer
from hexfleet.models.pipeline import Pipeline
from hexfleet.models.store import ModelStore
from hexfleet.runner_env import ENV_FAULTY_NPU, ENV_SLOW_NPU
from hexfleet.runner_spec import (
    BenchmarkParams,
    GenerateParams,
    InferParams,
    RunnerResultV2,
)
from hexfleet.virtual_phone.executables import sandbox_command

# Same graphs, same inputs, same CPU EP: the runner's images are the host's, byte for byte. Where
# float order could differ (another build of ORT), this is the bound a difference must stay in.
MIN_PSNR_DB = 60.0


def _images(folder: Path, count: int) -> list[np.ndarray]:
    return [np.asarray(Image.open(folder / f"image-{i}.png").convert("RGB")) for i in range(count)]


def _generate(store: ModelStore, manifest: Manifest, folder: Path, **params: object) -> None:
    write_generate(
        folder,
        store,
        manifest,
        GenerateParams(runtime="cpu", **params),  # type: ignore[arg-type]
        str(uuid.uuid4()),
        placement=Placement(cache_dir=str(store.blobs)),
    )


@pytest.mark.parametrize("precision", ["w8a16", "w8a8"])
def test_images_equal_the_host_pipelines(
    model_store: ModelStore,
    quantized: dict[str, Manifest],
    job_dir: Path,
    run_job,
    precision: str,
) -> None:
    manifest = quantized[precision]
    prompts = held_out_prompts(16)
    _generate(model_store, manifest, job_dir, prompts=prompts, seed=11, steps=6)
    run = run_job(job_dir)
    result = RunnerResultV2.model_validate(run.result())
    pipeline = Pipeline.from_manifest(manifest, model_store, "cpu", threads=1)
    for index, (prompt, image) in enumerate(zip(prompts, _images(job_dir, 16), strict=True)):
        expected = pipeline.generate(prompt, seed=11, steps=6).image
        assert psnr_db(image, expected) >= MIN_PSNR_DB, (precision, prompt)
        assert np.array_equal(image, expected), (precision, prompt)  # in fact: identical
        assert result.outputs[index].seed == 11 and result.outputs[index].prompt is None
    peak_mb = result.metrics.pop("peak_rss_mb")
    assert result.metrics == {
        "steps": 6,
        "guidance": manifest.default_guidance,
        "scheduler": manifest.default_scheduler,
    }
    assert 10 < peak_mb < 4096  # the runner process's own high-water mark (getrusage)


@pytest.mark.parametrize("scheduler", ["euler", "dpm++2m"])
def test_every_scheduler_gives_the_host_pipelines_images(
    model_store: ModelStore, fp32: Manifest, job_dir: Path, run_job, scheduler: str
) -> None:
    prompts = held_out_prompts(2)
    _generate(
        model_store,
        fp32,
        job_dir,
        prompts=prompts,
        seed=5,
        steps=7,
        scheduler=scheduler,
        guidance=4.5,
        images_per_prompt=2,
    )
    run_job(job_dir).result()
    pipeline = Pipeline.from_manifest(fp32, model_store, "cpu", threads=1)
    images = _images(job_dir, 4)
    for index, (prompt, n) in enumerate((p, n) for p in prompts for n in range(2)):
        expected = pipeline.generate(prompt, seed=5 + n, steps=7, scheduler=scheduler, guidance=4.5)
        assert np.array_equal(images[index], expected.image), (scheduler, prompt, n)


def test_generate_reports_progress_and_timings(
    model_store: ModelStore, fp32: Manifest, job_dir: Path, run_job
) -> None:
    _generate(model_store, fp32, job_dir, prompts=held_out_prompts(2), steps=3)
    run = run_job(job_dir)
    result = run.result()
    assert run.progress() == [
        {"stage": "load", "step": 0, "total": 1},
        {"stage": "load", "step": 1, "total": 1},
        *({"stage": "unet", "step": n, "total": 6} for n in range(1, 7)),
    ]
    timings = result["timings"]
    assert len(timings["unet_steps_s"]) == 6 and len(timings["images"]) == 2
    assert timings["unet_step_mean_s"] == pytest.approx(np.mean(timings["unet_steps_s"]))
    assert 0 < timings["load_s"] < timings["total_s"]
    assert result["runtime"] == "cpu" and result["htp_arch"] is None
    # An x86_64 build never runs on a phone's NPU: its timings are marked simulated.
    assert result["simulated"] is True and "onnxruntime 1." in result["runner"]
    assert run.stderr == ""


def _virtual_phone(root: Path, store: ModelStore, manifest: Manifest, temps: list[int]) -> str:
    """A phone folder: its cache holding copies of the model's files (the sandbox shows nothing
    outside the folder), thermal zones with given temps."""
    cache = root / "data/local/tmp/hexfleet/cache"
    cache.mkdir(parents=True)
    for ref in manifest.files():
        shutil.copyfile(store.blob_path(ref), cache / ref.sha256)
    for index, milli in enumerate(temps):
        zone = root / f"sys/class/thermal/thermal_zone{index}"
        zone.mkdir(parents=True)
        (zone / "temp").write_text(f"{milli}\n")
        (zone / "trip_point_0_temp").write_text("95000\n")
    return "/data/local/tmp/hexfleet/cache"


def test_benchmark_on_a_virtual_phone(
    model_store: ModelStore, fp32: Manifest, tmp_path: Path, runner_binary: Path
) -> None:
    """In a virtual phone's sandbox the runner sees the phone's device paths themselves: its
    cache and /sys/class/thermal, with no path mapping of its own."""
    require_tool("bwrap", "bubblewrap")
    root = tmp_path / "phone"
    cache = _virtual_phone(root, model_store, fp32, [41000, 43500])
    runner = "/data/local/tmp/hexfleet/runners/test"
    (root / runner.lstrip("/")).mkdir(parents=True)
    for library in runner_binary.parent.glob("libonnxruntime.so*"):
        shutil.copyfile(library, root / runner.lstrip("/") / library.name)
    shutil.copy2(runner_binary, root / runner.lstrip("/") / "hexfleet-runner")
    run_id = str(uuid.uuid4())
    job = f"/data/local/tmp/hexfleet/jobs/{run_id}"
    params = BenchmarkParams(component="unet", runtime="cpu", warmup=2, iterations=5, seed=3)
    write_benchmark(
        root / job.lstrip("/"), fp32, params, run_id, placement=Placement(cache_dir=cache)
    )
    argv = sandbox_command(
        root, "x86_64", f"{runner}/hexfleet-runner", [f"{job}/spec.json"], job, tmp_path / "st"
    )
    done = subprocess.run(
        argv, capture_output=True, text=True, env={"LD_LIBRARY_PATH": runner}, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((root / job.lstrip("/") / "result.json").read_text())
    lines = done.stdout.splitlines()
    progress = [json.loads(line[10:]) for line in lines if line.startswith("@progress ")]
    assert [p["stage"] for p in progress] == ["load", "warmup", *["iteration"] * 5]
    assert progress[-1] == {"stage": "iteration", "step": 8, "total": 8}
    timings, metrics = result["timings"], result["metrics"]
    assert len(timings["iterations_ms"]) == 5
    assert timings["min_ms"] <= timings["p50_ms"] <= timings["p90_ms"] <= timings["p99_ms"]
    assert timings["p50_ms"] == pytest.approx(np.percentile(timings["iterations_ms"], 50))
    assert timings["std_ms"] == pytest.approx(np.std(timings["iterations_ms"]))
    assert timings["load_ms"] > 0 and timings["first_ms"] > 0
    assert metrics["temp_trace_c"] == [43.5] * 5 and metrics["throttle_temp_c"] == 95.0
    assert metrics["npu_share"] == 0.0 and metrics["cpu_nodes"] > 0 and metrics["npu_nodes"] == 0
    assert metrics["peak_rss_mb"] > 10
    assert result["simulated"] is True


def test_infer_gives_onnxruntimes_outputs(
    model_store: ModelStore, fp32: Manifest, job_dir: Path, run_job
) -> None:
    component = fp32.components["unet"]
    rng = np.random.default_rng(1)
    inputs = {
        "sample": rng.standard_normal((2, 3, 32, 32)).astype(np.float32),
        "timestep": np.array([321.0], dtype=np.float32),
        "encoder_hidden_states": rng.standard_normal((2, 16, 64)).astype(np.float32),
    }
    shapes = {i.name: i.shape for i in component.inputs}
    assert all(list(v.shape) == shapes[k] for k, v in inputs.items()), shapes
    params = InferParams(component="unet", runtime="cpu", inputs=list(inputs))
    write_infer(
        job_dir,
        fp32,
        params,
        list(inputs.values()),
        str(uuid.uuid4()),
        placement=Placement(cache_dir=str(model_store.blobs)),
    )
    run = run_job(job_dir)
    result = run.result()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_store.blob_path(component.file)), options, providers=["CPUExecutionProvider"]
    )
    expected = session.run(None, inputs)
    assert [o["prompt"] for o in result["outputs"]] == [o.name for o in session.get_outputs()]
    for output, value in zip(result["outputs"], expected, strict=True):
        np.testing.assert_array_equal(np.load(job_dir / output["name"]), value)
    assert run.progress() == [
        {"stage": "infer", "step": 0, "total": 1},
        {"stage": "infer", "step": 1, "total": 1},
    ]


def test_failpoints_are_off_unless_set(
    model_store: ModelStore, fp32: Manifest, tmp_path: Path, run_job
) -> None:
    prompts = held_out_prompts(1)
    folders = {}
    for name, env in (
        ("plain", {}),
        ("faulty", {ENV_FAULTY_NPU: "0.05"}),
        ("slow", {ENV_SLOW_NPU: "1.0"}),
    ):
        folders[name] = tmp_path / name
        _generate(model_store, fp32, folders[name], prompts=prompts, seed=2, steps=4)
        run_job(folders[name], env).result()
    plain, faulty, slow = (_images(folders[n], 1)[0] for n in ("plain", "faulty", "slow"))
    assert np.array_equal(plain, slow)
    assert not np.array_equal(plain, faulty) and psnr_db(plain, faulty) < 50
    plain_t = RunnerResultV2.model_validate_json((folders["plain"] / "result.json").read_text())
    slow_t = RunnerResultV2.model_validate_json((folders["slow"] / "result.json").read_text())
    assert slow_t.timings["unet_step_mean_s"] > 1.5 * plain_t.timings["unet_step_mean_s"]  # type: ignore[operator]
