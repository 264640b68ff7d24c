"""Every command of `hexfleet --help` that takes a user string, given hostile ones (shell
metacharacters, quotes, newlines, NUL-free control bytes, `..`, absolute paths, over-long
values): a one-line `error: ...` and a non-zero exit code, never a traceback, and no file
created anywhere but where the user named one.

The commands run in this process as the console script runs them (`main`: a HexfleetError is
its one line), so the whole table takes seconds. The API is unreachable on purpose
(HEXFLEET_API_URL on a closed port): a value the CLI can check
itself is refused before any request (exit 2 or 3); one only the API can judge ends as the
one-line "does not answer" (exit 5). The models commands run on an empty data dir.
(A NUL cannot be passed in a command line at all: the OS refuses it before hexfleet runs.)
"""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hexfleet.cli.app import app, error_line, user_error

HOSTILE = [
    "a; rm -rf / #",
    "$(touch pwned)",
    "`touch pwned`",
    "x' \"y",
    "line\nbreak",
    "tab\tand\rreturn\x1b[31m",
    "../../../etc/passwd",
    "/etc/passwd",
    "..",
    "x" * 5000,
]
UUID = "00000000-0000-0000-0000-000000000000"

# (command, where the hostile value goes); `V` marks the value.
V = object()
COMMANDS: list[list[object]] = [
    ["job", V],
    ["cancel", V],
    ["results", V, "--out", "out"],
    ["jobs", "--state", V],
    ["compare", V, UUID],
    ["compare", UUID, V],
    ["generate", V, "--no-wait"],
    ["generate", "a red circle", "--model", V, "--no-wait"],
    ["generate", "a red circle", "--devices", V, "--no-wait"],
    ["generate", "a red circle", "--precision", V, "--no-wait"],
    ["generate", "a red circle", "--scheduler", V, "--no-wait"],
    ["generate", "a red circle", "--runtime", V, "--no-wait"],
    ["bench", V],
    ["bench", "tiny-sd", "--devices", V],
    ["bench", "tiny-sd", "--component", V],
    ["validate", V, "--no-wait"],
    ["validate", "tiny-sd", "--reference", V, "--no-wait"],
    ["validate", "tiny-sd", "--prompts", V, "--no-wait"],
    ["serve", "--role", V],
    ["models", "sample", V, "a red circle"],
    ["models", "sample", "tiny-sd", V, "--scheduler", "pndm"],
    ["models", "sample", "tiny-sd", "a red circle", "--version", V],
    ["models", "sample", "tiny-sd", "a red circle", "--precision", V],
    ["models", "evaluate", V],
    ["models", "evaluate", "tiny-sd", "--runtime", V],
    ["models", "quantize", V],
    ["models", "compile", V],
    ["models", "compile", "tiny-sd", "--htp-arch", V],
    ["models", "import", V],
    ["models", "import", "import-me", "--name", V],
    ["models", "register", V],
    ["runners", "register", V, "--abi", "x86_64"],
    ["runners", "register", "build", "--abi", V],
    ["virtual-devices", "fault", V, "offline"],
    ["virtual-devices", "fault", "127.0.0.1:1", V],
    # Options that take numbers: a bad value is click's usage error, on one line too.
    ["jobs", "--limit", V],
    ["generate", "a red circle", "--steps", V],
    ["bench", "tiny-sd", "--iterations", V],
    ["up", "--count", V],
    [V],
]


def _argv(command: list[object], value: str) -> list[str]:
    return [value if part is V else str(part) for part in command]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    work = tmp_path / "work"
    (work / "import-me").mkdir(parents=True)
    (work / "build").mkdir()
    monkeypatch.chdir(work)
    for key, value in {
        "HOME": str(tmp_path / "home"),
        "HEXFLEET_API_URL": "http://127.0.0.1:9",
        "HEXFLEET_DATA_DIR": str(tmp_path / "data"),
        "HEXFLEET_API_TOKEN": "token",
        "COLUMNS": "100",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HEXFLEET_DATABASE_URL", raising=False)
    return work


def _run(argv: list[str]) -> tuple[int, str]:
    """The console script in this process (as `main` runs it): exit code and stderr."""
    runner = CliRunner()
    result = runner.invoke(app, argv, standalone_mode=False)
    error = user_error(result.exception) if result.exception is not None else None
    if error is not None:
        return error.exit_code, error_line(error) + "\n"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        trace = "".join(traceback.format_exception(result.exception))
        return 1, f"Traceback (most recent call last):\n{trace}"
    return result.exit_code, result.stderr


@pytest.mark.parametrize(
    "command", COMMANDS, ids=lambda c: " ".join("V" if p is V else str(p)[:12] for p in c)
)
def test_hostile_values_are_one_line_errors(
    command: list[object], workdir: Path, tmp_path: Path
) -> None:
    before = set(tmp_path.rglob("*"))
    for value in HOSTILE:
        code, stderr = _run(_argv(command, value))
        shown = f"{_argv(command, value)[:4]!r}: {code} {stderr[-600:]!r}"
        assert code >= 2, shown
        assert "Traceback" not in stderr, shown
        assert stderr.endswith("\n") and len(stderr.splitlines()) == 1, shown
        assert stderr.startswith("error: "), shown
        assert not (workdir / "pwned").exists(), shown
    created = [p for p in tmp_path.rglob("*") if p not in before]
    # Only what the settings name may appear: the data dir (store, token) and HOME's caches.
    allowed = (tmp_path / "data", tmp_path / "home")
    assert all(p.is_relative_to(allowed[0]) or p.is_relative_to(allowed[1]) for p in created), (
        created
    )
