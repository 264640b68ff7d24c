"""Start and stop many virtual phones: one detached process per phone, found again via state files.

Each phone process writes `<data_dir>/virtual/phones/<port>.json` (pid, serial, control port)
once it listens, so `down`, `list` and `fault` work from any other process. `ThreadedFleet` runs
phones inside the calling process instead (tests, `--foreground`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

from hexfleet.errors import InvalidRequest, NotFound, ServiceUnavailable
from hexfleet.runner_env import ComputeMode
from hexfleet.virtual_phone.faults import FaultCommand
from hexfleet.virtual_phone.phone import PhoneConfig, VirtualPhone
from hexfleet.virtual_phone.profiles import Profile, get_profile
from hexfleet.virtual_phone.storage import Capacity

log = logging.getLogger(__name__)

DEFAULT_BASE_PORT = 18500
# adb probes 127.0.0.1:5555-5585 for emulators (docs/measurements.md); phones there would be
# found twice.
EMULATOR_PORTS = range(5554, 5586)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_MODULE = "hexfleet.virtual_phone.fleet"

T = TypeVar("T")
# The CPU ABIs a virtual phone can have (virtual_phone.executables).
Abi = Literal["x86_64", "arm64-v8a"]


class PhoneSpec(BaseModel):
    """What a phone process is asked to run (passed on its command line)."""

    version: Literal[1] = 1
    soc: str
    host: str
    port: int = Field(ge=1, le=65535)
    root: Path
    state_dir: Path
    compute: ComputeMode = "htp"
    abi: Abi = "x86_64"
    bandwidth_mb_s: float | None = None
    faulty_npu: float = 0.0
    storage_bytes: int | None = Field(default=None, gt=0)  # as marketed; None: the profile's


class PhoneRecord(BaseModel):
    """What a running phone process publishes about itself."""

    version: Literal[1] = 1
    pid: int
    serial: str
    serialno: str
    soc: str
    model: str
    htp_arch: str
    host: str
    port: int
    control_port: int
    root: Path
    compute: ComputeMode
    abi: Abi = "x86_64"
    started_at: float
    connected: bool = False


class ControlReply(BaseModel):
    version: Literal[1] = 1
    ok: bool
    message: str = ""


def phones_dir(data_dir: Path) -> Path:
    return data_dir / "virtual" / "phones"


def roots_dir(data_dir: Path) -> Path:
    return data_dir / "virtual" / "roots"


def logs_dir(data_dir: Path) -> Path:
    return data_dir / "virtual" / "logs"


def check_bind_host(host: str, *, unsafe_bind: bool) -> None:
    """Refuse a non-loopback address unless the caller insists (the phone runs commands here)."""
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError as exc:
        raise InvalidRequest(f"--host {host!r} is not an IP address") from exc
    if not loopback and not unsafe_bind:
        raise InvalidRequest(
            f"refusing to bind virtual phones to {host}: anyone who can reach that address could "
            "run commands and write files on this host through them (a virtual phone executes "
            "shell commands and runners here). Pass --unsafe-bind if that is really intended."
        )


def phone_config(spec: PhoneSpec) -> PhoneConfig:
    profile = get_profile(spec.soc)
    return PhoneConfig(
        profile=profile,
        root=spec.root,
        index=spec.port,
        host=spec.host,
        port=spec.port,
        compute=spec.compute,
        abi=spec.abi,
        bandwidth_mb_s=spec.bandwidth_mb_s,
        faulty_npu=spec.faulty_npu,
        capacity=None if spec.storage_bytes is None else Capacity.marketed(spec.storage_bytes),
    )


def plan(
    data_dir: Path,
    profiles: list[Profile],
    count: int,
    *,
    host: str,
    base_port: int,
    compute: ComputeMode,
    abi: Abi = "x86_64",
    bandwidth_mb_s: float | None = None,
    faulty_npu: float = 0.0,
    storage_bytes: int | None = None,
) -> list[PhoneSpec]:
    """Specs for `count` phones on consecutive ports, cycling through `profiles`;
    `storage_bytes`: every phone's storage as marketed (None: its profile's)."""
    if count < 1:
        raise InvalidRequest("--count must be at least 1")
    if storage_bytes is not None:
        Capacity.marketed(storage_bytes)  # refused here, before any process starts
    specs = []
    for index in range(count):
        port = base_port + index
        if port in EMULATOR_PORTS:
            raise InvalidRequest(
                f"port {port} is in adb's emulator probing range 5554-5585; choose another "
                "--base-port"
            )
        if port > 65535:
            raise InvalidRequest(f"port {port} is out of range")
        profile = profiles[index % len(profiles)]
        specs.append(
            PhoneSpec(
                soc=profile.soc,
                host=host,
                port=port,
                root=roots_dir(data_dir) / profile.serialno(port),
                state_dir=phones_dir(data_dir),
                compute=compute,
                abi=abi,
                bandwidth_mb_s=bandwidth_mb_s,
                faulty_npu=faulty_npu,
                storage_bytes=storage_bytes,
            )
        )
    return specs


# --- the phone process -----------------------------------------------------------------------


async def _handle_control(
    phone: VirtualPhone, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        line = await reader.readline()
        try:
            command = FaultCommand.model_validate_json(line)
        except ValueError as exc:
            reply = ControlReply(ok=False, message=f"bad fault command: {exc}")
        else:
            await phone.apply(command)
            reply = ControlReply(ok=True, message=f"{command.kind} applied")
        writer.write(reply.model_dump_json().encode() + b"\n")
        await writer.drain()
    finally:
        writer.close()


async def serve_phone(spec: PhoneSpec) -> None:
    """Run one phone until SIGTERM/SIGINT, publishing its record while it lives."""
    phone = VirtualPhone(phone_config(spec))
    await phone.start()
    control = await asyncio.start_server(lambda r, w: _handle_control(phone, r, w), "127.0.0.1", 0)
    record = PhoneRecord(
        pid=os.getpid(),
        serial=phone.serial,
        serialno=phone.serialno,
        soc=phone.profile.soc,
        model=phone.profile.model,
        htp_arch=phone.profile.htp_arch,
        host=spec.host,
        port=phone.port,
        control_port=control.sockets[0].getsockname()[1],
        root=phone.fs.root,
        compute=spec.compute,
        abi=spec.abi,
        started_at=time.time(),
    )
    path = spec.state_dir / f"{phone.port}.json"
    _write_record(path, record)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        control.close()
        await phone.stop()
        path.unlink(missing_ok=True)


def _write_record(path: Path, record: PhoneRecord) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(record.model_dump_json(indent=1))
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """Entry point of a phone process: `python -m hexfleet.virtual_phone.fleet serve SPEC_JSON`."""
    parser = argparse.ArgumentParser(prog=_MODULE)
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("spec")
    args = parser.parse_args(argv)
    spec = PhoneSpec.model_validate_json(args.spec)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    asyncio.run(serve_phone(spec))
    return 0


# --- managing phone processes ----------------------------------------------------------------


def _is_phone_process(pid: int) -> bool:
    """Whether `pid` is alive and is one of our phone processes (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return _MODULE.encode() in cmdline


def read_records(data_dir: Path) -> list[PhoneRecord]:
    """Records of the phones running now; stale files (dead processes) are removed."""
    records = []
    folder = phones_dir(data_dir)
    if not folder.is_dir():
        return []
    for path in sorted(folder.glob("*.json")):
        try:
            record = PhoneRecord.model_validate_json(path.read_text())
        except (OSError, ValueError):
            continue
        if _is_phone_process(record.pid):
            records.append(record)
        else:
            path.unlink(missing_ok=True)
    return sorted(records, key=lambda r: r.port)


def start_processes(
    data_dir: Path, specs: list[PhoneSpec], python: str = sys.executable
) -> list[PhoneRecord]:
    """Start one detached process per spec and wait until each one listens."""
    running = {record.port for record in read_records(data_dir)}
    clash = [spec.port for spec in specs if spec.port in running]
    if clash:
        raise InvalidRequest(f"virtual phones already run on port(s) {clash}; run `down` first")
    data_dir.mkdir(parents=True, exist_ok=True)
    logs_dir(data_dir).mkdir(parents=True, exist_ok=True)
    phones_dir(data_dir).mkdir(parents=True, exist_ok=True)
    started: list[tuple[PhoneSpec, subprocess.Popen[bytes], Path]] = []
    for spec in specs:
        log_path = logs_dir(data_dir) / f"{spec.port}.log"
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(  # noqa: S603 - fixed argv, our own module
                [python, "-m", _MODULE, "serve", spec.model_dump_json()],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=data_dir,
            )
        started.append((spec, process, log_path))
    records = []
    deadline = time.monotonic() + START_TIMEOUT_S
    for spec, process, log_path in started:
        record_path = phones_dir(data_dir) / f"{spec.port}.json"
        while not record_path.exists():
            if process.poll() is not None:
                tail = log_path.read_text(errors="replace")[-800:]
                stop_processes(data_dir)
                raise ServiceUnavailable(
                    f"virtual phone on port {spec.port} exited with {process.returncode}: {tail}"
                )
            if time.monotonic() > deadline:
                stop_processes(data_dir)
                raise ServiceUnavailable(f"virtual phone on port {spec.port} did not start")
            time.sleep(0.05)
        records.append(PhoneRecord.model_validate_json(record_path.read_text()))
    return records


def mark_connected(data_dir: Path, port: int) -> None:
    path = phones_dir(data_dir) / f"{port}.json"
    record = PhoneRecord.model_validate_json(path.read_text())
    _write_record(path, record.model_copy(update={"connected": True}))


def stop_processes(data_dir: Path, serials: list[str] | None = None) -> list[PhoneRecord]:
    """SIGTERM the phone processes (all, or those with these serials) and wait for them."""
    records = read_records(data_dir)
    if serials:
        unknown = set(serials) - {r.serial for r in records} - {r.serialno for r in records}
        if unknown:
            raise NotFound(f"no running virtual phone with serial {sorted(unknown)}")
        records = [r for r in records if r.serial in serials or r.serialno in serials]
    for record in records:
        with contextlib.suppress(ProcessLookupError):
            os.kill(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for record in records:
        while _is_phone_process(record.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_phone_process(record.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(record.pid, signal.SIGKILL)
        (phones_dir(data_dir) / f"{record.port}.json").unlink(missing_ok=True)
    return records


def send_fault(data_dir: Path, serial: str, command: FaultCommand) -> ControlReply:
    """Apply a fault to a running phone process through its control port."""
    matches = [r for r in read_records(data_dir) if serial in (r.serial, r.serialno)]
    if not matches:
        raise NotFound(f"no running virtual phone with serial {serial!r}")
    record = matches[0]
    with socket.create_connection(("127.0.0.1", record.control_port), timeout=10) as conn:
        conn.sendall(command.model_dump_json().encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    return ControlReply.model_validate_json(data)


# --- phones inside this process --------------------------------------------------------------


class ThreadedFleet:
    """Phones served by an event loop on a background thread of this process."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="virtual-phones", daemon=True
        )
        self._thread.start()
        self.phones: list[VirtualPhone] = []

    def call(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the phones' loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    def start_phone(self, config: PhoneConfig) -> VirtualPhone:
        phone = VirtualPhone(config)
        self.call(phone.start())
        self.phones.append(phone)
        return phone

    def stop_phone(self, phone: VirtualPhone) -> None:
        self.call(phone.stop())

    def restart_phone(self, phone: VirtualPhone) -> None:
        """Start a stopped phone again on the same port (same serial, same files)."""
        self.call(phone.start())

    def close(self) -> None:
        for phone in self.phones:
            with contextlib.suppress(RuntimeError):
                self.call(phone.stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def __enter__(self) -> ThreadedFleet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@contextlib.contextmanager
def foreground(specs: list[PhoneSpec]) -> Iterator[list[VirtualPhone]]:
    """Run phones in this process until the block ends."""
    with ThreadedFleet() as fleet:
        yield [fleet.start_phone(phone_config(spec)) for spec in specs]


def records_as_json(records: list[PhoneRecord]) -> str:
    return json.dumps([json.loads(r.model_dump_json()) for r in records], indent=1)


if __name__ == "__main__":
    sys.exit(main())
