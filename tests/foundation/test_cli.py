"""The `hexfleet` console script: groups listed, version printed, unfinished groups say so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hexfleet import __version__

HEXFLEET = [str(Path(sys.executable).parent / "hexfleet")]
GROUPS = ["devices", "models", "generate", "bench", "validate", "jobs", "serve", "agent",
          "virtual-devices", "demo"]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - fixed argv, no shell
        [*HEXFLEET, *args], capture_output=True, text=True, timeout=60, check=False
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


@pytest.mark.parametrize("group", ["devices", "generate", "bench", "validate", "jobs", "serve",
                                   "agent", "demo"])
def test_unfinished_groups_say_so(group: str) -> None:
    result = _run(group)
    assert result.returncode == 4, result.stderr
    assert result.stderr == f"error: 'hexfleet {group}' is not implemented yet\n"
