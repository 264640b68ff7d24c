"""The phone's userland: toybox-like commands (ls, cat, getprop, ps, kill, ...) and command lookup.

Messages and formats follow Android's toybox and mksh where a farm parses them ("inaccessible or
not found" + 127 for unknown commands); every path goes through the phone's confined filesystem.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import os
import shutil
import signal
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

from hexfleet.virtual_phone.filesystem import PhoneFilesystem, Resolved, check_writable, fs_error
from hexfleet.virtual_phone.health import Health
from hexfleet.virtual_phone.pipes import FileInput, FileOutput, Input, NullOutput, Output, read_all
from hexfleet.virtual_phone.processes import SYSTEM_PROCESSES, ProcessTable
from hexfleet.virtual_phone.profiles import Profile
from hexfleet.virtual_phone.programs import Programs
from hexfleet.virtual_phone.shell import IO, SHELL_PATH, Interpreter, ShellExit, ShellState
from hexfleet.virtual_phone.storage import Storage

# Commands a phone's mksh runs itself (the rest are toybox's): they word their errors as mksh does.
MKSH_BUILTINS = frozenset({"echo", "print", "pwd", "true", "false", "test", "["})
PATH_DIRS = (
    "/product/bin",
    "/apex/com.android.runtime/bin",
    "/system/bin",
    "/system/xbin",
    "/vendor/bin",
)
KERNEL_RELEASE = "5.15.153-android14-11-gd5b0c2b5e1a4"


class Usage(Exception):  # noqa: N818 - raised for a bad option, like toybox's error_exit
    """A command was called with options it does not take."""


@dataclass
class PhoneContext:
    """What the toolbox may touch on its phone."""

    fs: PhoneFilesystem
    storage: Storage
    profile: Profile
    props: dict[str, str]
    health: Health
    processes: ProcessTable
    programs: Programs
    reboot: Callable[[], None]
    background: set[asyncio.Task[int]] = field(default_factory=set)


@dataclass
class Invocation:
    """One command being run: its phone, shell state, stdio and name."""

    phone: PhoneContext
    state: ShellState
    io: IO
    name: str

    async def out(self, data: str | bytes) -> None:
        await self.io.stdout.write(data.encode() if isinstance(data, str) else data)

    async def error(self, message: str) -> None:
        await self.io.stderr.write(f"{self.name}: {message}\n".encode())

    async def path_error(self, exc: OSError, shown: str) -> None:
        await self.error(f"{shown}: {exc.strerror}")

    def resolve(self, path: str, *, follow: bool = True) -> Resolved:
        return self.phone.fs.resolve(path, self.state.cwd, follow_final=follow)


CommandFn = Callable[[Invocation, list[str]], Awaitable[int]]
F = TypeVar("F")
COMMANDS: dict[str, CommandFn] = {}


def _registrar(table: dict[str, F]) -> Callable[..., Callable[[F], F]]:
    """A decorator factory: `@deco("ls", "dir")` puts the function in `table` under each name."""

    def names(*names: str) -> Callable[[F], F]:
        def register(fn: F) -> F:
            for name in names:
                table[name] = fn
            return fn

        return register

    return names


command = _registrar(COMMANDS)


def parse_flags(args: list[str], allowed: str, valued: str = "") -> tuple[set[str], dict, list]:
    """toybox-style options: `-la` = `-l -a`, options anywhere before `--`; raise Usage."""
    flags: set[str] = set()
    values: dict[str, str] = {}
    operands: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            operands.extend(args[index:])
            break
        if not arg.startswith("-") or arg == "-":
            operands.append(arg)
            continue
        for position, letter in enumerate(arg[1:], start=1):
            if letter in valued:
                value = arg[position + 1 :]
                if not value:
                    if index >= len(args):
                        raise Usage(f"Needs 1 argument for -{letter}")
                    value = args[index]
                    index += 1
                values[letter] = value
                break
            if letter not in allowed:
                raise Usage(f"Unknown option '{letter}'")
            flags.add(letter)
    return flags, values, operands


# --- the toolbox: command lookup and execution -----------------------------------------------


class Toolbox:
    """Finds and runs what a command line names: a shell builtin, a command or a program."""

    def __init__(self, phone: PhoneContext) -> None:
        self.phone = phone

    def interpreter(self, state: ShellState) -> Interpreter:
        return Interpreter(
            state,
            execute=self.execute,
            open_file=self.open_file,
            glob=self.glob,
            spawn=self.spawn,
        )

    def new_state(self, ppid: int = 701) -> ShellState:
        """A fresh shell (its own pid in `ps`) with Android's default environment."""
        entry = self.phone.processes.spawn("sh", SHELL_PATH, ppid=ppid)
        return ShellState(pid=entry.pid, cwd="/", variables=default_variables(self.phone))

    def glob(self, pattern: str, state: ShellState) -> list[str]:
        return self.phone.fs.glob(pattern, state.cwd)

    def open_file(self, path: str, mode: str, state: ShellState) -> Input | Output:
        if path == "/dev/null":
            return Input() if mode == "rb" else NullOutput()
        resolved = self.phone.fs.resolve(path, state.cwd)
        room = None
        if mode != "rb":
            check_writable(resolved.device)
            storage = self.phone.storage
            room = storage.room_for(resolved.host) if mode == "wb" else storage.usage().free
        try:
            handle = open(resolved.host, mode)  # noqa: SIM115 - the redirection closes it
        except OSError as exc:
            raise fs_error(exc.errno or errno.EIO, path) from exc
        return FileInput(handle) if mode == "rb" else FileOutput(handle, room)

    def spawn(self, job: Callable[[], Awaitable[int]], description: str) -> int:
        """Run a background job (`cmd &`); it shows in `ps` as a shell and `kill` cancels it."""
        task: asyncio.Task[int] | None = None

        def deliver(signum: int) -> None:
            if task is not None:
                task.cancel()

        entry = self.phone.processes.spawn(description, SHELL_PATH, signal_fn=deliver)

        async def run() -> int:
            try:
                return await job()
            finally:
                self.phone.processes.exit(entry.pid)

        task = asyncio.create_task(run(), name=f"background-{entry.pid}")
        self.phone.background.add(task)
        task.add_done_callback(self.phone.background.discard)
        return entry.pid

    async def execute(self, argv: list[str], io: IO, state: ShellState) -> int:
        name = argv[0]
        invocation = Invocation(self.phone, state, io, name.rsplit("/", 1)[-1])
        special = SHELL_BUILTINS.get(name)
        if special is not None:
            return await special(self, invocation, argv[1:])
        if "/" not in name:
            if name in COMMANDS:
                return await _run(COMMANDS[name], invocation, argv[1:])
            return await _not_found(io, name)
        try:
            resolved = self.phone.fs.resolve(name, state.cwd)
        except OSError:
            return await _not_found(io, name)
        folder, _, base = resolved.device.rpartition("/")
        if folder in ("/system/bin", "/system/xbin") and base in COMMANDS:
            return await _run(COMMANDS[base], invocation, argv[1:])
        if resolved.host.is_file() and self._executable(resolved.device):
            return await self.phone.programs.run_executable(
                resolved.device,
                argv[1:],
                env=state.command_env,
                stdin=io.stdin,
                stdout=io.stdout,
                stderr=io.stderr,
                cwd=state.cwd,
                ppid=state.pid,
            )
        if resolved.host.exists():
            await io.stderr.write(
                f"{SHELL_PATH}: {name}: can't execute: Permission denied\n".encode()
            )
            return 126
        return await _not_found(io, name)

    def _executable(self, device_path: str) -> bool:
        try:
            info = os.stat(self.phone.fs.resolve(device_path).host)
        except OSError:
            return False
        return stat.S_ISREG(info.st_mode) and bool(info.st_mode & 0o111)


async def _run(fn: CommandFn, invocation: Invocation, args: list[str]) -> int:
    try:
        return await fn(invocation, args)
    except Usage as exc:
        await invocation.error(f'{exc} (see "{invocation.name} --help")')
        return 1
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        # Its output redirected to a full disk: toybox's xwrite fails, mksh's echo says `write`.
        if invocation.name in MKSH_BUILTINS:
            await invocation.io.stderr.write(
                f"{SHELL_PATH}: {invocation.name}: write: {exc.strerror}\n".encode()
            )
        else:
            await invocation.error(f"xwrite: {exc.strerror}")
        return 1


async def _not_found(io: IO, name: str) -> int:
    await io.stderr.write(f"{SHELL_PATH}: {name}: inaccessible or not found\n".encode())
    return 127


def default_variables(phone: PhoneContext) -> dict[str, str]:
    return {
        "PATH": ":".join(PATH_DIRS),
        "HOME": "/",
        "ANDROID_DATA": "/data",
        "ANDROID_ROOT": "/system",
        "EXTERNAL_STORAGE": "/sdcard",
        "TMPDIR": "/data/local/tmp",
        "HOSTNAME": phone.profile.device,
        "USER": "shell",
        "LOGNAME": "shell",
        "SHELL": SHELL_PATH,
    }


# --- shell builtins (they change the shell itself) -------------------------------------------

SpecialFn = Callable[[Toolbox, Invocation, list[str]], Awaitable[int]]
SHELL_BUILTINS: dict[str, SpecialFn] = {}


builtin = _registrar(SHELL_BUILTINS)


@builtin("cd")
async def _cd(toolbox: Toolbox, inv: Invocation, args: list[str]) -> int:
    target = args[0] if args else "/"
    try:
        resolved = inv.resolve(target)
        if not resolved.host.is_dir():
            raise fs_error(errno.ENOTDIR if resolved.host.exists() else errno.ENOENT, target)
    except OSError as exc:
        await inv.io.stderr.write(f"{SHELL_PATH}: cd: {target}: {exc.strerror}\n".encode())
        return 2
    inv.state.cwd = resolved.device
    return 0


@builtin("exit")
async def _exit(toolbox: Toolbox, inv: Invocation, args: list[str]) -> int:
    try:
        status = int(args[0]) if args else inv.state.last_status
    except ValueError:
        await inv.io.stderr.write(f"{SHELL_PATH}: exit: {args[0]}: bad number\n".encode())
        status = 1
    raise ShellExit(status & 0xFF)


@builtin("export")
async def _export(toolbox: Toolbox, inv: Invocation, args: list[str]) -> int:
    for arg in args:
        name, equals, value = arg.partition("=")
        if equals:
            inv.state.variables[name] = value
    return 0


@builtin("unset")
async def _unset(toolbox: Toolbox, inv: Invocation, args: list[str]) -> int:
    for name in args:
        inv.state.variables.pop(name, None)
    return 0


@builtin("exec")
async def _exec(toolbox: Toolbox, inv: Invocation, args: list[str]) -> int:
    if not args:
        return 0
    raise ShellExit(await toolbox.execute(args, inv.io, inv.state))


@builtin("nohup")
async def _nohup(toolbox: Toolbox, inv: Invocation, args: list[str]) -> int:
    if not args:
        await inv.error("Needs 1 argument")
        return 1
    return await toolbox.execute(args, inv.io, inv.state)


@builtin("sh", "/system/bin/sh")
async def _sh(toolbox: Toolbox, inv: Invocation, args: list[str]) -> int:
    if args[:1] == ["-c"]:
        if len(args) < 2:
            await inv.io.stderr.write(f"{SHELL_PATH}: -c: option requires an argument\n".encode())
            return 1
        script = args[1]
    elif args:
        try:
            script = inv.resolve(args[0]).host.read_text(errors="replace")
        except OSError as exc:
            await inv.io.stderr.write(f"{SHELL_PATH}: {args[0]}: {exc.strerror}\n".encode())
            return 127
    else:
        script = (await read_all(inv.io.stdin)).decode(errors="replace")
    state = toolbox.new_state(ppid=inv.state.pid)
    state.cwd = inv.state.cwd
    try:
        return await toolbox.interpreter(state).run(script, inv.io)
    finally:
        inv.phone.processes.exit(state.pid)


# --- commands --------------------------------------------------------------------------------


@command("true", ":")
async def _true(inv: Invocation, args: list[str]) -> int:
    return 0


@command("false")
async def _false(inv: Invocation, args: list[str]) -> int:
    return 1


@command("pwd")
async def _pwd(inv: Invocation, args: list[str]) -> int:
    await inv.out(inv.state.cwd + "\n")
    return 0


@command("echo")
async def _echo(inv: Invocation, args: list[str]) -> int:
    newline, escapes = True, False
    while args and len(args[0]) > 1 and args[0][0] == "-" and set(args[0][1:]) <= set("neE"):
        newline = newline and "n" not in args[0]
        if "e" in args[0]:
            escapes = True
        if "E" in args[0]:
            escapes = False
        args = args[1:]
    text = " ".join(args)
    if escapes:
        cut = text.find("\\c")
        if cut >= 0:
            text, newline = text[:cut], False
        text = text.encode("latin-1", errors="backslashreplace").decode("unicode_escape")
    await inv.out(text + ("\n" if newline else ""))
    return 0


@command("getprop")
async def _getprop(inv: Invocation, args: list[str]) -> int:
    props = inv.phone.props
    if not args:
        await inv.out("".join(f"[{key}]: [{props[key]}]\n" for key in sorted(props)))
        return 0
    value = props.get(args[0], args[1] if len(args) > 1 else "")
    await inv.out(value + "\n")
    return 0


@command("setprop")
async def _setprop(inv: Invocation, args: list[str]) -> int:
    await inv.error("failed to set property (the shell user may not set properties)")
    return 1


def _owner(device_path: str) -> str:
    return "shell" if device_path.startswith(("/data/local/tmp", "/sdcard")) else "root"


def _long_rows(entries: list[tuple[str, Path, str]]) -> list[str]:
    rows = []
    for shown, host, device in entries:
        try:
            info = os.lstat(host)
        except OSError:
            continue
        owner = _owner(device)
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(info.st_mtime))
        name = shown
        if stat.S_ISLNK(info.st_mode):
            name += " -> " + os.readlink(host)
        rows.append(
            (
                stat.filemode(info.st_mode),
                str(info.st_nlink),
                owner,
                owner,
                str(info.st_size),
                when,
                name,
            )
        )
    if not rows:
        return []
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return [
        f"{row[0]} {row[1]:>{widths[1]}} {row[2]:<{widths[2]}} {row[3]:<{widths[3]}} "
        f"{row[4]:>{widths[4]}} {row[5]} {row[6]}"
        for row in rows
    ]


@command("ls")
async def _ls(inv: Invocation, args: list[str]) -> int:
    flags, _, operands = parse_flags(args, "laAd1RhsFZn")
    long = "l" in flags or "n" in flags
    show_all = "a" in flags
    almost_all = "A" in flags
    status = 0
    files: list[tuple[str, Path, str]] = []
    folders: list[tuple[str, Resolved]] = []
    for operand in operands or ["."]:
        try:
            resolved = inv.resolve(operand, follow=not (long or "d" in flags))
            if not (resolved.host.exists() or resolved.host.is_symlink()):
                raise fs_error(errno.ENOENT, operand)
        except OSError as exc:
            await inv.path_error(exc, operand)
            status = 1
            continue
        # `ls -l LINK` shows the link itself, `ls LINK` lists the folder it points to.
        listed_as_link = long and resolved.host.is_symlink()
        if resolved.host.is_dir() and "d" not in flags and not listed_as_link:
            folders.append((operand, resolved))
        else:
            files.append((operand, resolved.host, resolved.device))
    lines = _long_rows(files) if long else [shown for shown, _, _ in files]
    await inv.out("".join(line + "\n" for line in lines))
    for index, (shown, resolved) in enumerate(folders):
        try:
            names = sorted(os.listdir(resolved.host))
        except OSError as exc:
            await inv.path_error(exc, shown)
            status = 1
            continue
        if not show_all:
            names = [name for name in names if almost_all or not name.startswith(".")]
        else:
            names = [".", ".."] + names
        entries = []
        for name in names:
            host = (
                resolved.host
                if name == "."
                else (resolved.host.parent if name == ".." else resolved.host / name)
            )
            entries.append((name, host, f"{resolved.device.rstrip('/')}/{name}"))
        header = ""
        if len(folders) > 1 or files:
            header = ("\n" if index or files else "") + f"{shown}:\n"
        body = _long_rows(entries) if long else [name for name, _, _ in entries]
        if long:
            body.insert(0, f"total {len(entries) * 4}")
        await inv.out(header + "".join(line + "\n" for line in body))
    return status


@command("mkdir")
async def _mkdir(inv: Invocation, args: list[str]) -> int:
    flags, values, operands = parse_flags(args, "pv", "m")
    mode = int(values["m"], 8) & 0o777 if "m" in values else 0o771
    if not operands:
        raise Usage("Needs 1 argument")
    status = 0
    for operand in operands:
        try:
            resolved = inv.resolve(operand)
            check_writable(resolved.device)
            if "p" in flags:
                if resolved.host.exists() and not resolved.host.is_dir():
                    raise fs_error(errno.EEXIST, operand)
                resolved.host.mkdir(mode=mode, parents=True, exist_ok=True)
            else:
                resolved.host.mkdir(mode=mode)
        except OSError as exc:
            await inv.error(f"'{operand}': {exc.strerror}")
            status = 1
    return status


def _protected(device_path: str) -> bool:
    return device_path in ("/", "/data", "/data/local", "/data/local/tmp", "/sdcard")


@command("rm")
async def _rm(inv: Invocation, args: list[str]) -> int:
    flags, _, operands = parse_flags(args, "rRfiv")
    recursive = bool(flags & {"r", "R"})
    force = "f" in flags
    if not operands and not force:
        raise Usage("Needs 1 argument")
    status = 0
    for operand in operands:
        try:
            resolved = inv.resolve(operand, follow=False)
            host = resolved.host
            if not (host.exists() or host.is_symlink()):
                if force:
                    continue
                raise fs_error(errno.ENOENT, operand)
            check_writable(resolved.device)
            if _protected(resolved.device):
                raise fs_error(errno.EACCES, operand)
            if host.is_dir() and not host.is_symlink():
                if not recursive:
                    raise fs_error(errno.EISDIR, operand)
                await asyncio.to_thread(shutil.rmtree, host)
            else:
                host.unlink()
        except OSError as exc:
            await inv.path_error(exc, operand)
            status = 1
    return status


@command("rmdir")
async def _rmdir(inv: Invocation, args: list[str]) -> int:
    _, _, operands = parse_flags(args, "p")
    status = 0
    for operand in operands:
        try:
            resolved = inv.resolve(operand, follow=False)
            check_writable(resolved.device)
            if _protected(resolved.device):
                raise fs_error(errno.EACCES, operand)
            resolved.host.rmdir()
        except OSError as exc:
            await inv.path_error(exc, operand)
            status = 1
    return status


@command("cat")
async def _cat(inv: Invocation, args: list[str]) -> int:
    _, _, operands = parse_flags(args, "uvte")
    status = 0
    for operand in operands or ["-"]:
        if operand == "-":
            while chunk := await inv.io.stdin.read():
                await inv.out(chunk)
            continue
        try:
            resolved = inv.resolve(operand)
            if resolved.host.is_dir():
                raise fs_error(errno.EISDIR, operand)
            with open(resolved.host, "rb") as handle:
                while chunk := handle.read(256 * 1024):
                    await inv.out(chunk)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:  # writing, not reading: toybox's xwrite exits
                raise
            await inv.path_error(exc, operand)
            status = 1
    return status


# dd, as toybox's (toys/posix/dd.c): key=value operands, blocks of ibs in and obs out, a summary
# on stderr unless status=none; of its conversions only notrunc.
_DD_NUMBERS = {"bs": 1, "ibs": 1, "obs": 1, "count": 0, "skip": 0, "seek": 0}
_DD_FLAGS = {
    "conv": ("fsync", "noerror", "notrunc", "sync"),
    "iflag": ("count_bytes", "skip_bytes"),
    "oflag": ("seek_bytes",),
}


class _DdError(Exception):
    """toybox's error_exit in dd: one line on stderr, status 1."""


def _atolx(text: str) -> int:
    """toybox's atolx: strtol's 0x and 0 prefixes, then k m g t p e for powers of 1024."""
    body = text.strip()
    shift = "kmgtpe".find(body[-1:].lower()) + 1 if body else 0
    digits = body[:-1] if shift else body
    try:
        if digits[:2].lower() == "0x":
            value = int(digits[2:], 16)
        elif digits.startswith("0") and len(digits) > 1:
            value = int(digits[1:], 8)
        else:
            value = int(digits, 10)
    except ValueError:
        raise _DdError(f"not integer: {text}") from None
    return value << (10 * shift)


def _dd_number(text: str, least: int) -> int:
    """toybox's argxarg: a product like 2x512 of atolx numbers, at least `least`."""
    value = 1
    for factor in [text] if text.lower().startswith("0x") else text.split("x"):
        value *= _atolx(factor)
    if value < least or value >= 1 << 63:
        raise _DdError(f"bad {text}")
    return value


def _dd_human(num: int) -> str:
    """toybox's human_readable(HR_SPACE|HR_B): at most 3 digits, one decimal below 10."""
    unit, snap = 0, 0
    while len(str(num)) > 3:
        snap, num, unit = num, (num + 512) // 1024, unit + 1
    if unit and num < 10:
        whole, rest = divmod(snap, 1024)
        return f"{whole}.{(rest * 100 + 50) // 1024 // 10} {' KMGTPE'[unit]}"
    return f"{num} {' KMGTPE'[unit] if unit else 'B'}"


@dataclass
class _DdCounts:
    """What dd prints at exit: records (blocks) whole and partial, bytes, time."""

    in_full: int = 0
    in_part: int = 0
    out_full: int = 0
    out_part: int = 0
    copied: int = 0
    started: float = field(default_factory=time.monotonic)

    def summary(self, status: str | None) -> str:
        lines = []
        if status != "none":
            lines.append(
                f"{self.in_full}+{self.in_part} records in\n"
                f"{self.out_full}+{self.out_part} records out\n"
            )
        if status is None:
            ms = max(int((time.monotonic() - self.started) * 1000), 1)
            rate = self.copied * 1000 // ms
            lines.append(
                f"{self.copied} bytes ({_dd_human(self.copied)}) copied, "
                f"{ms // 1000}.{ms % 1000:03d} s, {_dd_human(rate)}/s\n"
            )
        return "".join(lines)


class _DdInput:
    """dd's input: a file read block by block off the event loop, or stdin cut into blocks."""

    def __init__(self, source: Input | BinaryIO) -> None:
        self._source = source
        self._left = b""

    async def read(self, size: int) -> bytes:
        if not isinstance(self._source, Input):
            return await asyncio.to_thread(self._source.read, size)
        if not self._left:
            self._left = await self._source.read()
        data, self._left = self._left[:size], self._left[size:]
        return data

    async def skip(self, size: int) -> bool:
        """Skip `size` bytes (a file seeks, stdin is read); False when stdin ends first."""
        if not isinstance(self._source, Input):
            self._source.seek(size, os.SEEK_CUR)
            return True
        while size:
            data = await self.read(min(size, 64 * 1024))
            if not data:
                return False
            size -= len(data)
        return True


@command("dd")
async def _dd(inv: Invocation, args: list[str]) -> int:
    values: dict[str, str] = {}
    for arg in args:
        key, equals, value = arg.partition("=")
        if not equals or key not in {*_DD_NUMBERS, *_DD_FLAGS, "if", "of", "status"}:
            await inv.error(f"bad arg {arg}")
            return 1
        values[key] = value
    try:
        numbers = {
            key: _dd_number(values[key], least)
            for key, least in _DD_NUMBERS.items()
            if key in values
        }
        flags: set[str] = set()
        for key, known in _DD_FLAGS.items():
            for flag in filter(None, values.get(key, "").split(",")):
                if flag not in known:
                    raise _DdError(f"bad {key}={values[key]}")
                flags.add(flag)
        status = values.get("status")
        if status not in (None, "noxfer", "none"):
            raise _DdError(f"unknown status '{status}'")
    except _DdError as exc:
        await inv.error(str(exc))
        return 1
    counts = _DdCounts()
    try:
        return await _dd_copy(inv, values, numbers, flags, counts)
    finally:  # toybox prints its summary at exit, after an error too
        await inv.io.stderr.write(counts.summary(status).encode())


async def _dd_copy(
    inv: Invocation,
    values: dict[str, str],
    numbers: dict[str, int],
    flags: set[str],
    counts: _DdCounts,
) -> int:
    bs = numbers.get("bs", 0)
    ibs, obs = (bs, bs) if bs else (numbers.get("ibs", 512), numbers.get("obs", 512))
    with contextlib.ExitStack() as opened:
        source, sink = _DdInput(inv.io.stdin), inv.io.stdout
        name = values.get("if", "")
        try:
            if name:
                resolved = inv.resolve(name)
                if resolved.host.is_dir():
                    raise fs_error(errno.EISDIR, name)
                source = _DdInput(opened.enter_context(open(resolved.host, "rb", buffering=0)))
            name = values.get("of", "")
            if name == "/dev/null":
                sink = NullOutput()
            elif name:
                seek = numbers.get("seek", 0) * (1 if "seek_bytes" in flags else obs)
                sink = opened.enter_context(
                    contextlib.closing(_dd_output(inv, name, seek, truncate="notrunc" not in flags))
                )
        except OSError as exc:
            await inv.path_error(exc, name)
            return 1
        skip = numbers.get("skip", 0) * (1 if "skip_bytes" in flags else ibs)
        if skip and not await source.skip(skip):
            await inv.out(f"{values.get('if', 'stdin')}: Can't skip\n")
            return 0
        left = numbers.get("count", -1)
        if left > 0 and "count_bytes" not in flags:
            left *= ibs
        pending = b""
        try:
            while left:
                block = await source.read(ibs if left < 0 else min(ibs, left))
                if not block:
                    break
                counts.in_full += len(block) == ibs
                counts.in_part += len(block) != ibs
                left -= len(block) if left > 0 else 0
                pending += block
                while pending and (bs or len(pending) >= obs):
                    piece, pending = (pending, b"") if bs else (pending[:obs], pending[obs:])
                    await _dd_write(sink, piece, obs, counts)
            if pending:
                await _dd_write(sink, pending, obs, counts)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            await inv.error(f"{values.get('of', 'stdout')}: write error: {exc.strerror}")
            return 1
    return 0


async def _dd_write(sink: Output, block: bytes, obs: int, counts: _DdCounts) -> None:
    await sink.write(block)
    counts.out_full += len(block) == obs
    counts.out_part += len(block) != obs
    counts.copied += len(block)


def _dd_output(inv: Invocation, path: str, seek: int, truncate: bool) -> FileOutput:
    """dd's of=: created if missing, truncated at `seek` unless conv=notrunc."""
    resolved = inv.resolve(path)
    check_writable(resolved.device)
    fd = os.open(
        resolved.host,
        os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if truncate and not seek else 0),
        0o666,
    )
    handle = os.fdopen(fd, "wb")
    if seek:
        handle.seek(seek)
        if truncate:
            handle.truncate(seek)
    # What it overwrites takes no new room: the free space plus the file's bytes past `seek`.
    kept = os.fstat(fd).st_size
    return FileOutput(handle, inv.phone.storage.usage().free + max(kept - seek, 0))


def _symbolic_mode(spec: str, current: int) -> int:
    mode = current
    for clause in spec.split(","):
        who_end = 0
        while who_end < len(clause) and clause[who_end] in "ugoa":
            who_end += 1
        who = clause[:who_end] or "a"
        rest = clause[who_end:]
        if len(rest) < 1 or rest[0] not in "+-=":
            raise ValueError(spec)
        op, perms = rest[0], rest[1:]
        if set(perms) - set("rwxX"):
            raise ValueError(spec)
        bits = 0
        for person, shift in (("u", 6), ("g", 3), ("o", 0)):
            if person in who or "a" in who:
                for letter, value in (("r", 4), ("w", 2), ("x", 1), ("X", 1)):
                    if letter in perms:
                        bits |= value << shift
        mask = sum(
            7 << shift
            for person, shift in (("u", 6), ("g", 3), ("o", 0))
            if person in who or "a" in who
        )
        if op == "+":
            mode |= bits
        elif op == "-":
            mode &= ~bits
        else:
            mode = (mode & ~mask) | bits
    return mode & 0o777


@command("chmod")
async def _chmod(inv: Invocation, args: list[str]) -> int:
    recursive = "-R" in args
    rest = [arg for arg in args if arg != "-R"]
    if len(rest) < 2:
        raise Usage("Needs 2 arguments")
    spec, operands = rest[0], rest[1:]
    status = 0
    for operand in operands:
        try:
            resolved = inv.resolve(operand)
            check_writable(resolved.device)
            targets = [resolved.host]
            if recursive and resolved.host.is_dir():
                targets += [
                    Path(folder) / name
                    for folder, dirs, names in os.walk(resolved.host)
                    for name in dirs + names
                ]
            for target in targets:
                if target.is_symlink():
                    continue
                current = stat.S_IMODE(os.lstat(target).st_mode)
                try:
                    mode = int(spec, 8) & 0o777
                except ValueError:
                    mode = _symbolic_mode(spec, current)
                os.chmod(target, mode)
        except ValueError:
            await inv.error(f"bad mode '{spec}'")
            return 1
        except OSError as exc:
            await inv.path_error(exc, operand)
            status = 1
    return status


def _hash_file(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


async def _hash_input(source: Input, algorithm: str) -> str:
    """The digest of everything `source` gives, hashed as it comes (a pipe may carry gigabytes);
    large pieces off the event loop, so the phone's transfers go on meanwhile."""
    digest = hashlib.new(algorithm)
    while chunk := await source.read():
        if len(chunk) >= 64 * 1024:
            await asyncio.to_thread(digest.update, chunk)
        else:
            digest.update(chunk)
    return digest.hexdigest()


async def _checksum(inv: Invocation, args: list[str], algorithm: str) -> int:
    _, _, operands = parse_flags(args, "bc")
    status = 0
    for operand in operands or ["-"]:
        if operand == "-":
            await inv.out(f"{await _hash_input(inv.io.stdin, algorithm)}  -\n")
            continue
        try:
            resolved = inv.resolve(operand)
            if resolved.host.is_dir():
                raise fs_error(errno.EISDIR, operand)
            digest = await asyncio.to_thread(_hash_file, resolved.host, algorithm)
        except OSError as exc:
            await inv.path_error(exc, operand)
            status = 1
            continue
        await inv.out(f"{digest}  {operand}\n")
    return status


@command("sha256sum")
async def _sha256sum(inv: Invocation, args: list[str]) -> int:
    return await _checksum(inv, args, "sha256")


@command("sha1sum")
async def _sha1sum(inv: Invocation, args: list[str]) -> int:
    return await _checksum(inv, args, "sha1")


@command("md5sum")
async def _md5sum(inv: Invocation, args: list[str]) -> int:
    return await _checksum(inv, args, "md5")


def _human(size_kb: float) -> str:
    value = float(size_kb) * 1024
    for unit in ("", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{value:.0f}{unit}" if unit == "" or value >= 10 else f"{value:.1f}{unit}"
        value /= 1024
    return f"{value:.0f}T"


@command("df")
async def _df(inv: Invocation, args: list[str]) -> int:
    flags, _, operands = parse_flags(args, "hkPa")
    usage = await asyncio.to_thread(inv.phone.storage.usage)
    total_kb, used_kb, free_kb = usage.size // 1024, usage.used // 1024, usage.free // 1024
    mounts = {
        "/": ("/dev/block/dm-7", 6_152_812, 6_120_044, 16_384),
        "/data": ("/dev/block/dm-52", total_kb, used_kb, free_kb),
        "/storage/emulated": ("/dev/fuse", total_kb, used_kb, free_kb),
    }
    chosen: list[str] = []
    status = 0
    for operand in operands:
        try:
            device = inv.resolve(operand).device
        except OSError as exc:
            await inv.path_error(exc, operand)
            status = 1
            continue
        if device.startswith(("/sdcard", "/storage")):
            chosen.append("/storage/emulated")
        elif device == "/data" or device.startswith("/data/"):
            chosen.append("/data")
        else:
            chosen.append("/")
    if not operands:
        chosen = list(mounts)
    if "h" in flags:
        lines = ["Filesystem        Size  Used Avail Use% Mounted on"]
    else:
        lines = ["Filesystem       1K-blocks     Used Available Use% Mounted on"]
    for mount in chosen:
        source, size, used, free = mounts[mount]
        percent = f"{(used * 100 + size - 1) // size if size else 0}%"
        if "h" in flags:
            lines.append(
                f"{source:<16} {_human(size):>5} {_human(used):>5} {_human(free):>5} "
                f"{percent:>4} {mount}"
            )
        else:
            lines.append(f"{source:<16} {size:>9} {used:>8} {free:>9} {percent:>4} {mount}")
    await inv.out("\n".join(lines) + "\n")
    return status


def _signal_number(name: str) -> int | None:
    if name.isdigit():
        return int(name)
    name = name.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    try:
        return int(signal.Signals[name])
    except KeyError:
        return None


@command("kill")
async def _kill(inv: Invocation, args: list[str]) -> int:
    signum = int(signal.SIGTERM)
    if args[:1] == ["-l"]:
        names = [s.name[3:] for s in sorted(signal.Signals, key=int) if int(s) < 32]
        await inv.out(" ".join(names) + "\n")
        return 0
    if args[:1] == ["-s"] and len(args) > 1:
        parsed = _signal_number(args[1])
        args = args[2:]
        if parsed is None:
            await inv.error(f"Unknown signal '{args[1] if args else ''}'")
            return 1
        signum = parsed
    elif args and args[0].startswith("-") and len(args[0]) > 1:
        parsed = _signal_number(args[0][1:])
        if parsed is None:
            await inv.error(f"Unknown signal '{args[0][1:]}'")
            return 1
        signum = parsed
        args = args[1:]
    if not args:
        raise Usage("Needs 1 argument")
    status = 0
    system = {pid for pid, *_ in SYSTEM_PROCESSES}
    for arg in args:
        if not arg.isdigit():
            await inv.error(f"{arg}: Invalid argument")
            status = 1
        elif int(arg) in system:
            await inv.error(f"{arg}: Operation not permitted")
            status = 1
        elif not inv.phone.processes.kill(int(arg), signum):
            await inv.error(f"{arg}: No such process")
            status = 1
    return status


PS_FIELDS = {
    "USER": (lambda p: p.user, "<", 12),
    "PID": (lambda p: str(p.pid), ">", 5),
    "PPID": (lambda p: str(p.ppid), ">", 5),
    "VSZ": (lambda p: str(10_900_000 + p.pid * 8), ">", 10),
    "RSS": (lambda p: str(4_000 + p.pid % 997 * 13), ">", 6),
    "WCHAN": (lambda p: "do_sys_poll" if p.pid > 1000 else "0", "<", 16),
    "ADDR": (lambda p: "0", ">", 4),
    "S": (lambda p: "S", "<", 1),
    "NAME": (lambda p: p.name, "<", 0),
    "CMD": (lambda p: p.name, "<", 0),
    "ARGS": (lambda p: p.args, "<", 0),
    "CMDLINE": (lambda p: p.args, "<", 0),
}
PS_DEFAULT = ["USER", "PID", "PPID", "VSZ", "RSS", "WCHAN", "ADDR", "S", "NAME"]


@command("ps")
async def _ps(inv: Invocation, args: list[str]) -> int:
    flags, values, operands = parse_flags(args, "Aeflwt", "op")
    fields = [f.strip().upper() for f in values.get("o", "").replace(",", " ").split() if f.strip()]
    fields = [f.split("=")[0] for f in fields] or PS_DEFAULT
    unknown = [f for f in fields if f not in PS_FIELDS]
    if unknown:
        await inv.error(f"bad -o {unknown[0]}")
        return 1
    rows = inv.phone.processes.rows()
    if "p" in values:
        wanted = {int(pid) for pid in values["p"].replace(",", " ").split() if pid.isdigit()}
        rows = [row for row in rows if row.pid in wanted]
    elif not flags & {"A", "e"}:
        rows = [row for row in rows if row.pid >= 4000]
    if operands:
        rows = [row for row in rows if row.name in operands]

    def cell(name: str, value: str, last: bool) -> str:
        _, align, width = PS_FIELDS[name]
        if last:
            return value
        return f"{value:{align}{width}}"

    lines = []
    for source in [None, *rows]:
        cells = []
        for index, name in enumerate(fields):
            value = name if source is None else PS_FIELDS[name][0](source)
            cells.append(cell(name, value, index == len(fields) - 1))
        lines.append(" ".join(cells).rstrip())
    await inv.out("\n".join(lines) + "\n")
    return 0 if rows or not ("p" in values or operands) else 1


@command("pidof")
async def _pidof(inv: Invocation, args: list[str]) -> int:
    _, _, names = parse_flags(args, "s")
    pids = [
        str(row.pid)
        for row in inv.phone.processes.rows()
        if row.name in names or row.args.split(" ")[0] in names
    ]
    if not pids:
        return 1
    await inv.out(" ".join(pids) + "\n")
    return 0


@command("dumpsys")
async def _dumpsys(inv: Invocation, args: list[str]) -> int:
    health = inv.phone.health
    services = {
        "battery": health.dumpsys_battery,
        "thermalservice": health.dumpsys_thermalservice,
    }
    if not args or args[0] == "-l":
        await inv.out("Currently running services:\n" + "".join(f"  {s}\n" for s in services))
        return 0
    dump = services.get(args[0])
    if dump is None:
        await inv.io.stderr.write(f"Can't find service: {args[0]}\n".encode())
        return 0
    await inv.out(dump())
    return 0


@command("sleep")
async def _sleep(inv: Invocation, args: list[str]) -> int:
    if not args:
        raise Usage("Needs 1 argument")
    try:
        seconds = float(args[0].rstrip("s"))
    except ValueError:
        await inv.error(f"invalid number '{args[0]}'")
        return 1
    await asyncio.sleep(seconds)
    return 0


async def _transfer(
    inv: Invocation,
    operands: list[str],
    move: Callable[[Resolved, str, Path], Awaitable[None]],
    *,
    follow: bool,
) -> int:
    """mv and cp: every source operand to the last operand (into it when it is a folder);
    `follow`: a source that is a symlink stands for its target (cp), not itself (mv)."""
    if len(operands) < 2:
        raise Usage("Needs 2 arguments")
    *sources, target = operands
    try:
        destination = inv.resolve(target)
        check_writable(destination.device)
    except OSError as exc:
        await inv.path_error(exc, target)
        return 1
    status = 0
    for source in sources:
        try:
            origin = inv.resolve(source, follow=follow)
            if not (origin.host.exists() or origin.host.is_symlink()):
                raise fs_error(errno.ENOENT, source)
            into = destination.host.is_dir()
            await move(
                origin, source, destination.host / origin.host.name if into else destination.host
            )
        except OSError as exc:
            await inv.path_error(exc, source)
            status = 1
    return status


def _filesystem(device_path: str) -> str:
    """The mount a path is on: /sdcard (/storage/emulated, a FUSE view) is not /data's."""
    if device_path.startswith(("/sdcard", "/storage")):
        return "/storage"
    return "/data" if device_path == "/data" or device_path.startswith("/data/") else "/"


async def _copy_bounded(storage: Storage, host: Path, final: Path) -> None:
    """A file or a folder copied as far as the disk takes it, with no error when it does not
    (toybox's cp ignores its copy's short write: measured with toybox 0.8.9 on a full tmpfs)."""
    if host.is_dir():
        await asyncio.to_thread(
            shutil.copytree,
            host,
            final,
            symlinks=True,
            dirs_exist_ok=True,
            copy_function=lambda src, dst: storage.copy_within(Path(src), Path(dst)),
        )
    else:
        await asyncio.to_thread(storage.copy_within, host, final)


@command("mv")
async def _mv(inv: Invocation, args: list[str]) -> int:
    _, _, operands = parse_flags(args, "finv")

    async def rename(origin: Resolved, _source: str, final: Path) -> None:
        check_writable(origin.device)
        if _filesystem(origin.device) == _filesystem(inv.phone.fs.device_path(final)):
            os.replace(origin.host, final)
            return
        # rename() across filesystems is EXDEV: toybox's mv copies, then removes the source,
        # whether the copy was whole or not.
        await _copy_bounded(inv.phone.storage, origin.host, final)
        if origin.host.is_dir() and not origin.host.is_symlink():
            await asyncio.to_thread(shutil.rmtree, origin.host)
        else:
            origin.host.unlink()

    return await _transfer(inv, operands, rename, follow=False)


@command("cp")
async def _cp(inv: Invocation, args: list[str]) -> int:
    flags, _, operands = parse_flags(args, "rRpfaiv")
    skipped = False

    async def copy(origin: Resolved, source: str, final: Path) -> None:
        nonlocal skipped
        host = origin.host
        if host.is_dir():
            if not flags & {"r", "R", "a"}:
                await inv.error(f"Skipped dir '{source}'")
                skipped = True
                return
        await _copy_bounded(inv.phone.storage, host, final)

    status = await _transfer(inv, operands, copy, follow=True)
    return 1 if skipped else status


@command("touch")
async def _touch(inv: Invocation, args: list[str]) -> int:
    flags, _, operands = parse_flags(args, "cam")
    status = 0
    for operand in operands:
        try:
            resolved = inv.resolve(operand)
            check_writable(resolved.device)
            if resolved.host.exists():
                os.utime(resolved.host)
            elif "c" not in flags:
                resolved.host.touch()
        except OSError as exc:
            await inv.path_error(exc, operand)
            status = 1
    return status


def _test(inv: Invocation, args: list[str]) -> bool:
    if args and args[0] == "!":
        return not _test(inv, args[1:])
    if not args:
        return False
    if len(args) == 1:
        return args[0] != ""
    if len(args) == 2:
        op, operand = args
        if op == "-z":
            return operand == ""
        if op == "-n":
            return operand != ""
        try:
            host = inv.resolve(operand, follow=op != "-L").host
        except OSError:
            return False
        checks: dict[str, Callable[[Path], bool]] = {
            "-e": Path.exists,
            "-f": Path.is_file,
            "-d": Path.is_dir,
            "-L": Path.is_symlink,
            "-h": Path.is_symlink,
            "-s": lambda p: p.is_file() and p.stat().st_size > 0,
            "-r": Path.exists,
            "-w": lambda p: p.exists() and inv.phone.fs.device_path(p).startswith("/data"),
            "-x": lambda p: p.exists() and bool(p.stat().st_mode & 0o111),
        }
        if op not in checks:
            raise Usage(f"unknown operator '{op}'")
        return checks[op](host)
    if len(args) == 3:
        left, op, right = args
        if op in ("=", "=="):
            return left == right
        if op == "!=":
            return left != right
        numeric = {
            "-eq": int.__eq__,
            "-ne": int.__ne__,
            "-lt": int.__lt__,
            "-gt": int.__gt__,
            "-le": int.__le__,
            "-ge": int.__ge__,
        }
        if op in numeric:
            return bool(numeric[op](int(left), int(right)))
    raise Usage("only one expression is supported")


@command("test", "[")
async def _test_command(inv: Invocation, args: list[str]) -> int:
    if inv.name == "[":
        if not args or args[-1] != "]":
            await inv.error("missing ]")
            return 2
        args = args[:-1]
    try:
        return 0 if _test(inv, args) else 1
    except ValueError:
        await inv.error("integer expression expected")
        return 2


async def _lines_of(inv: Invocation, operands: list[str]) -> list[tuple[str, bytes]] | None:
    contents = []
    for operand in operands or ["-"]:
        if operand == "-":
            contents.append(("-", await read_all(inv.io.stdin)))
            continue
        try:
            contents.append((operand, inv.resolve(operand).host.read_bytes()))
        except OSError as exc:
            await inv.path_error(exc, operand)
            return None
    return contents


def _count_option(args: list[str]) -> tuple[int, list[str]]:
    count = 10
    rest = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "-n" and index + 1 < len(args):
            count = int(args[index + 1].lstrip("+-"))
            index += 2
            continue
        if arg.startswith("-n") and arg[2:].lstrip("+-").isdigit():
            count = int(arg[2:].lstrip("+-"))
        elif arg.startswith("-") and arg[1:].isdigit():
            count = int(arg[1:])
        else:
            rest.append(arg)
        index += 1
    return count, rest


@command("head", "tail")
async def _head_tail(inv: Invocation, args: list[str]) -> int:
    try:
        count, operands = _count_option(args)
    except ValueError as exc:
        raise Usage("bad -n") from exc
    contents = await _lines_of(inv, operands)
    if contents is None:
        return 1
    for _, data in contents:
        lines = data.splitlines(keepends=True)
        chosen = lines[:count] if inv.name == "head" else lines[-count:] if count else []
        await inv.out(b"".join(chosen))
    return 0


@command("wc")
async def _wc(inv: Invocation, args: list[str]) -> int:
    flags, _, operands = parse_flags(args, "lwcm")
    contents = await _lines_of(inv, operands)
    if contents is None:
        return 1
    for name, data in contents:
        counts = {
            "l": data.count(b"\n"),
            "w": len(data.split()),
            "c": len(data),
            "m": len(data.decode(errors="replace")),
        }
        shown = [str(counts[key]) for key in "lwcm" if key in flags] or [
            str(counts[k]) for k in "lwc"
        ]
        suffix = "" if name == "-" else f" {name}"
        await inv.out(" ".join(shown) + suffix + "\n")
    return 0


@command("stat")
async def _stat(inv: Invocation, args: list[str]) -> int:
    flags, values, operands = parse_flags(args, "L", "c")
    status = 0
    for operand in operands:
        try:
            resolved = inv.resolve(operand, follow="L" in flags)
            info = os.stat(resolved.host, follow_symlinks="L" in flags)
        except OSError as exc:
            await inv.path_error(exc, operand)
            status = 1
            continue
        kind = (
            "directory"
            if stat.S_ISDIR(info.st_mode)
            else "symbolic link"
            if stat.S_ISLNK(info.st_mode)
            else "regular file"
        )
        owner = _owner(resolved.device)
        codes = {
            "s": str(info.st_size),
            "n": operand,
            "a": f"{stat.S_IMODE(info.st_mode):o}",
            "A": stat.filemode(info.st_mode),
            "F": kind,
            "Y": str(int(info.st_mtime)),
            "U": owner,
            "G": owner,
            "i": str(info.st_ino),
            "h": str(info.st_nlink),
            "u": "2000" if owner == "shell" else "0",
            "g": "2000" if owner == "shell" else "0",
            "%": "%",
        }
        form = values.get("c")
        if form is None:
            form = (
                "  File: %n\n  Size: %s\t %F\nAccess: (%a/%A)\tUid: (%u/%U)\t"
                "Gid: (%g/%G)\nModify: %Y"
            )
        text, index = [], 0
        while index < len(form):
            if form[index] == "%" and index + 1 < len(form):
                text.append(codes.get(form[index + 1], "?"))
                index += 2
            else:
                text.append(form[index])
                index += 1
        await inv.out("".join(text) + "\n")
    return status


@command("uname")
async def _uname(inv: Invocation, args: list[str]) -> int:
    flags, _, _ = parse_flags(args, "asnrvmo")
    parts = {
        "s": "Linux",
        "n": "localhost",
        "r": KERNEL_RELEASE,
        "v": "#1 SMP PREEMPT Mon Jan 1 00:00:00 UTC 2024",
        "m": "aarch64",
        "o": "Toybox",
    }
    keys = "snrvmo" if "a" in flags else [k for k in "snrvmo" if k in flags] or ["s"]
    await inv.out(" ".join(parts[key] for key in keys) + "\n")
    return 0


@command("id")
async def _id(inv: Invocation, args: list[str]) -> int:
    await inv.out(
        "uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),"
        "1011(adb),1015(sdcard_rw),1028(sdcard_r),3001(net_bt_admin),3002(net_bt),"
        "3003(inet),3006(net_bw_stats) context=u:r:shell:s0\n"
    )
    return 0


@command("whoami")
async def _whoami(inv: Invocation, args: list[str]) -> int:
    await inv.out("shell\n")
    return 0


@command("nproc")
async def _nproc(inv: Invocation, args: list[str]) -> int:
    await inv.out("8\n")
    return 0


@command("date")
async def _date(inv: Invocation, args: list[str]) -> int:
    flags, _, operands = parse_flags(args, "u")
    form = "%a %b %e %H:%M:%S %Z %Y"
    for operand in operands:
        if operand.startswith("+"):
            form = operand[1:]
    moment = time.gmtime() if "u" in flags else time.localtime()
    await inv.out(time.strftime(form, moment) + "\n")
    return 0


@command("env", "printenv")
async def _env(inv: Invocation, args: list[str]) -> int:
    variables = inv.state.variables
    if args:
        values = [variables[name] for name in args if name in variables]
        await inv.out("".join(value + "\n" for value in values))
        return 0 if len(values) == len(args) else 1
    await inv.out("".join(f"{key}={value}\n" for key, value in sorted(variables.items())))
    return 0


@command("reboot")
async def _reboot(inv: Invocation, args: list[str]) -> int:
    inv.phone.reboot()
    return 0


@command("which")
async def _which(inv: Invocation, args: list[str]) -> int:
    status = 0
    for name in args:
        if name in COMMANDS:
            await inv.out(f"/system/bin/{name}\n")
            continue
        status = 1
    return status
