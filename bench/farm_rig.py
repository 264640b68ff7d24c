"""A whole hexfleet farm on one machine for benchmarks, and the accounting the benchmarks read.

`Rig` starts a private adb server, virtual phones (a process each), `hexfleet serve` and
`hexfleet agent` as processes, on the embedded defaults or on real Redis + PostgreSQL, and
registers a stand-in runner bundle for x86_64 through the API: bench/farm_runner.c built as
`hexfleet-runner` (contract v2, no inference), which the agent pushes and the phones run as they
would the real one (`services()` makes a flushed Redis database and a fresh
PostgreSQL database and removes both afterwards). Everything started is stopped by `close()`.
`CpuMeter` reads how much CPU each part of the farm used, from /proc.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbutils
import httpx
import psycopg
import redis
import sqlalchemy as sa
from psycopg import sql

from hexfleet.bundle import RUNNER_FILE, RunnerBundle
from hexfleet.cli.client import ApiClient
from hexfleet.cli.runner_commands import VERSION_FILE, make_bundle, register
from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.engine import make_engine
from hexfleet.settings import Settings
from hexfleet.virtual_phone.fleet import (
    PhoneRecord,
    PhoneSpec,
    phones_dir,
    read_records,
    start_processes,
    stop_processes,
)

# The synthetic SD-layout model is a test fixture, shared with tests/ (tests/support).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from synthetic_sd import write_tiny_layout  # noqa: E402

HEXFLEET = str(Path(sys.executable).parent / "hexfleet")
ADB = adbutils.adb_path()
STAND_IN = Path(__file__).with_name("farm_runner.c")
STAND_IN_VERSION = "stand-in"
# The stand-in reads the run length from this device path (farm_runner.c's DELAY_FILE); the rig
# writes the file into every phone's own folder, which the phone's sandbox shows at /data.
DELAY_DEVICE_PATH = "/data/local/tmp/hexfleet-bench-runner-delay-s"
REDIS_URL = "redis://127.0.0.1:6379/11"
POSTGRES_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=5"
SUBMIT_TOKEN = "bench-submit-token"
SOCS = ("sm8450", "sm8550", "sm8650", "sm8750")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], Any], timeout: float, what: str, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


@contextlib.contextmanager
def services() -> Iterator[dict[str, str]]:
    """HEXFLEET_* overrides for Redis (database 11, flushed before and after) and a PostgreSQL
    database of our own (dropped afterwards)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    client.flushdb()
    name = f"hexfleet_bench_{uuid.uuid4().hex[:12]}"
    admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    try:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield {
                "HEXFLEET_BROKER_URL": REDIS_URL,
                "HEXFLEET_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                "HEXFLEET_SUBMIT_TOKENS": f'["{SUBMIT_TOKEN}"]',
                "HEXFLEET_API_TOKEN": SUBMIT_TOKEN,
            }
        finally:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
    finally:
        admin.close()
        client.flushdb()
        client.close()


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def adb_servers(port: int) -> list[int]:
    """Pids of adb servers listening on `port` (their command line names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"fork-server" in argv and f"tcp:{port}".encode() in argv:
                found.append(int(entry.name))
    return found


def descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def start_time(pid: int) -> int:
    """When the process started (clock ticks since boot; 0 if it is gone): with the pid, an
    identity that survives pid reuse."""
    fields = _stat(pid)
    return int(fields[19]) if fields else 0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (0 if it is gone)."""
    fields = _stat(pid)
    if not fields:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_with_children(pid: int) -> float:
    """utime + stime of a live process and of its reaped children (0 if it is gone)."""
    fields = _stat(pid)
    if not fields:
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    tick = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / tick, sum(values) / tick


@dataclass
class CpuMeter:
    """CPU seconds used by each named group of processes between `start()` and `stop()`.

    `groups` maps a name to a function returning the group's pids at that moment; the virtual
    phones are processes of their own (their stand-in runners are their reaped children).
    """

    groups: dict[str, Callable[[], list[int]]]
    with_children: frozenset[str] = frozenset()  # groups whose reaped children count too
    before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)
    wall: float = 0.0
    machine: float = 0.0

    def _sample(self) -> dict[str, float]:
        times = os.times()
        sample = {
            name: sum(
                (cpu_seconds_with_children if name in self.with_children else cpu_seconds)(p)
                for p in pids()
            )
            for name, pids in self.groups.items()
        }
        sample["bench process (polls)"] = times.user + times.system
        busy, _ = machine_busy_seconds()
        sample["_machine"] = busy
        sample["_wall"] = time.monotonic()
        return sample

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> None:
        after = self._sample()
        self.wall = after.pop("_wall") - self.before["_wall"]
        self.machine = after.pop("_machine") - self.before["_machine"]
        self.used = {k: max(0.0, v - self.before.get(k, 0.0)) for k, v in after.items()}

    def lines(self) -> list[str]:
        """One line per group: CPU seconds and share of one core over the measured wall time."""
        rows = [
            f"{name:<40} {seconds:7.2f} s CPU  ({seconds / self.wall:5.0%} of a core)"
            for name, seconds in sorted(self.used.items(), key=lambda kv: -kv[1])
        ]
        mine = sum(self.used.values())
        rows.append(
            f"{f'whole machine ({os.cpu_count()} cores)':<40} {self.machine:7.2f} s CPU  "
            f"({self.machine / (self.wall * (os.cpu_count() or 1)):5.0%} busy; "
            f"{max(0.0, self.machine - mine):.2f} s outside the farm)"
        )
        return rows


@dataclass
class Rig:
    """One farm; `close()` stops everything it started, in reverse order."""

    root: Path
    overrides: dict[str, str]
    delay: float = 0.0
    phones_dir: Path = field(init=False)
    settings: Settings = field(init=False)
    env: dict[str, str] = field(init=False)
    adb_port: int = field(init=False)
    adb: adbutils.AdbClient = field(init=False)
    phones: list[PhoneRecord] = field(default_factory=list)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    seen: dict[int, int] = field(default_factory=dict)
    engine: sa.Engine | None = None
    http: httpx.Client | None = None
    bundle: RunnerBundle | None = None

    def __post_init__(self) -> None:
        self.phones_dir = self.root / "phones"
        self.adb_port = free_port()
        self.adb = adbutils.AdbClient("127.0.0.1", self.adb_port)
        data_dir = self.root / "data"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HEXFLEET_")}
        self.env.update(
            {
                "HEXFLEET_DATA_DIR": str(data_dir),
                "HEXFLEET_API_URL": f"http://127.0.0.1:{free_port()}",
                "HEXFLEET_ADB_PORT": str(self.adb_port),
                "HEXFLEET_AGENT_NAME": "bench-host",
                **self.overrides,
            }
        )
        self.settings = Settings(
            data_dir=data_dir,
            api_url=self.env["HEXFLEET_API_URL"],
            adb_port=self.adb_port,
            database_url=self.overrides.get("HEXFLEET_DATABASE_URL"),
            broker_url=self.overrides.get("HEXFLEET_BROKER_URL"),
            api_token=self.overrides.get("HEXFLEET_API_TOKEN"),
        )

    @property
    def backend(self) -> str:
        return "Redis + PostgreSQL" if self.settings.database_url else "embedded (SQLite + fs)"

    def start(self, phones: int) -> None:
        subprocess.run(  # noqa: S603 - fixed argv
            [ADB, "-P", str(self.adb_port), "start-server"],
            check=True, capture_output=True, timeout=30,
        )
        # The server daemonizes; remember it, so close() can make sure it is gone.
        self._remember(adb_servers(self.adb_port))
        store = ModelStore.from_settings(self.settings)
        register_tiny_sd(store, write_tiny_layout(self.root / "tiny-sd"))
        self.add_phones(phones)
        self._spawn("serve", "serve")
        wait_until(self._healthy, 90, "the API")
        self.engine = make_engine(self.settings.resolved_database_url)
        token = self.settings.client_token()
        # Before any job: the API refuses a job for phones whose ABI has no runner bundle.
        folder = self.stand_in_folder()
        with ApiClient(self.settings.api_url, token, timeout=120) as client:
            register(client, folder, "x86_64")
        self.bundle, _ = make_bundle(folder, "x86_64", None)
        self.http = httpx.Client(
            base_url=self.settings.api_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=120,
        )
        self.start_agent()

    def stand_in_folder(self) -> Path:
        """A runner bundle folder: bench/farm_runner.c built here as `hexfleet-runner`, with a
        VERSION file (a native runner's start-up is ~1 ms of a phone's own CPU, as the real
        runner's is)."""
        compiler = shutil.which("cc") or shutil.which("gcc")
        if compiler is None:
            raise RuntimeError("bench: no C compiler (cc or gcc) to build bench/farm_runner.c")
        folder = self.root / "stand-in-runner"
        folder.mkdir(exist_ok=True)
        built = subprocess.run(  # noqa: S603 - fixed argv
            [compiler, "-O2", "-o", str(folder / RUNNER_FILE), str(STAND_IN)],
            capture_output=True, text=True, timeout=120,
        )
        if built.returncode != 0:
            raise RuntimeError(
                f"bench: {STAND_IN.name} did not build: {built.stderr.strip()[:500]}"
            )
        (folder / VERSION_FILE).write_text(STAND_IN_VERSION + "\n")
        return folder

    def add_phones(self, count: int) -> None:
        """`count` more phones, SoCs cycled, each in a process of its own (as phones are separate
        devices: they do not share one interpreter), connected to our adb server."""
        specs = []
        for _ in range(count):
            index = len(self.phones) + len(specs) + 1
            specs.append(PhoneSpec(
                soc=SOCS[(index - 1) % len(SOCS)],
                host="127.0.0.1",
                port=free_port(),
                root=self.root / f"phone{index}",
                state_dir=phones_dir(self.phones_dir),
                compute="cpu",
            ))
        for spec in specs:
            self._write_delay(spec.root)
        for record in start_processes(self.phones_dir, specs):
            self.phones.append(record)
            message = self.adb.connect(record.serial, timeout=10)
            if "connected" not in message:
                raise RuntimeError(f"adb connect {record.serial}: {message}")

    def phone_pids(self) -> list[int]:
        return [record.pid for record in read_records(self.phones_dir)]

    def start_agent(self, env: dict[str, str] | None = None) -> None:
        """`hexfleet agent` (with `env` added to its environment); waits until every phone has
        reported in at least once (the caller runs a job to know that workers consume)."""
        self._spawn("agent", "agent", "--poll", "0.5", env=env)
        self.wait_online()

    def wait_online(self) -> None:
        wanted = {p.serial for p in self.phones}
        wait_until(lambda: self.online() >= wanted, 180, "every phone's worker", every=0.5)

    def stop_agent(self) -> None:
        self._stop("agent")

    def online(self) -> set[str]:
        if self.http is None:
            return set()
        devices = self.http.get("/api/v1/devices").json()
        return {d["serial"] for d in devices if d["state"] != "offline"}

    def set_delay(self, seconds: float) -> None:
        """How long every phone's stand-in runner sleeps per run, spread over its steps."""
        self.delay = seconds
        for record in self.phones:
            self._write_delay(record.root)

    def _write_delay(self, phone_root: Path) -> None:
        path = phone_root / DELAY_DEVICE_PATH.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(repr(self.delay))
        tmp.replace(path)  # whole, so a runner starting now never reads a half-written number

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        assert self.http is not None
        response = self.http.post("/api/v1/jobs", json=body)
        if response.status_code >= 300:
            raise RuntimeError(f"submit failed ({response.status_code}): {response.text[:500]}")
        return dict(response.json())

    def query(self, statement: sa.Executable) -> list[sa.Row[Any]]:
        assert self.engine is not None
        with self.engine.connect() as conn:
            return list(conn.execute(statement).all())

    def pids(self, name: str) -> list[int]:
        """A started process and its descendants (remembered, so close() can find orphans)."""
        process = self.processes.get(name)
        if process is None or process.poll() is not None:
            return []
        found = [process.pid, *descendants(process.pid)]
        self._remember(found)
        return found

    def _remember(self, pids: list[int]) -> None:
        for pid in pids:
            self.seen.setdefault(pid, start_time(pid))

    def _healthy(self) -> bool:
        try:
            url = f"{self.settings.api_url}/api/v1/health"
            return httpx.get(url, timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    def _spawn(self, name: str, *args: str, env: dict[str, str] | None = None) -> None:
        log = (self.root / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(  # noqa: S603 - fixed argv, our own CLI
            [HEXFLEET, *args], env={**self.env, **(env or {})}, stdout=log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
        log.close()

    def _stop(self, name: str) -> None:
        process = self.processes.pop(name, None)
        if process is None:
            return
        self._remember([process.pid, *descendants(process.pid)])
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=45)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_count(self, name: str, text: str) -> int:
        """How often `text` occurs in a process's log."""
        log = self.root / f"{name}.log"
        return log.read_text(errors="replace").count(text) if log.is_file() else 0

    def logs(self, tail: int = 3000) -> str:
        return "\n".join(
            f"--- {p.name}\n{p.read_text(errors='replace')[-tail:]}"
            for p in sorted(self.root.glob("*.log"))
        )

    def close(self) -> None:
        for name in ("agent", "serve"):
            with contextlib.suppress(Exception):
                self._stop(name)
        if self.http is not None:
            self.http.close()
        if self.engine is not None:
            self.engine.dispose()
        with contextlib.suppress(Exception):
            stop_processes(self.phones_dir)
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(  # noqa: S603 - fixed argv
                [ADB, "-P", str(self.adb_port), "kill-server"],
                capture_output=True, timeout=30, check=False,
            )
        for pid, started in self.seen.items():
            # Only a process we started that is still there (same pid, same start time).
            if started and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def farm(overrides: dict[str, str], phones: int, keep: bool = False) -> Iterator[Rig]:
    """A running farm with `phones` phones; everything stopped and removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="hexfleet-bench-"))
    rig = Rig(root, overrides)
    try:
        rig.start(phones)
        yield rig
    except BaseException:
        print(rig.logs(), file=sys.stderr)
        raise
    finally:
        rig.close()
        if keep:
            print(f"farm files kept in {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
