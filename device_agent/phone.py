"""A phone as the agent drives it through adbutils: facts, health, fixed shell commands, files.

Every shell command is built here from a fixed template whose only variables are validated
identifiers (sha256 hex, run UUIDs, PIDs), quoted anyway; nothing a user typed ever reaches it.
Connection failures become `DeviceLost`, so callers can retry the work on another phone.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import adbutils

from device_agent.messages import DeviceFacts, DeviceHealth
from device_agent.runner.spec import CACHE_DIR, DEVICE_ROOT_DIR, JOBS_DIR, RUNNER_PATH
from hexfleet.errors import DeviceLost, InvalidRequest

# DESIGN.md's table: a QNN context binary is compiled for one Hexagon arch per SoC.
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
ADB_ERRORS = (adbutils.AdbError, adbutils.AdbTimeout, OSError, socket.timeout, EOFError)


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


@contextmanager
def lost_on_failure(serial: str, doing: str) -> Iterator[None]:
    """Connection-level failures of adb become DeviceLost naming the phone and the action."""
    try:
        yield
    except ADB_ERRORS as exc:
        raise DeviceLost(f"{serial}: lost while {doing}: {exc or type(exc).__name__}") from exc


SHELL_STDOUT, SHELL_STDERR, SHELL_EXIT = 1, 2, 3


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

    def shell(self, *argv: str, timeout: float = 30.0) -> tuple[int, str, str]:
        """Run a fixed command (argv words, each quoted) with shell v2: (exit, stdout, stderr)."""
        command = " ".join(shlex.quote(word) for word in argv)
        with lost_on_failure(self.serial, f"running {argv[0]}"):
            result = self.device.shell2(command, timeout=timeout, v2=True, encoding=None)
        return (
            result.returncode,
            result.stdout.decode(errors="replace"),
            result.stderr.decode(errors="replace"),
        )

    def checked(self, *argv: str, timeout: float = 30.0) -> str:
        code, out, err = self.shell(*argv, timeout=timeout)
        if code != 0:
            raise DeviceLost(f"{self.serial}: `{argv[0]}` failed ({code}): {err.strip()[:200]}")
        return out

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
        out = self.checked("df", "-k", "/data")
        rows = [line.split() for line in out.splitlines()[1:] if line.strip()]
        if rows and len(rows[-1]) >= 4 and rows[-1][3].isdigit():
            return int(rows[-1][3]) * 1024
        return None

    def thermal(self) -> tuple[int | None, list[float]]:
        """Android's thermal status (3 = severe: the phone throttles) and the HAL temperatures."""
        _, out, _ = self.shell("dumpsys", "thermalservice")
        status = _THERMAL_STATUS.search(out)
        temps = [float(t) for t in _HAL_TEMP.findall(out)]
        return (int(status.group(1)) if status else None), temps

    def health(self) -> DeviceHealth:
        battery = {}
        for line in self.checked("dumpsys", "battery").splitlines():
            key, _, value = line.strip().partition(": ")
            battery[key] = value
        status, temps = self.thermal()
        level = battery.get("level", "")
        raw_temp = battery.get("temperature", "")
        return DeviceHealth(
            battery_level=int(level) if level.isdigit() else None,
            battery_temp_c=int(raw_temp) / 10 if raw_temp.lstrip("-").isdigit() else None,
            max_temp_c=max(temps) if temps else None,
            throttled=status is not None and status >= THROTTLING_STATUS,
        )

    # files ------------------------------------------------------------------------------

    def mkdirs(self, *device_paths: str) -> None:
        self.checked("mkdir", "-p", *device_paths)

    def push(self, local: Path, device_path: str) -> int:
        with lost_on_failure(self.serial, f"pushing {local.name}"):
            return int(self.device.sync.push(local, device_path) or local.stat().st_size)

    def push_bytes(self, data: bytes, device_path: str) -> None:
        with lost_on_failure(self.serial, "pushing a file"):
            self.device.sync.push(data, device_path)

    def pull_bytes(self, device_path: str) -> bytes:
        with lost_on_failure(self.serial, f"pulling {device_path.rsplit('/', 1)[-1]}"):
            return self.device.sync.read_bytes(device_path)

    def sha256(self, device_path: str) -> str | None:
        code, out, _ = self.shell("sha256sum", device_path, timeout=300)
        digest = out.split()[0] if code == 0 and out.split() else ""
        return digest if SHA256.fullmatch(digest) else None

    def cache_entries(self) -> dict[str, tuple[int, int]]:
        """The phone's cached artifacts: sha256 → (size, mtime)."""
        with lost_on_failure(self.serial, "listing the cache"):
            entries = self.device.sync.list(CACHE_DIR)
        return {
            e.path: (e.size, int(e.mtime.timestamp()) if e.mtime else 0)
            for e in entries
            if SHA256.fullmatch(e.path)
        }

    def remove(self, *device_paths: str) -> None:
        for path in device_paths:
            # normpath catches `..`, `.` and `//`, which a prefix check alone would let through
            inside = path.startswith(DEVICE_ROOT_DIR + "/") and posixpath.normpath(path) == path
            if not inside:
                raise InvalidRequest(f"refusing to remove {path!r} outside hexfleet's folder")
        self.checked("rm", "-rf", *device_paths)

    def touch(self, device_path: str) -> None:
        self.checked("touch", device_path)

    def runner_pids(self, run_id: str) -> list[int]:
        """PIDs of runner processes working on `run_id` (found by the spec path in their args)."""
        marker = f"{job_dir(run_id)}/spec.json"
        out = self.checked("ps", "-A", "-o", "PID,ARGS")
        pids = []
        for line in out.splitlines()[1:]:
            pid, _, args = line.strip().partition(" ")
            if pid.isdigit() and RUNNER_PATH in args and marker in args:
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
        command = " ".join(shlex.quote(word) for word in argv)
        with lost_on_failure(self.serial, f"starting {argv[0]}"):
            conn = self.device.open_transport(timeout=30)
            conn.send_command(f"shell,v2,raw:{command}")
            conn.check_okay()
        sock = conn.conn
        sock.settimeout(poll_s)
        buffer = bytearray()
        line = bytearray()
        stderr = bytearray()
        try:
            while True:
                while len(buffer) >= 5 and len(buffer) >= 5 + int.from_bytes(buffer[1:5], "little"):
                    kind, size = buffer[0], int.from_bytes(buffer[1:5], "little")
                    data, buffer = bytes(buffer[5 : 5 + size]), buffer[5 + size :]
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
            conn.close()
