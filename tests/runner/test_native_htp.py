"""The native runner on the QNN HTP simulator (plugin EP): the host's images within validation's
thresholds, every node on the NPU, no CPU fallback, context binaries. Slow."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import onnxruntime_qnn
import pytest
from native_jobs import held_out_prompts, psnr_db
from PIL import Image

from hexfleet.manifest import Manifest
from hexfleet.models.compile import compile_model
from hexfleet.models.job_folder import Placement, write_benchmark, write_generate
from hexfleet.models.pipeline import Pipeline
from hexfleet.models.similarity import ssim
from hexfleet.models.store import ModelStore
from hexfleet.runner_spec import BenchmarkParams, GenerateParams, QnnLibraries

pytestmark = pytest.mark.slow

PLUGIN = QnnLibraries(
    ep_library=onnxruntime_qnn.get_library_path(), backend_path=onnxruntime_qnn.get_qnn_htp_path()
)


def _generate_and_compare(
    store: ModelStore, manifest: Manifest, folder: Path, run_job, qnn: QnnLibraries
) -> None:
    prompts = held_out_prompts(2)
    write_generate(
        folder,
        store,
        manifest,
        GenerateParams(prompts=prompts, seed=4, steps=3, runtime="htp"),
        str(uuid.uuid4()),
        placement=Placement(htp_arch="73", cache_dir=str(store.blobs), qnn=qnn),
    )
    run = run_job(folder)
    result = run.result()
    assert result["runtime"] == "htp" and result["htp_arch"] == "73"
    thresholds = manifest.validation_thresholds()
    pipeline = Pipeline.from_manifest(manifest, store, "htp", htp_arch="73", threads=1)
    for index, prompt in enumerate(prompts):
        image = np.asarray(Image.open(folder / f"image-{index}.png").convert("RGB"))
        expected = pipeline.generate(prompt, seed=4, steps=3).image
        assert psnr_db(image, expected) >= thresholds.min_psnr_db, prompt
        assert ssim(image, expected) >= thresholds.min_ssim, prompt


def test_htp_images_match_the_host_pipeline_on_htp(
    model_store: ModelStore, quantized: dict[str, Manifest], job_dir: Path, run_job
) -> None:
    _generate_and_compare(model_store, quantized["w8a16"], job_dir, run_job, PLUGIN)


def test_context_binaries_run_on_htp(
    model_store: ModelStore, quantized: dict[str, Manifest], job_dir: Path, run_job
) -> None:
    compiled = compile_model(model_store, quantized["w8a16"], "73", threads=1).manifest
    assert all(c.format == "epcontext" for c in compiled.components.values())
    _generate_and_compare(model_store, compiled, job_dir, run_job, PLUGIN)


def test_htp_benchmark_places_every_node_on_the_npu(
    model_store: ModelStore, quantized: dict[str, Manifest], job_dir: Path, run_job
) -> None:
    params = BenchmarkParams(component="unet", runtime="htp", warmup=1, iterations=2)
    write_benchmark(
        job_dir,
        quantized["w8a16"],
        params,
        str(uuid.uuid4()),
        placement=Placement(htp_arch="73", cache_dir=str(model_store.blobs), qnn=PLUGIN),
    )
    metrics = run_job(job_dir).result()["metrics"]
    assert metrics["npu_share"] == 1.0 and metrics["npu_nodes"] > 100 and metrics["cpu_nodes"] == 0


def test_an_fp32_graph_on_htp_fails_in_one_line(
    model_store: ModelStore, fp32: Manifest, job_dir: Path, run_job
) -> None:
    params = BenchmarkParams(component="vae_decoder", runtime="htp", warmup=0, iterations=1)
    write_benchmark(
        job_dir,
        fp32,
        params,
        str(uuid.uuid4()),
        placement=Placement(cache_dir=str(model_store.blobs), qnn=PLUGIN),
    )
    done = run_job(job_dir)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("hexfleet-runner: ModelError: ") and "on htp" in line.lower()


def test_built_in_qnn_missing_from_this_onnxruntime_is_one_line(
    model_store: ModelStore, quantized: dict[str, Manifest], job_dir: Path, run_job
) -> None:
    """The host wheel has no QNN built in (Android's package does): the built-in form says so."""
    params = BenchmarkParams(component="unet", runtime="htp", warmup=0, iterations=1)
    write_benchmark(
        job_dir,
        quantized["w8a16"],
        params,
        str(uuid.uuid4()),
        placement=Placement(
            cache_dir=str(model_store.blobs), qnn=QnnLibraries(backend_path=PLUGIN.backend_path)
        ),
    )
    done = run_job(job_dir)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert "no built-in QNN execution provider" in line
