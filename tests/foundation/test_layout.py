"""The layout holds: one folder per program, imports flowing one way, one installed import name.

The rules are docs/architecture.md's table: the shared core imports nothing of ours but itself;
the agent nothing of the orchestrator; the orchestrator nothing of the agent or the emulated
phone; and nothing imports the emulated phone except its own CLI group (and tests). runner/ is
the native program's folder, not a Python package.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# folder -> the package it installs as
FOLDERS = {
    "hexfleet": "hexfleet",
    "models": "hexfleet.models",
    "device_agent": "hexfleet.device_agent",
    "virtual_phone": "hexfleet.virtual_phone",
    "orchestrator": "hexfleet.orchestrator",
    "cli": "hexfleet.cli",
}
CORE = "core"
ALLOWED = {
    CORE: {CORE},
    "hexfleet.models": {CORE, "hexfleet.models"},
    "hexfleet.device_agent": {CORE, "hexfleet.models", "hexfleet.device_agent"},
    "hexfleet.virtual_phone": {CORE, "hexfleet.models", "hexfleet.virtual_phone"},
    "hexfleet.orchestrator": {CORE, "hexfleet.models", "hexfleet.orchestrator"},
    "hexfleet.cli": {
        CORE, "hexfleet.models", "hexfleet.device_agent", "hexfleet.orchestrator", "hexfleet.cli",
    },
}
# The one module outside the emulated phone's package that may import it: its CLI group.
VIRTUAL_PHONE_IMPORTERS = {"cli/virtual_device_commands.py"}


def _program(module: str) -> str | None:
    """The program a module of ours belongs to, or None when it is not ours."""
    if module != "hexfleet" and not module.startswith("hexfleet."):
        return None
    for package in sorted(FOLDERS.values(), key=len, reverse=True):
        if package != "hexfleet" and (module == package or module.startswith(package + ".")):
            return package
    return CORE


def _imports(path: Path) -> list[str]:
    modules = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.append(node.module)
            modules.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def _sources() -> list[tuple[str, Path]]:
    return [
        (package, path)
        for folder, package in FOLDERS.items()
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]


def test_imports_flow_one_way() -> None:
    wrong = []
    for package, path in _sources():
        mine = CORE if package == "hexfleet" else package
        relative = path.relative_to(ROOT).as_posix()
        for module in _imports(path):
            target = _program(module)
            if target is None:
                continue
            if target not in ALLOWED[mine] and not (
                target == "hexfleet.virtual_phone" and relative in VIRTUAL_PHONE_IMPORTERS
            ):
                wrong.append(f"{relative} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_the_runner_folder_is_the_native_program() -> None:
    """runner/ is the C++ program the farm pushes to phones: no Python package hides in it."""
    assert not sorted((ROOT / "runner").rglob("*.py"))
    assert (ROOT / "runner" / "CMakeLists.txt").is_file()


def test_no_module_of_ours_is_imported_by_its_folder_name() -> None:
    """`import models` would work from the repository root and collide with anyone's `models`."""
    bare = {folder for folder in FOLDERS if folder != "hexfleet"}
    wrong = []
    for path in [p for _, p in _sources()] + sorted((ROOT / "tests").rglob("*.py")) + sorted(
        (ROOT / "bench").glob("*.py")
    ):
        for module in _imports(path):
            if module.split(".")[0] in bare:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not wrong, "\n".join(wrong)


def test_every_package_folder_is_installed() -> None:
    """pyproject's explicit package list misses no folder (a missed one would be absent from the
    wheel while the editable install still finds it)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert {v: k for k, v in config["package-dir"].items()} == FOLDERS
    found = set()
    for folder, package in FOLDERS.items():
        for init in (ROOT / folder).rglob("*.py"):
            parts = init.parent.relative_to(ROOT / folder).parts
            if "__pycache__" not in parts:
                found.add(".".join((package, *parts)))
    assert found == set(config["packages"])


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_name(tmp_path: Path) -> None:
    """Build the wheel, install it into a scratch venv beside nothing else, list what it added."""
    # A copy of the tracked files: setuptools writes build/ beside the sources it builds.
    source = tmp_path / "source"
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path / "dist"), str(source)],
        check=True,
    )
    (wheel,) = (tmp_path / "dist").glob("hexfleet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"hexfleet"}
    assert "hexfleet/orchestrator/db/migrations/versions/0001_initial_schema.py" in names
    assert "hexfleet/models/tiny_sd/weights/unet.onnx" in names
    # Installed into a scratch venv (its dependencies from ours, but not our editable finder,
    # whose .pth a plain path entry does not run), the package resolves from the wheel alone.
    env = tmp_path / "venv"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    (Path(site) / "dependencies.pth").write_text("\n".join(ours) + "\n")
    listed = subprocess.run(
        [python, "-I", "-c",
         "import hexfleet.cli.app, hexfleet.orchestrator.server, hexfleet.models, pathlib, sys;"
         "print(pathlib.Path(hexfleet.models.__file__).parent.parent)"],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert Path(listed.stdout.strip()) == Path(site) / "hexfleet"
