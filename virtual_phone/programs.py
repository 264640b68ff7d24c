"""The phone's executables that run as host subprocesses: the farm's runner and `hexfleet-onnx-run`.

Each one is a fixed Python module started with an argv built by us (device paths resolved inside
the phone's folder, never through a shell), with the phone's compute settings in its environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import hexfleet
from hexfleet.runner_env import ENV_DEVICE_ROOT, ENV_DEVICE_SERIAL, ComputeSettings
from hexfleet.virtual_phone.executables import CannotExecute, sandbox_command
from hexfleet.virtual_phone.faults import LinkFaults
from hexfleet.virtual_phone.filesystem import PhoneFilesystem, check_writable, fs_error
from hexfleet.virtual_phone.pipes import Input, Output
from hexfleet.virtual_phone.processes import ProcessTable

log = logging.getLogger(__name__)

RUNNER_PATH = "/data/local/tmp/hexfleet/bin/hexfleet-runner"
ONNX_RUN_PATH = "/system/bin/hexfleet-onnx-run"
# The variable that tells a program where the phone's `/` is on the host.
# Grace between SIGTERM and SIGKILL when a program's session goes away.
TERMINATE_GRACE_S = 2.0
_PACKAGE_PARENT = str(Path(hexfleet.__file__).resolve().parent.parent)


class UsageError(Exception):
    """The program was called with arguments it cannot take."""


@dataclass(frozen=True)
class Program:
    """An executable on the phone backed by `python -m module` on the host."""

    device_path: str
    module: str
    usage: str

    @property
    def name(self) -> str:
        return self.device_path.rsplit("/", 1)[-1]

    def placeholder(self) -> str:
        """What the file at `device_path` contains on a fresh phone."""
        return (
            "#!/system/bin/sh\n"
            f"# Virtual phone: this program runs `python -m {self.module}` on the host.\n"
            f"# usage: {self.usage}\n"
        )


RUNNER = Program(RUNNER_PATH, "hexfleet.runner", f"{RUNNER_PATH} SPEC_PATH")
ONNX_RUN = Program(
    ONNX_RUN_PATH, "hexfleet.virtual_phone.compute", "hexfleet-onnx-run MODEL INPUT OUTPUT"
)
PROGRAMS = {program.device_path: program for program in (RUNNER, ONNX_RUN)}


@dataclass(frozen=True)
class Launch:
    """A resolved command line: host argv tail, host working directory, display text."""

    args: list[str]
    cwd: Path
    display: str


def _signal_group(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signum)


class Programs:
    """Starts the phone's programs and wires their stdio to a shell command's."""

    def __init__(
        self,
        fs: PhoneFilesystem,
        processes: ProcessTable,
        faults: LinkFaults,
        compute: Callable[[], ComputeSettings],
        serial: str,
        python: str = sys.executable,
        commands: dict[str, list[str]] | None = None,
        abi: str = "x86_64",
        state_dir: Path | None = None,
    ) -> None:
        self._fs = fs
        self._processes = processes
        self._faults = faults
        self._compute = compute
        self._serial = serial
        self._python = python
        self._commands = dict(commands or {})
        self._abi = abi
        self._state_dir = state_dir or fs.root.parent / f".{fs.root.name}-state"

    def command(self, program: Program) -> list[str]:
        """The host argv prefix that runs `program` (`python -m module` unless overridden)."""
        return self._commands.get(program.device_path, [self._python, "-m", program.module])

    def placeholders(self) -> dict[str, str]:
        """Files to create on a fresh phone so `ls` finds the programs."""
        return {program.device_path: program.placeholder() for program in PROGRAMS.values()}

    @staticmethod
    def find(device_path: str) -> Program | None:
        return PROGRAMS.get(device_path)

    def _launch(self, program: Program, args: list[str], cwd: str) -> Launch:
        if program is RUNNER:
            if len(args) != 1:
                raise UsageError(f"usage: {program.usage}")
            spec = self._fs.resolve(args[0], cwd)
            if not spec.host.is_file():
                raise fs_error(errno.ENOENT, spec.device)
            display = f"{program.device_path} {spec.device}"
            return Launch([str(spec.host)], spec.host.parent, display)
        if len(args) != 3:
            raise UsageError(f"usage: {program.usage}")
        model = self._fs.resolve(args[0], cwd)
        source = self._fs.resolve(args[1], cwd)
        output = self._fs.resolve(args[2], cwd)
        for item in (model, source):
            if not item.host.is_file():
                raise fs_error(errno.ENOENT, item.device)
        check_writable(output.device)
        settings = self._compute()
        options = [
            "--compute", settings.mode,
            "--htp-arch", settings.htp_arch,
            "--soc", settings.soc,
            "--faulty-npu", repr(settings.faulty_npu),
        ]
        host_args = options + [str(model.host), str(source.host), str(output.host)]
        display = f"hexfleet-onnx-run {model.device} {source.device} {output.device}"
        return Launch(host_args, self._fs.resolve(cwd).host, display)

    def environment(self) -> dict[str, str]:
        """The whole environment a program gets (nothing inherited from the phone's host)."""
        home = str(self._fs.root / "data/local/tmp")
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": home,
            "TMPDIR": home,
            "LANG": "C.UTF-8",
            "PYTHONPATH": _PACKAGE_PARENT,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            ENV_DEVICE_ROOT: str(self._fs.root),
            ENV_DEVICE_SERIAL: self._serial,
        }
        env.update(self._compute().to_env())
        return env

    async def run(
        self, program: Program, args: list[str], *, stdin: Input, stdout: Output, stderr: Output,
        cwd: str, ppid: int,
    ) -> int:
        """Run a program to completion, streaming its output; returns its exit status."""
        try:
            launch = self._launch(program, args, cwd)
        except UsageError as exc:
            await stderr.write(f"{exc}\n".encode())
            return 2
        except OSError as exc:
            await stderr.write(f"{program.name}: {exc.filename}: {exc.strerror}\n".encode())
            return 1
        return await self._spawn(
            [*self.command(program), *launch.args], launch.cwd, self.environment(),
            program.name, launch.display, stdin=stdin, stdout=stdout, stderr=stderr, ppid=ppid,
        )

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
