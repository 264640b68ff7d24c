"""Fixtures for the native runner: its build (once per source hash), tiny-sd in a store whose
blob folder doubles as the phone's cache, and a way to run a job folder through the program."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from runner_bundle import build_runner

from hexfleet.bundle import RUNNER_FILE
from hexfleet.manifest import Manifest
from hexfleet.models.quantize import quantize_model
from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore


@pytest.fixture(scope="session")
def runner_binary() -> Path:
    """The host runner, built by runner/build.sh into build/runner-<source hash> (git-ignored);
    an existing build of the same sources is reused."""
    return build_runner() / RUNNER_FILE


@pytest.fixture(scope="session")
def model_store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    return ModelStore(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def fp32(model_store: ModelStore) -> Manifest:
    """The committed tiny-sd export."""
    return register_tiny_sd(model_store)


@pytest.fixture(scope="session")
def quantized(model_store: ModelStore, fp32: Manifest) -> dict[str, Manifest]:
    """tiny-sd's w8a16 and w8a8 QDQ models (small calibration: these tests compare runners on the
    same model, not the quantization's quality)."""
    return {
        precision: quantize_model(
            model_store,
            fp32,
            precision,  # type: ignore[arg-type]
            calibration_prompts=4,
            calibration_steps=4,
            check_htp=False,
            threads=1,
        ).manifest
        for precision in ("w8a16", "w8a8")
    }


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    folder: Path

    def result(self) -> dict[str, object]:
        assert self.returncode == 0, self.stderr
        return json.loads((self.folder / "result.json").read_text())

    def progress(self) -> list[dict[str, object]]:
        prefix = "@progress "
        return [
            json.loads(line[len(prefix) :])
            for line in self.stdout.splitlines()
            if line.startswith(prefix)
        ]


@pytest.fixture
def job_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "jobs" / str(uuid.uuid4())
    folder.mkdir(parents=True)
    return folder


@pytest.fixture
def run_job(runner_binary: Path) -> Iterator[object]:
    """Run the runner on a job folder's spec.json with a clean environment (plus `env`)."""

    def run(folder: Path, env: dict[str, str] | None = None, timeout: float = 600) -> Run:
        done = subprocess.run(
            [str(runner_binary), str(folder / "spec.json")],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", **(env or {})},
            timeout=timeout,
        )
        return Run(done.returncode, done.stdout, done.stderr, folder)

    yield run
