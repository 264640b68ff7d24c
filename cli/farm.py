"""The embedded farm: everything on one machine with no server to install.

`up` starts virtual phones (one process each), connects them to the bundled adb server, then
`hexfleet serve` (API + ingest, SQLite, the filesystem broker) and `hexfleet agent` as detached
processes, and waits until every phone has reported in. `down` stops all of it. What runs is
recorded in `<data_dir>/farm.json`, so `down` works from any shell.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from pydantic import BaseModel

from hexfleet.cli.virtual_device_commands import start_phones, stop_phones
from hexfleet.device_agent import adb_server
from hexfleet.errors import InvalidRequest, ServiceUnavailable
from hexfleet.settings import Settings

START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 30.0
DEFAULT_PHONES = "sm8450,sm8550,sm8650,sm8750"


class FarmState(BaseModel):
    serve_pid: int
    agent_pid: int
    phone_serials: list[str]
    api_url: str
    started_adb_server: bool = False


def state_file(settings: Settings) -> Path:
    return settings.data_dir / "farm.json"


def logs_dir(settings: Settings) -> Path:
    return settings.data_dir / "logs"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(settings: Settings) -> FarmState | None:
    path = state_file(settings)
    if not path.is_file():
        return None
    state = FarmState.model_validate_json(path.read_text())
    return state if _alive(state.serve_pid) or _alive(state.agent_pid) else None


def _spawn(settings: Settings, name: str, *args: str) -> subprocess.Popen[bytes]:
    logs_dir(settings).mkdir(parents=True, exist_ok=True)
    with (logs_dir(settings) / f"{name}.log").open("ab") as log:
        return subprocess.Popen(  # noqa: S603 - fixed argv: this interpreter, our own CLI
            [sys.executable, "-m", "hexfleet.cli.app", *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _wait(what: str, condition, process: subprocess.Popen[bytes], log: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + START_TIMEOUT_S
    while not condition():
        if process.poll() is not None:
            raise ServiceUnavailable(f"{what} exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise ServiceUnavailable(f"{what} did not come up in {START_TIMEOUT_S:g} s; see {log}")
        time.sleep(0.2)


def _api_devices(settings: Settings) -> set[str]:
    token = settings.client_token()
    try:
        response = httpx.get(
            f"{settings.api_url}/api/v1/devices",
            timeout=2,
            headers={"Authorization": f"Bearer {token}"},
        )
    except httpx.TransportError:
        return set()
    if response.status_code != 200:
        return set()
    return {d["serial"] for d in response.json() if d["state"] != "offline"}


def up(
    settings: Settings,
    phones: str = DEFAULT_PHONES,
    count: int | None = None,
    compute: str = "htp",
    base_port: int = 18500,
    progress=print,
) -> FarmState:  # noqa: ANN001
    """Start the whole farm; returns what runs. Refuses if one already runs here."""
    if running(settings) is not None:
        raise InvalidRequest(f"a farm already runs from {settings.data_dir}; `hexfleet down` first")
    settings.ensure_data_dir()
    progress(f"starting virtual phones ({compute})")
    started_adb = adb_server.ensure_local_server(settings)
    try:
        serials = start_phones(settings, phones, count, base_port=base_port, compute=compute)
        progress(f"phones connected to the adb server on port {settings.adb_port}")
        serve = _spawn(settings, "serve", "serve")
        _wait(
            "hexfleet serve",
            lambda: _api_devices(settings) is not None and _healthy(settings),
            serve,
            str(logs_dir(settings) / "serve.log"),
        )
        progress(f"orchestrator API on {settings.api_url}")
        progress(f"dashboard on {settings.api_url}/ui/ (token in {settings.token_file})")
        agent = _spawn(settings, "agent", "agent", "--poll", "0.5")
        state = FarmState(
            serve_pid=serve.pid,
            agent_pid=agent.pid,
            phone_serials=serials,
            api_url=settings.api_url,
            started_adb_server=started_adb,
        )
        state_file(settings).write_text(state.model_dump_json(indent=1))
        _wait(
            "every phone's agent worker",
            lambda: _api_devices(settings) >= set(serials),
            agent,
            str(logs_dir(settings) / "agent.log"),
        )
        progress(f"agent up: {len(serials)} phones online")
        progress(register_host_runner(settings))
        return state
    except BaseException:
        down(settings)
        if started_adb:
            adb_server.kill_local_server(settings)
        raise


def register_host_runner(settings: Settings) -> str:
    """Build this checkout's runner for the host's ABI (x86_64; an incremental build, a no-op when
    nothing changed) with the onnxruntime-qnn wheel's QNN EP and HTP simulator beside it, and
    register it: what the virtual phones run."""
    from hexfleet.cli.client import ApiClient
    from hexfleet.cli.runner_commands import qnn_simulator_files, register

    script = Path(__file__).resolve().parents[1] / "runner" / "build.sh"
    if not script.is_file():
        return "no runner sources here: register one with `hexfleet runners register`"
    build = script.parents[1] / "build" / "runner-x86_64"  # git-ignored; rebuilt only on change
    done = subprocess.run(  # noqa: S603 - fixed argv
        [str(script), "--abi", "x86_64", str(build)],
        capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable},
    )
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise ServiceUnavailable(f"building the runner failed (runner/build.sh): {tail[0]}")
    for name, path in qnn_simulator_files().items():
        shutil.copy2(path, build / name)
    with ApiClient.from_settings(settings) as client:
        view = register(client, build, "x86_64")
    return f"runner {view['runner_version']} registered for x86_64 ({view['sha256'][:12]})"


def _healthy(settings: Settings) -> bool:
    try:
        return httpx.get(f"{settings.api_url}/api/v1/health", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def _stop(pid: int) -> None:
    """SIGTERM the process's whole group (serve's ingest child too), SIGKILL it if it lingers."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)


def down(settings: Settings) -> list[str]:
    """Stop the agent, the orchestrator and the virtual phones; returns what was stopped."""
    stopped = []
    path = state_file(settings)
    state = FarmState.model_validate_json(path.read_text()) if path.is_file() else None
    if state is not None:
        for name, pid in (("agent", state.agent_pid), ("serve", state.serve_pid)):
            if _alive(pid):
                _stop(pid)
                stopped.append(name)
    phones = stop_phones(settings)
    stopped.extend(r.serial for r in phones)
    if state is not None:
        if state.started_adb_server:
            adb_server.kill_local_server(settings)
            stopped.append("adb server")
        path.unlink()
    return stopped


def describe(state: FarmState) -> str:
    return json.dumps(state.model_dump(), indent=1)
