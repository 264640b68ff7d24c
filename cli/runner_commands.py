"""`hexfleet runners ...`: register the native runner (one bundle per CPU ABI) and list them.

A bundle is a build folder's runner (`hexfleet-runner`) and the shared libraries beside it
(`lib*.so*`: onnxruntime, and for the NPU the QNN EP plugin and Qualcomm's QNN libraries). Each
file is uploaded to the orchestrator by sha256, then the bundle is registered for its ABI.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated

import typer

from hexfleet.bundle import ABIS, RUNNER_FILE, RunnerBundle, elf_abi
from hexfleet.cli.client import ApiClient
from hexfleet.errors import InvalidRequest
from hexfleet.manifest import FileRef
from hexfleet.settings import Settings

runners_app = typer.Typer(
    help="Register the native runner for a CPU ABI, and list the registered ones.",
    no_args_is_help=True,
)

QNN_EP = "libonnxruntime_providers_qnn.so"
QNN_BACKEND = "libQnnHtp.so"
_LIBRARY = re.compile(r"^lib[A-Za-z0-9_+.-]*\.so(\.[0-9]+)*\Z")
# What runner/build.sh writes beside the runner: the version CMakeLists.txt declares.
VERSION_FILE = "VERSION"


def qnn_simulator_files() -> dict[str, Path]:
    """The onnxruntime-qnn wheel's files a host (x86_64) bundle needs for the HTP simulator: the
    plugin EP, the HTP backend and what they load beside them, and the libraries they link
    against (the wheel's auditwheel folder: libc++ and kin; without them the backend does not
    load and every node falls to the CPU)."""
    import onnxruntime_qnn

    wheel = Path(onnxruntime_qnn.get_library_path()).parent
    names = (QNN_EP, QNN_BACKEND, "libHtpPrepare.so", "libQnnSystem.so")
    files = {name: wheel / name for name in names if (wheel / name).is_file()}
    for library in sorted(wheel.with_name(wheel.name + ".libs").glob("lib*.so*")):
        files[library.name] = library
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_files(folder: Path, abi: str) -> dict[str, Path]:
    """The files of a build folder that make its bundle, checked: regular files inside the folder,
    the runner built for `abi`. One-line InvalidRequest otherwise."""
    if abi not in ABIS:
        raise InvalidRequest(f"--abi must be one of {', '.join(ABIS)}, not {abi!r}")
    if not folder.is_dir():
        raise InvalidRequest(f"{folder} is not a folder (a runner build, e.g. build/runner-x86_64)")
    root = folder.resolve()
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name != RUNNER_FILE and not _LIBRARY.match(path.name):
            continue
        resolved = path.resolve()
        if not resolved.is_relative_to(root) or not resolved.is_file():
            raise InvalidRequest(f"{path} leads outside {folder} or is not a file; copy it in")
        files[path.name] = resolved
    if RUNNER_FILE not in files:
        raise InvalidRequest(f"{folder} holds no {RUNNER_FILE} (build it: runner/build.sh)")
    built_for = elf_abi(files[RUNNER_FILE])
    if built_for != abi:
        built = built_for or "no known ABI"
        raise InvalidRequest(f"{files[RUNNER_FILE]} is built for {built}, not {abi}")
    return files


def make_bundle(
    folder: Path, abi: str, version: str | None
) -> tuple[RunnerBundle, dict[str, Path]]:
    files = bundle_files(folder, abi)
    if version is None:
        marker = folder / VERSION_FILE
        if not marker.is_file():
            raise InvalidRequest(f"{folder} has no {VERSION_FILE} file: pass --version")
        version = marker.read_text().strip()
    refs = [FileRef(name=name, sha256=_sha256(path), size=path.stat().st_size)
            for name, path in files.items()]
    bundle = RunnerBundle(
        abi=abi,  # type: ignore[arg-type]
        runner_version=version,
        files=refs,
        qnn_ep=QNN_EP if QNN_EP in files else None,
        qnn_backend=QNN_BACKEND if QNN_BACKEND in files else None,
    )
    return bundle, files


def register(client: ApiClient, folder: Path, abi: str, version: str | None = None) -> dict:
    """Upload a build folder's bundle files and register the bundle; returns the API's view."""
    bundle, files = make_bundle(folder, abi, version)
    for ref in bundle.files:
        client.upload(ref.sha256, files[ref.name])
    return client.post("/api/v1/runners", bundle.model_dump(mode="json"))


@runners_app.command("register")
def register_cmd(
    folder: Annotated[Path, typer.Argument(help="A runner build folder (runner/build.sh).")],
    abi: Annotated[str, typer.Option(help=f"The phones' CPU ABI: {', '.join(ABIS)}.")],
    version: Annotated[
        str | None, typer.Option(help="The runner's version (default: the folder's VERSION).")
    ] = None,
) -> None:
    """Register the runner in FOLDER for every phone whose ro.product.cpu.abi is ABI."""
    with ApiClient.from_settings(Settings()) as client:
        view = register(client, folder, abi, version)
    typer.echo(
        f"registered the {view['abi']} runner {view['runner_version']}: bundle {view['sha256']} "
        f"({view['files']} files, {view['size'] / 1e6:.1f} MB)"
    )


@runners_app.command("list")
def list_cmd(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")] = False,
) -> None:
    """The runner bundle registered for each ABI."""
    with ApiClient.from_settings(Settings()) as client:
        views = client.get("/api/v1/runners")
    if as_json:
        typer.echo(json.dumps(views, indent=1))
        return
    if not views:
        typer.echo("no runners yet: hexfleet runners register --abi x86_64 build/runner-x86_64")
    for view in views:
        typer.echo(
            f"{view['abi']:10} {view['runner_version']:8} {view['sha256']}  "
            f"{view['files']} files  {view['size'] / 1e6:.1f} MB"
        )
