"""Running the programs pushed to a virtual phone: the ELF itself in its sandbox, stdio wired to a
shell command's, with the phone's compute override and failpoints in its environment.

`executables.sandbox_command` builds the host argv (bubblewrap, qemu-user for arm64); this module
starts it, registers it in the phone's process table, injects a scheduled crash fault, and stops
it (SIGTERM, then SIGKILL) when its shell session goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path

from hexfleet.runner_env import ENV_DEVICE_SERIAL, ComputeSettings
from hexfleet.virtual_phone.executables import CannotExecute, sandbox_command
from hexfleet.virtual_phone.faults import LinkFaults
from hexfleet.virtual_phone.filesystem import PhoneFilesystem
from hexfleet.virtual_phone.pipes import Input, Output
from hexfleet.virtual_phone.processes import ProcessTable

log = logging.getLogger(__name__)

# Grace between SIGTERM and SIGKILL when a program's session goes away.
TERMINATE_GRACE_S = 2.0


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class Programs:
    """Starts the programs pushed to the phone and wires their stdio to a shell command's."""

    def __init__(
        self,
        fs: PhoneFilesystem,
        processes: ProcessTable,
        faults: LinkFaults,
        compute: Callable[[], ComputeSettings],
        serial: str,
        abi: str = "x86_64",
        state_dir: Path | None = None,
    ) -> None:
        self._fs = fs
        self._processes = processes
        self._faults = faults
        self._compute = compute
        self._serial = serial
        self._abi = abi
        self._state_dir = state_dir or fs.root.parent / f".{fs.root.name}-state"

    def executable_environment(self, exported: dict[str, str]) -> dict[str, str]:
        """What a pushed program starts with: a phone's shell environment, the variables the
        command line set (LD_LIBRARY_PATH, ADSP_LIBRARY_PATH, ...) and the phone's failpoints."""
        env = {
            "PATH": "/product/bin:/apex/com.android.runtime/bin:/system/bin:/system/xbin",
            "HOME": "/data/local/tmp",
            "TMPDIR": "/data/local/tmp",
            "ANDROID_DATA": "/data",
            ENV_DEVICE_SERIAL: self._serial,
        }
        env.update(self._compute().to_env())
        env.update(exported)
        return env

    async def run_executable(
        self, device_path: str, args: list[str], *, env: dict[str, str], stdin: Input,
        stdout: Output, stderr: Output, cwd: str, ppid: int,
    ) -> int:
        """Run a file pushed to the phone (an ELF for the phone's ABI) in its sandbox."""
        name = device_path.rsplit("/", 1)[-1]
        try:
            argv = sandbox_command(
                self._fs.root, self._abi, device_path, args, cwd, self._state_dir
            )
        except CannotExecute as exc:
            await stderr.write(f"/system/bin/sh: {device_path}: can't execute: {exc.strerror}\n"
                               .encode())
            return 126
        display = " ".join([device_path, *args])
        return await self._spawn(
            argv, self._fs.root, self.executable_environment(env), name, display,
            stdin=stdin, stdout=stdout, stderr=stderr, ppid=ppid,
        )

    async def _spawn(
        self, argv: list[str], cwd: Path, env: dict[str, str], name: str, display: str, *,
        stdin: Input, stdout: Output, stderr: Output, ppid: int,
    ) -> int:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
        entry = self._processes.spawn(
            name,
            display,
            ppid=ppid,
            signal_fn=lambda signum: _signal_group(proc.pid, signum),
            computes=True,
        )
        crash = self._faults.take_runner_crash()
        crash_timer = None
        if crash is not None:
            log.info("fault: %s will get signal %d in %.2fs", name, crash.signum, crash.after_s)
            crash_timer = asyncio.get_running_loop().call_later(
                crash.after_s, _signal_group, proc.pid, crash.signum
            )
        assert proc.stdout is not None and proc.stderr is not None and proc.stdin is not None
        feeder = asyncio.create_task(_feed(stdin, proc.stdin))
        try:
            await asyncio.gather(_pump(proc.stdout, stdout), _pump(proc.stderr, stderr))
            returncode = await proc.wait()
        finally:
            feeder.cancel()
            if crash_timer is not None:
                crash_timer.cancel()
            if proc.returncode is None:
                await _terminate(proc)
            self._processes.exit(entry.pid)
        return returncode if returncode >= 0 else 128 - returncode


async def _pump(source: asyncio.StreamReader, sink: Output) -> None:
    while chunk := await source.read(64 * 1024):
        await sink.write(chunk)
        await sink.flush()


async def _feed(source: Input, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read():
            sink.write(chunk)
            await sink.drain()
    except (BrokenPipeError, ConnectionResetError):
        return
    finally:
        sink.close()


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the program's process group, then SIGKILL it if it lingers."""
    _signal_group(proc.pid, signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), TERMINATE_GRACE_S)
    except TimeoutError:
        _signal_group(proc.pid, signal.SIGKILL)
        await proc.wait()
