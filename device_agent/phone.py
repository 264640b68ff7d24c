"""A phone as the agent drives it through the adb server: facts, health, fixed commands, files.

Every shell command is built here from a fixed template whose only variables are validated
identifiers (sha256 hex, run UUIDs, PIDs), quoted anyway; nothing a user typed ever reaches it.
Connection failures become `DeviceLost`, so callers can retry the work on another phone.

Services are opened on the adb server's socket directly (`host:transport:<serial>`, then
`shell,v2,raw:` or `sync:`): adbutils spends ~20 ms per call on a server-version query and a
sleep in close(), and pushes in 4 KiB pieces; here a call costs one local round trip and a push
moves 64 KiB DATA chunks, as the adb binary does.
"""

from __future__ import annotations

import io
import posixpath
import re
import shlex
import socket
import stat
import struct
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import adbutils

from hexfleet.bundle import RUNNER_FILE
from hexfleet.errors import DeviceFull, DeviceLost, InvalidRequest
from hexfleet.messages import DeviceFacts, DeviceHealth
from hexfleet.runner_spec import CACHE_DIR, DEVICE_ROOT_DIR, JOBS_DIR, RUNNERS_DIR

# docs/architecture.md's table: a QNN context binary is compiled for one Hexagon arch per SoC.
HTP_ARCH_BY_SOC = {
    "SM8350": 68,
    "SM8450": 69,
    "SM8475": 69,
    "SM8550": 73,
    "SM8650": 75,
    "SM8750": 79,
    "SM8850": 81,
}
# Used with fullmatch: `$` alone would accept a trailing newline.
SHA256 = re.compile(r"[0-9a-f]{64}")
RUN_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_PROP = re.compile(r"^\[(?P<key>[^\]]+)\]: \[(?P<value>[^\]]*)\]$")
THROTTLING_STATUS = 3  # PowerManager.THERMAL_STATUS_SEVERE
_THERMAL_STATUS = re.compile(r"^Thermal Status: (\d+)", re.M)
_HAL_TEMP = re.compile(r"Temperature\{mValue=(-?[\d.]+)")
# A fixed command line (nothing in it comes from a user): battery, a marker, thermal.
_HEALTH_SPLIT = "--hexfleet-thermal--"
_HEALTH_COMMAND = f"dumpsys battery && echo {_HEALTH_SPLIT}; dumpsys thermalservice"

ADB_ERRORS = (adbutils.AdbError, adbutils.AdbTimeout, OSError, socket.timeout, EOFError)


def _thermal(dumpsys: str) -> tuple[int | None, list[float]]:
    status = _THERMAL_STATUS.search(dumpsys)
    temps = [float(t) for t in _HAL_TEMP.findall(dumpsys)]
    return (int(status.group(1)) if status else None), temps


def check_sha256(value: str) -> str:
    if not SHA256.fullmatch(value):
        raise InvalidRequest(f"{value!r} is not a sha256 hex digest")
    return value


def check_run_id(value: str) -> str:
    if not RUN_ID.fullmatch(value):
        raise InvalidRequest(f"{value!r} is not a run id")
    return value


def cache_path(sha256: str) -> str:
    return f"{CACHE_DIR}/{check_sha256(sha256)}"


def job_dir(run_id: str) -> str:
    return f"{JOBS_DIR}/{check_run_id(run_id)}"


def runner_dir(bundle_sha256: str) -> str:
    """Where a runner bundle's files live on the phone, under their own names."""
    return f"{RUNNERS_DIR}/{check_sha256(bundle_sha256)}"


def _inside_root(path: str) -> bool:
    """Inside hexfleet's folder; normpath also refuses `..`, `.` and `//` a prefix check misses."""
    return path.startswith(DEVICE_ROOT_DIR + "/") and posixpath.normpath(path) == path


@contextmanager
def lost_on_failure(serial: str, doing: str) -> Iterator[None]:
    """Connection-level failures of adb become DeviceLost naming the phone and the action."""
    try:
        yield
    except ADB_ERRORS as exc:
        raise DeviceLost(f"{serial}: lost while {doing}: {exc or type(exc).__name__}") from exc


SHELL_STDIN, SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT = 0, 1, 2, 3
# What a ShellSession's command lines echo last: the end of their output.
SESSION_MARK = "--hexfleet-session-done--"
SYNC_DATA_MAX = 64 * 1024  # the largest DATA chunk adbd accepts (SYNC.TXT)
SEND_BATCH = 16  # DATA chunks handed to the kernel at once: 1 MiB per send
_SYNC_HEADER = struct.Struct("<4sI")
# adbd's answer to a SEND that filled the disk: "write failed: " + strerror(ENOSPC).
_NO_SPACE = "No space left on device"
_DENT = struct.Struct("<4sIIII")  # LIST entry: id, mode, size, mtime, name length
# dd's block size when the phone hashes a piece of a file: one read and one hash per piece
# (smaller blocks cost the phone more CPU for nothing); toybox allocates one such buffer.
DD_BLOCK = 16 * 1024 * 1024


def _recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError(f"the adb connection closed {size - len(data)} bytes short")
        data.extend(chunk)
    return bytes(data)


def _request(sock: socket.socket, text: str) -> None:
    """One adb-server request (4 hex digits of length, then the text) and its OKAY."""
    data = text.encode()
    sock.sendall(b"%04x" % len(data) + data)
    status = _recv_exactly(sock, 4)
    if status == b"FAIL":
        length = int(_recv_exactly(sock, 4), 16)
        raise adbutils.AdbError(_recv_exactly(sock, length).decode(errors="replace"))
    if status != b"OKAY":
        raise adbutils.AdbError(f"the adb server answered {status!r}")


def _sync_fail(sock: socket.socket, length: int) -> adbutils.AdbError:
    return adbutils.AdbError(_recv_exactly(sock, length).decode(errors="replace"))


def _shell_packets(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """Complete shell-protocol packets at the front of `buffer`, removed from it as they go."""
    while len(buffer) >= 5:
        size = int.from_bytes(buffer[1:5], "little")
        if len(buffer) < 5 + size:
            return
        kind, data = buffer[0], bytes(buffer[5 : 5 + size])
        del buffer[: 5 + size]
        yield kind, data


class ShellSession:
    """One shell on the phone (shell v2 with no command: the phone's sh reading its stdin) that
    runs fixed command lines one after another, so a caller running many in a row (a PieceCheck,
    a few a second) pays for one adb connection rather than one per command. Each line ends with
    `echo` of a marker, which tells where its output ends. Not for use by two threads at once."""

    def __init__(self, serial: str, sock: socket.socket) -> None:
        self.serial = serial
        self._sock = sock
        self._buffer = bytearray()

    def run(self, command: str, name: str, timeout: float = 30.0) -> tuple[str, str]:
        """Run one command line built from a fixed template; its (stdout, stderr)."""
        line = f"{command}; echo {SESSION_MARK}\n".encode()
        mark = f"{SESSION_MARK}\n".encode()
        out, err = bytearray(), bytearray()
        with lost_on_failure(self.serial, f"running {name}"):
            self._sock.settimeout(timeout)
            self._sock.sendall(bytes([SHELL_STDIN]) + len(line).to_bytes(4, "little") + line)
            while True:
                for kind, data in _shell_packets(self._buffer):
                    if kind == SHELL_STDOUT:
                        out.extend(data)
                    elif kind == SHELL_STDERR:
                        err.extend(data)
                    elif kind == SHELL_EXIT:
                        raise EOFError(f"the phone's shell exited while running {name}")
                if out.endswith(mark):
                    return out[: -len(mark)].decode(errors="replace"), err.decode(errors="replace")
                chunk = self._sock.recv(1 << 16)
                if not chunk:
                    raise EOFError(f"the phone hung up while running {name}")
                self._buffer.extend(chunk)

    def file_size(self, device_path: str) -> int | None:
        """A file's size in bytes (`stat -c %s`), None if it is not there."""
        out, _ = self.run(f"stat -c %s {shlex.quote(device_path)}", "stat")
        size = out.strip()
        return int(size) if size.isdigit() else None

    def piece_digests(
        self, device_path: str, first: int, count: int, piece_bytes: int
    ) -> tuple[list[str], int | None]:
        """The sha256 of pieces `first`..`first + count - 1` of a file, `piece_bytes` each (a
        multiple of DD_BLOCK; the last piece of the file may be shorter), hashed on the phone:
        `dd if=PATH bs=DD_BLOCK skip=S count=N 2>/dev/null | sha256sum` per piece, then
        `stat -c %s PATH`; with the file's size after hashing (None if it is gone). A piece the
        phone could not read hashes as what dd gave it (nothing: the empty digest)."""
        if not _inside_root(device_path):
            raise InvalidRequest(f"refusing to hash {device_path!r} outside hexfleet's folder")
        blocks, rest = divmod(piece_bytes, DD_BLOCK)
        if rest or blocks < 1 or first < 0 or count < 1:
            raise InvalidRequest(f"bad pieces: {first}+{count} of {piece_bytes} bytes")
        source = shlex.quote(device_path)
        command = "; ".join(
            [
                f"dd if={source} bs={DD_BLOCK} skip={index * blocks} count={blocks} 2>/dev/null"
                " | sha256sum"
                for index in range(first, first + count)
            ]
            + [f"stat -c %s {source}"]
        )
        out, err = self.run(command, "dd", timeout=60.0 + 10.0 * count)
        lines = out.split()
        digests = lines[0 : 2 * count : 2]
        if len(digests) != count or not all(map(SHA256.fullmatch, digests)):
            raise DeviceLost(f"{self.serial}: hashing pieces failed: {err.strip()[:200]}")
        size = lines[2 * count] if len(lines) > 2 * count else ""
        return digests, int(size) if size.isdigit() else None


@dataclass
class Streamed:
    """How a streamed command ended: its exit code (None if stopped first) and its stderr."""

    exit_code: int | None
    stderr: str
    stopped: str = ""


class Phone:
    def __init__(self, device: adbutils.AdbDevice) -> None:
        self.device = device
        self.serial: str = device.serial or ""
        client = device._client  # adbutils keeps the server's address on the device's client
        self._server = (client.host, client.port)

    def _open(self, service: str, timeout: float) -> socket.socket:
        """A connection to `service` on this phone, through the adb server."""
        sock = socket.create_connection(self._server, timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _request(sock, f"host:transport:{self.serial}")
            _request(sock, service)
        except BaseException:
            sock.close()
            raise
        return sock

    def shell(self, *argv: str, timeout: float = 30.0) -> tuple[int, str, str]:
        """Run a fixed command (argv words, each quoted) with shell v2: (exit, stdout, stderr)."""
        return self._shell(" ".join(shlex.quote(word) for word in argv), argv[0], timeout)

    def _shell(self, command: str, name: str, timeout: float) -> tuple[int, str, str]:
        out, err, buffer = bytearray(), bytearray(), bytearray()
        with (
            lost_on_failure(self.serial, f"running {name}"),
            closing(self._open(f"shell,v2,raw:{command}", timeout)) as sock,
        ):
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    raise EOFError(f"the phone hung up before `{name}` exited")
                buffer.extend(chunk)
                for kind, data in _shell_packets(buffer):
                    if kind == SHELL_STDOUT:
                        out.extend(data)
                    elif kind == SHELL_STDERR:
                        err.extend(data)
                    elif kind == SHELL_EXIT:
                        code = data[0] if data else 255
                        return code, out.decode(errors="replace"), err.decode(errors="replace")

    def checked(self, *argv: str, timeout: float = 30.0) -> str:
        code, out, err = self.shell(*argv, timeout=timeout)
        if code != 0:
            raise DeviceLost(f"{self.serial}: `{argv[0]}` failed ({code}): {err.strip()[:200]}")
        return out

    def wait_online(self, timeout: float) -> None:
        """Wait until the phone answers again after a dropped link; DeviceLost when it does not
        within `timeout` seconds.

        The adb server reconnects a dropped TCP link by itself, but until it notices the drop it
        still lists the old transport as a device: being listed is not enough, the phone must
        run a command (`true`) on the new one.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(deadline - time.monotonic(), 0.1)
            self._wait_for_device(remaining)
            try:
                self.shell("true", timeout=min(remaining, 5.0))
                return
            except DeviceLost:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.25)

    def _wait_for_device(self, timeout: float) -> None:
        with (
            lost_on_failure(self.serial, "waiting for it to come back"),
            closing(socket.create_connection(self._server, timeout=timeout)) as sock,
        ):
            _request(sock, f"host-serial:{self.serial}:wait-for-any-device")
            status = _recv_exactly(sock, 4)
            if status != b"OKAY":
                raise adbutils.AdbError(f"the adb server answered {status!r} to wait-for-device")

    # facts and health -------------------------------------------------------------------

    def properties(self) -> dict[str, str]:
        props = {}
        for line in self.checked("getprop").splitlines():
            match = _PROP.match(line.strip())
            if match:
                props[match["key"]] = match["value"]
        return props

    def facts(self) -> DeviceFacts:
        props = self.properties()
        soc = props.get("ro.soc.model", "").upper()
        arch_prop = props.get("ro.hexfleet.htp_arch", "").lstrip("v")
        arch = int(arch_prop) if arch_prop.isdigit() else HTP_ARCH_BY_SOC.get(soc)
        sdk = props.get("ro.build.version.sdk", "")
        return DeviceFacts(
            serial=self.serial,
            soc=soc,
            htp_arch=arch,
            board=props.get("ro.board.platform", ""),
            manufacturer=props.get("ro.product.manufacturer", ""),
            model=props.get("ro.product.model", ""),
            android_release=props.get("ro.build.version.release", ""),
            sdk=int(sdk) if sdk.isdigit() else None,
            abi=props.get("ro.product.cpu.abi", ""),
            storage_free_bytes=self.free_bytes(),
            is_virtual=props.get("ro.hexfleet.virtual") == "1",
        )

    def free_bytes(self) -> int | None:
        """Bytes free on /data (where hexfleet's folder is), as `df -k` reports them; None when
        its output does not parse."""
        out = self.checked("df", "-k", "/data")
        rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
        if rows and len(rows[-1]) >= 4 and rows[-1][3].isdigit():
            return int(rows[-1][3]) * 1024
        return None

    def health(self) -> DeviceHealth:
        """Battery and thermal state in one shell (a heartbeat's adb cost: one connection)."""
        code, out, err = self._shell(_HEALTH_COMMAND, "dumpsys", timeout=30.0)
        battery_text, marker, thermal_text = out.partition(f"{_HEALTH_SPLIT}\n")
        if not marker:
            raise DeviceLost(
                f"{self.serial}: `dumpsys battery` failed ({code}): {err.strip()[:200]}"
            )
        battery = {}
        for line in battery_text.splitlines():
            key, _, value = line.strip().partition(": ")
            battery[key] = value
        status, temps = _thermal(thermal_text)
        level = battery.get("level", "")
        raw_temp = battery.get("temperature", "")
        return DeviceHealth(
            battery_level=int(level) if level.isdigit() else None,
            battery_temp_c=int(raw_temp) / 10 if raw_temp.lstrip("-").isdigit() else None,
            max_temp_c=max(temps) if temps else None,
            throttled=status is not None and status >= THROTTLING_STATUS,
        )

    # files ------------------------------------------------------------------------------

    @contextmanager
    def _sync(self, doing: str, timeout: float = 300.0) -> Iterator[socket.socket]:
        """A `sync:` session (SYNC.TXT); failures become DeviceLost naming what was being done."""
        with lost_on_failure(self.serial, doing), closing(self._open("sync:", timeout)) as sock:
            yield sock
            sock.sendall(_SYNC_HEADER.pack(b"QUIT", 0))

    def _send(
        self, sock: socket.socket, source: io.BufferedIOBase, device_path: str, mode: int
    ) -> int:
        """SEND one file: DATA chunks read straight into one buffer, SEND_BATCH per syscall."""
        spec = f"{device_path},{mode}".encode()
        sock.sendall(_SYNC_HEADER.pack(b"SEND", len(spec)) + spec)
        slot = _SYNC_HEADER.size + SYNC_DATA_MAX
        buffer = bytearray(SEND_BATCH * slot)
        view = memoryview(buffer)
        sent, more = 0, True
        while more:
            end = 0
            while more and len(buffer) - end >= slot:
                count = source.readinto(view[end + _SYNC_HEADER.size : end + slot])
                more = count > 0
                if more:
                    _SYNC_HEADER.pack_into(buffer, end, b"DATA", count)
                    end += _SYNC_HEADER.size + count
                    sent += count
            sock.sendall(view[:end])
        sock.sendall(_SYNC_HEADER.pack(b"DONE", int(time.time())))
        status, length = _SYNC_HEADER.unpack(_recv_exactly(sock, _SYNC_HEADER.size))
        if status == b"FAIL":
            failure = _sync_fail(sock, length)
            if _NO_SPACE in str(failure):
                raise DeviceFull(f"{self.serial}: no room for {device_path}: {failure}")
            raise failure
        if status != b"OKAY":
            raise adbutils.AdbError(f"unexpected sync answer {status!r} to SEND")
        return sent

    def push(self, local: Path, device_path: str, mode: int = 0o644) -> int:
        """Copy a host file to the phone with permissions `mode`; the bytes pushed."""
        with self._sync(f"pushing {local.name}") as sock, local.open("rb") as source:
            return self._send(sock, source, device_path, 0o100000 | mode)

    def push_bytes(self, data: bytes, device_path: str) -> None:
        self.push_files({device_path: data}, doing="pushing a file")

    def push_files(self, files: dict[str, bytes], doing: str = "pushing a job folder") -> None:
        """Several small files (a job folder) in one sync session."""
        with self._sync(doing) as sock:
            for device_path, data in files.items():
                self._send(sock, io.BytesIO(data), device_path, 0o100644)

    def _recv(self, sock: socket.socket, device_path: str) -> bytes:
        path = device_path.encode()
        sock.sendall(_SYNC_HEADER.pack(b"RECV", len(path)) + path)
        data = bytearray()
        while True:
            ident, length = _SYNC_HEADER.unpack(_recv_exactly(sock, _SYNC_HEADER.size))
            if ident == b"DATA":
                data.extend(_recv_exactly(sock, length))
            elif ident == b"DONE":
                return bytes(data)
            elif ident == b"FAIL":
                raise _sync_fail(sock, length)
            else:
                raise adbutils.AdbError(f"unexpected sync answer {ident!r} to RECV")

    def pull_with(
        self, device_path: str, then: Callable[[bytes], list[str]]
    ) -> tuple[bytes, list[bytes]]:
        """A file, then the files `then` names after reading it, in one sync session (a run's
        result.json and the outputs it lists: one adb connection, not two)."""
        with self._sync(f"pulling {device_path.rsplit('/', 1)[-1]}") as sock:
            first = self._recv(sock, device_path)
            return first, [self._recv(sock, path) for path in then(first)]

    def sha256(self, device_path: str) -> str | None:
        code, out, _ = self.shell("sha256sum", device_path, timeout=300)
        digest = out.split()[0] if code == 0 and out.split() else ""
        return digest if SHA256.fullmatch(digest) else None

    @contextmanager
    def session(self) -> Iterator[ShellSession]:
        """A shell that runs fixed command lines one after another on one connection."""
        with lost_on_failure(self.serial, "starting a shell"):
            sock = self._open("shell,v2,raw:", timeout=30)
        with closing(sock):
            yield ShellSession(self.serial, sock)

    def cache_entries(self) -> dict[str, tuple[int, int]]:
        """The phone's cached artifacts: sha256 → (size, mtime); empty if there is no cache."""
        return {
            name: entry for name, entry in self.listing(CACHE_DIR).items() if SHA256.fullmatch(name)
        }

    def listing(self, folder: str) -> dict[str, tuple[int, int]]:
        """A folder's regular files: name → (size, mtime); empty if there is no folder."""
        return {
            name: (size, mtime)
            for name, mode, size, mtime in self._entries(folder)
            if stat.S_ISREG(mode)
        }

    def subfolders(self, folder: str) -> list[str]:
        """The names of a folder's subfolders named by a sha256 (runner bundles)."""
        return [
            name
            for name, mode, _, _ in self._entries(folder)
            if stat.S_ISDIR(mode) and SHA256.fullmatch(name)
        ]

    def _entries(self, folder: str) -> list[tuple[str, int, int, int]]:
        """sync LIST: (name, mode, size, mtime) of each entry; empty if there is no folder."""
        entries = []
        path = folder.encode()
        with self._sync(f"listing {folder.rsplit('/', 1)[-1]}") as sock:
            sock.sendall(_SYNC_HEADER.pack(b"LIST", len(path)) + path)
            while True:
                ident, mode, size, mtime, length = _DENT.unpack(_recv_exactly(sock, _DENT.size))
                if ident == b"DONE":
                    break
                if ident != b"DENT":
                    raise adbutils.AdbError(f"unexpected sync answer {ident!r} to LIST")
                name = _recv_exactly(sock, length).decode(errors="replace")
                if name not in (".", ".."):
                    entries.append((name, mode, size, mtime))
        return entries

    def remove(self, *device_paths: str) -> None:
        for path in device_paths:
            if not _inside_root(path):
                raise InvalidRequest(f"refusing to remove {path!r} outside hexfleet's folder")
        self.checked("rm", "-rf", *device_paths)

    def rename(self, source: str, target: str) -> None:
        """`mv` a file to another name inside hexfleet's folder."""
        for path in (source, target):
            if not _inside_root(path):
                raise InvalidRequest(f"refusing to move {path!r} outside hexfleet's folder")
        self.checked("mv", source, target)

    def runner_pids(self, run_id: str) -> list[int]:
        """PIDs of runner processes working on `run_id` (found by the spec path in their args)."""
        marker = f"{job_dir(run_id)}/spec.json"
        out = self.checked("ps", "-A", "-o", "PID,ARGS")
        pids = []
        for line in out.splitlines()[1:]:
            pid, _, args = line.strip().partition(" ")
            if pid.isdigit() and f"/{RUNNER_FILE} " in args and marker in args:
                pids.append(int(pid))
        return pids

    def kill(self, pids: list[int]) -> None:
        if pids:
            self.shell("kill", "-9", *(str(p) for p in pids))

    def stream(
        self,
        *argv: str,
        on_line: Callable[[str], None],
        deadline: float,
        should_stop: Callable[[], str],
        poll_s: float = 0.25,
    ) -> Streamed:
        """Run a fixed command with shell v2, handing each stdout line to `on_line` as it comes.

        Stops reading when the monotonic `deadline` passes or `should_stop()` returns a reason;
        closing the session makes the phone hang up the command (the caller also kills it).
        """
        return self.stream_script(
            " ".join(shlex.quote(word) for word in argv),
            argv[0],
            on_line=on_line,
            deadline=deadline,
            should_stop=should_stop,
            poll_s=poll_s,
        )

    def stream_script(
        self,
        command: str,
        name: str,
        *,
        on_line: Callable[[str], None],
        deadline: float,
        should_stop: Callable[[], str],
        poll_s: float = 0.25,
    ) -> Streamed:
        """`stream` for a command line built from a fixed template by the caller (every variable
        in it validated and quoted); `name` is what errors call it."""
        argv = [name]
        with lost_on_failure(self.serial, f"starting {argv[0]}"):
            sock = self._open(f"shell,v2,raw:{command}", timeout=30)
        sock.settimeout(poll_s)
        buffer = bytearray()
        line = bytearray()
        stderr = bytearray()
        try:
            while True:
                for kind, data in _shell_packets(buffer):
                    if kind == SHELL_STDOUT:
                        line.extend(data)
                        *complete, rest = bytes(line).split(b"\n")
                        line = bytearray(rest)
                        for text in complete:
                            on_line(text.decode(errors="replace"))
                    elif kind == SHELL_STDERR:
                        stderr.extend(data[: max(0, 65536 - len(stderr))])
                    elif kind == SHELL_EXIT:
                        if line:
                            on_line(line.decode(errors="replace"))
                        return Streamed(data[0] if data else 255, stderr.decode(errors="replace"))
                reason = "deadline" if time.monotonic() > deadline else should_stop()
                if reason:
                    return Streamed(None, stderr.decode(errors="replace"), reason)
                try:
                    chunk = sock.recv(1 << 16)
                except TimeoutError:
                    continue
                except OSError as exc:
                    raise DeviceLost(f"{self.serial}: lost while running {argv[0]}: {exc}") from exc
                if not chunk:
                    raise DeviceLost(f"{self.serial}: the connection closed while {argv[0]} ran")
                buffer.extend(chunk)
        finally:
            sock.close()
