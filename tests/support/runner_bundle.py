"""The native runner for tests: built once per source hash with runner/build.sh, and made into a
runner bundle registered in a model store (its blobs are what the orchestrator serves by sha256,
so an agent's host cache fetches a bundle's files exactly as it fetches model files)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from hexfleet.bundle import RUNNER_FILE, RunnerBundle
from hexfleet.cli.runner_commands import QNN_BACKEND, QNN_EP, qnn_simulator_files
from hexfleet.models.store import ModelStore

ROOT = Path(__file__).resolve().parents[2]
RUNNER_VERSION = "2.0.0"  # runner/CMakeLists.txt's project version
ORT_LIBRARY = "libonnxruntime.so.1"


def source_hash() -> str:
    """A hash of everything the runner is built from: a changed source means a new build."""
    digest = hashlib.sha256()
    files = [
        ROOT / "runner" / "CMakeLists.txt",
        ROOT / "runner" / "build.sh",
        *sorted((ROOT / "runner" / "cmake").glob("*")),
        *sorted((ROOT / "runner" / "src").glob("*")),
        *sorted(p for p in (ROOT / "third_party").rglob("*") if p.is_file()),
    ]
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_runner(abi: str = "x86_64") -> Path:
    """The folder of a runner build for `abi` (`hexfleet-runner` and `libonnxruntime.so.1`),
    built by runner/build.sh into build/runner-<source hash> (x86_64) or
    build/runner-<abi>-<source hash> (git-ignored); an existing build of the same sources is
    reused."""
    name = f"runner-{source_hash()}" if abi == "x86_64" else f"runner-{abi}-{source_hash()}"
    build = ROOT / "build" / name
    if not (build / RUNNER_FILE).is_file():
        done = subprocess.run(
            [str(ROOT / "runner" / "build.sh"), "--abi", abi, str(build)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"runner/build.sh --abi {abi} failed:\n{done.stderr[-3000:]}")
    return build


def register_bundle(
    store: ModelStore, build: Path, abi: str = "x86_64", *, qnn: bool = False
) -> RunnerBundle:
    """Store a build's runner and onnxruntime (plus, with `qnn`, the onnxruntime-qnn wheel's
    plugin EP and HTP simulator backend) by content and describe them as a bundle."""
    paths = {RUNNER_FILE: build / RUNNER_FILE, ORT_LIBRARY: build / ORT_LIBRARY}
    if qnn:
        paths.update(qnn_simulator_files())
    files = [store.put_file(path, name) for name, path in paths.items()]
    return RunnerBundle(
        abi=abi,  # type: ignore[arg-type]
        runner_version=RUNNER_VERSION,
        files=files,
        qnn_ep=QNN_EP if qnn else None,
        qnn_backend=QNN_BACKEND if qnn else None,
    )
