"""Bad input to the native runner: one line `hexfleet-runner: <reason>` on stderr and exit 1."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from native_jobs import held_out_prompts

from hexfleet.manifest import Manifest
from hexfleet.models.job_folder import Placement, write_generate
from hexfleet.models.store import ModelStore
from hexfleet.runner_spec import GenerateParams


def _job(store: ModelStore, manifest: Manifest, folder: Path, cache: Path) -> dict:
    write_generate(
        folder,
        store,
        manifest,
        GenerateParams(prompts=held_out_prompts(1), steps=2, runtime="cpu"),
        str(uuid.uuid4()),
        placement=Placement(cache_dir=str(cache)),
    )
    return json.loads((folder / "spec.json").read_text())


def _rewrite(folder: Path, spec: dict) -> None:
    (folder / "spec.json").write_text(json.dumps(spec))


def _fails(run, folder: Path, *fragments: str) -> str:
    done = run(folder)
    assert done.returncode == 1, done.stdout
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("hexfleet-runner: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (folder / "result.json").exists()
    return lines[0]


@pytest.fixture
def cache(model_store: ModelStore, fp32: Manifest, tmp_path: Path) -> Path:
    """A private copy of the phone cache, safe to damage."""
    folder = tmp_path / "cache"
    folder.mkdir()
    for ref in fp32.files():
        shutil.copyfile(model_store.blob_path(ref), folder / ref.sha256)
    return folder


def test_a_spec_of_another_version(model_store, fp32, job_dir, cache, run_job) -> None:
    spec = _job(model_store, fp32, job_dir, cache)
    _rewrite(job_dir, {**spec, "version": 1})
    _fails(run_job, job_dir, "invalid spec: version", "contract version 2", "version 1")


def test_a_spec_that_is_not_json_or_missing(model_store, fp32, job_dir, cache, run_job) -> None:
    _job(model_store, fp32, job_dir, cache)
    (job_dir / "spec.json").write_text("{not json")
    _fails(run_job, job_dir, "invalid spec: not JSON")
    (job_dir / "spec.json").unlink()
    _fails(run_job, job_dir, "cannot read the spec")


def test_an_unknown_execution_provider(model_store, fp32, job_dir, cache, run_job) -> None:
    spec = _job(model_store, fp32, job_dir, cache)
    _rewrite(job_dir, {**spec, "runtime": "gpu"})
    _fails(run_job, job_dir, "invalid spec: runtime", "unknown execution provider 'gpu'")


def test_a_missing_cached_file(model_store, fp32, job_dir, cache, run_job) -> None:
    _job(model_store, fp32, job_dir, cache)
    unet = fp32.components["unet"].file
    (cache / unet.sha256).unlink()
    _fails(run_job, job_dir, "NotFound", unet.sha256[:12], "not in the phone's cache")


def test_a_corrupt_cached_file(model_store, fp32, job_dir, cache, run_job) -> None:
    _job(model_store, fp32, job_dir, cache)
    unet = fp32.components["unet"].file
    blob = cache / unet.sha256
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    # The agent's retry looks for exactly these: the kind and the file's short hash.
    _fails(run_job, job_dir, "ArtifactMismatch", unet.sha256[:12], "corrupt")
    blob.write_bytes(bytes(data[:-10]))
    _fails(run_job, job_dir, "ArtifactMismatch", "bytes")


def test_a_component_whose_inputs_differ_from_the_spec(
    model_store, fp32, job_dir, cache, run_job
) -> None:
    spec = _job(model_store, fp32, job_dir, cache)
    spec["components"]["unet"]["inputs"][0]["dtype"] = "float16"
    _rewrite(job_dir, spec)
    _fails(run_job, job_dir, "ModelError", "in the graph but", "in the spec")
    spec["components"]["unet"]["inputs"][0]["dtype"] = "float32"
    spec["components"]["unet"]["inputs"][0]["name"] = "noisy_latents"
    _rewrite(job_dir, spec)
    _fails(run_job, job_dir, "ModelError", "noisy_latents")


def test_missing_or_corrupt_job_tensors(model_store, fp32, job_dir, cache, run_job) -> None:
    _job(model_store, fp32, job_dir, cache)
    latents = (job_dir / "latents.npy").read_bytes()
    (job_dir / "latents.npy").write_bytes(latents[:-7])
    _fails(run_job, job_dir, "InvalidRequest", "initial latents", "not a valid .npy")
    (job_dir / "latents.npy").unlink()
    _fails(run_job, job_dir, "InvalidRequest", "initial latents", "missing")


def test_a_model_file_onnxruntime_cannot_read(model_store, fp32, job_dir, cache, run_job) -> None:
    spec = _job(model_store, fp32, job_dir, cache)
    garbage = b"this is not an onnx model" * 10
    sha = hashlib.sha256(garbage).hexdigest()
    (cache / sha).write_bytes(garbage)
    spec["components"]["unet"]["file"] = {"name": "unet.onnx", "sha256": sha, "size": len(garbage)}
    _rewrite(job_dir, spec)
    _fails(run_job, job_dir, "ModelError", "cannot load unet")


def test_usage(run_job, runner_binary) -> None:
    done = subprocess.run([str(runner_binary)], capture_output=True, text=True)
    assert (
        done.returncode == 1
        and done.stderr == "hexfleet-runner: usage: hexfleet-runner SPEC_PATH\n"
    )
