"""The `hexfleet` console script: groups listed, version printed, one-line errors, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hexfleet import __version__

HEXFLEET = [str(Path(sys.executable).parent / "hexfleet")]
GROUPS = [
    "devices",
    "models",
    "generate",
    "bench",
    "validate",
    "jobs",
    "serve",
    "agent",
    "virtual-devices",
    "demo",
]


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*HEXFLEET, *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def test_help_lists_every_command_group() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for group in GROUPS:
        assert group in result.stdout


def test_version() -> None:
    result = _run("version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"hexfleet {__version__}"


def test_validate_checks_its_options_before_calling_the_api(tmp_path: Path) -> None:
    missing = _run("validate", "tiny-sd", "--prompts", str(tmp_path / "none.txt"))
    assert missing.returncode == 3 and missing.stderr.count("\n") == 1, missing.stderr
    (tmp_path / "p.txt").write_text("a red circle on the left in a blue background\n")
    both = _run("validate", "tiny-sd", "--prompts", str(tmp_path / "p.txt"), "--inputs", "2")
    assert both.returncode == 2 and "not both" in both.stderr
    (tmp_path / "empty.txt").write_text("\n  \n")
    empty = _run("validate", "tiny-sd", "--prompts", str(tmp_path / "empty.txt"))
    assert empty.returncode == 2 and "no prompt" in empty.stderr


@pytest.mark.parametrize(
    "args",
    [["devices"], ["jobs", "--json"], ["generate", "a red circle"], ["validate", "tiny-sd"]],
)
def test_an_unreachable_api_is_one_line_and_exit_5(args: list[str], tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HEXFLEET_API_URL": "http://127.0.0.1:9",
        "HEXFLEET_DATA_DIR": str(tmp_path),
    }
    result = _run(*args, env=env)
    assert result.returncode == 5, result.stderr
    assert result.stderr.startswith("error: the hexfleet API at http://127.0.0.1:9 does not answer")
    assert result.stderr.count("\n") == 1


def test_generate_takes_images_per_prompt_as_images_not_count() -> None:
    """--count is the API's number of runs; images per prompt is --images so the two never mix."""
    shown = _run("generate", "--help", env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert shown.returncode == 0 and "--images" in shown.stdout, shown.stdout
    assert "Images per prompt" in shown.stdout and "--count" not in shown.stdout
    refused = _run("generate", "a red circle", "--count", "2")
    assert refused.returncode == 2 and "--count" in refused.stderr


@pytest.mark.parametrize("command", [["job"], ["cancel"], ["results"]])
@pytest.mark.parametrize("job_id", ["abc\ndef", "../../health", "x" * 5000, "1; rm -rf /"])
def test_a_malformed_job_id_is_one_line_before_any_request(
    command: list[str], job_id: str, tmp_path: Path
) -> None:
    # The API is unreachable on purpose: the id must be refused before a request is built.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "HEXFLEET_API_URL": "http://127.0.0.1:9",
        "HEXFLEET_DATA_DIR": str(tmp_path),
    }
    options = ["--out", str(tmp_path / "out")] if command == ["results"] else []
    result = _run(*command, job_id, *options, env=env)
    assert result.returncode == 2, result.stderr
    assert not (tmp_path / "out").exists()
    assert result.stderr.startswith("error: ") and "is not a job id" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
