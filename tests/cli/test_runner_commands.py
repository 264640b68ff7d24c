"""`hexfleet runners register`'s checks on a build folder: what makes the bundle, and one-line
refusals for a folder without a runner, a runner for another ABI, a file leading outside."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from runner_bundle import build_runner

from hexfleet.cli.runner_commands import make_bundle
from hexfleet.errors import InvalidRequest


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("runner")
    for path in build_runner().iterdir():
        if path.is_file():
            shutil.copy2(path, folder / path.name)
    return folder


def test_the_bundle_is_the_runner_and_its_libraries(build: Path) -> None:
    bundle, files = make_bundle(build, "x86_64", None)
    assert set(files) == {"hexfleet-runner", "libonnxruntime.so.1"}  # not CMake's files
    assert bundle.runner_version == (build / "VERSION").read_text().strip()
    assert (bundle.qnn_ep, bundle.qnn_backend) == (None, None)


def test_a_runner_for_another_abi_is_refused(build: Path) -> None:
    with pytest.raises(InvalidRequest, match="built for x86_64, not arm64-v8a"):
        make_bundle(build, "arm64-v8a", None)
    with pytest.raises(InvalidRequest, match="--abi must be one of"):
        make_bundle(build, "mips", None)


def test_a_folder_without_a_runner_or_leading_outside_is_refused(
    build: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidRequest, match="holds no hexfleet-runner"):
        make_bundle(tmp_path, "x86_64", "1")
    folder = tmp_path / "bundle"
    folder.mkdir()
    shutil.copy2(build / "hexfleet-runner", folder / "hexfleet-runner")
    (tmp_path / "libsecret.so").write_bytes(b"outside")
    (folder / "libsecret.so").symlink_to(tmp_path / "libsecret.so")
    with pytest.raises(InvalidRequest, match="leads outside"):
        make_bundle(folder, "x86_64", "1")
