"""The chaos suite's farm and faults: 8 virtual phones, `hexfleet serve` and `hexfleet agent` as
processes on a Redis and a PostgreSQL of the test's own, and a seeded schedule of faults (what
breaks, when, which phone) applied to the real parts while jobs run.

Afterwards `audit` reads the database: every slot's attempts, why each ended, the images and
metric rows, when each job settled. Used by tests/chaos/test_fault_schedule.py.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import adbutils
import sqlalchemy as sa
from farm_support import Farm, build_farm
from postgres_process import PostgresCluster
from redis_process import RedisProcess
from waiting import wait_until

from hexfleet.states import FINAL_RUN_STATES
from hexfleet.virtual_phone.phone import VirtualPhone

SOCS = ["sm8450", "sm8550", "sm8650", "sm8750"] * 2

# The reconciliation bounds the farm runs with (seconds; docs/configuration.md): short, so a
# scenario takes a couple of minutes, and what `settle_bound_s` is computed from.
BOUNDS = {
    "HEXFLEET_RECONCILE_INTERVAL_S": "1",
    "HEXFLEET_RECONCILE_SILENCE_S": "30",
    "HEXFLEET_RECONCILE_GRACE_S": "15",
    "HEXFLEET_RECONCILE_DEADLINE_MARGIN_S": "10",
    "HEXFLEET_RECONCILE_QUEUED_S": "15",
    "HEXFLEET_BROKER_VISIBILITY_TIMEOUT_S": "60",
    "HEXFLEET_OUTAGE_WAIT_S": "30",
}
RUN_DEADLINE_S = 90.0


@contextlib.contextmanager
def chaos_farm(root: Path, *, persistent_broker: bool) -> Iterator[ChaosFarm]:
    """The whole farm on a Redis (with or without persistence) and a PostgreSQL of its own."""
    with (
        RedisProcess(root, persistent=persistent_broker) as redis_server,
        PostgresCluster() as postgres,
    ):
        overrides = {
            "HEXFLEET_DATABASE_URL": postgres.url,
            "HEXFLEET_BROKER_URL": redis_server.url,
            **BOUNDS,
        }
        farms = build_farm(root, overrides, SOCS)
        farm = next(farms)
        chaos = ChaosFarm(farm, redis_server, postgres)
        try:
            with chaos.replugging():
                yield chaos
        finally:
            farms.close()


@dataclass
class ChaosFarm:
    farm: Farm
    redis: RedisProcess
    postgres: PostgresCluster
    events: list[tuple[float, str]] = field(default_factory=list)

    @property
    def phones(self) -> list[VirtualPhone]:
        return self.farm.phones

    def process(self, role: str) -> subprocess.Popen[str]:
        """The newest `hexfleet <role>` process the farm started."""
        return [p for p in self.farm.processes if p.args[1] == role][-1]  # type: ignore[index]

    def kill(self, role: str) -> None:
        """SIGKILL `hexfleet <role>`: no goodbye, no clean-up of any kind."""
        process = self.process(role)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def restart(self, role: str) -> None:
        args = ["agent", "--poll", "0.5"] if role == "agent" else [role]
        self.farm.start(*args)

    @contextlib.contextmanager
    def replugging(self) -> Iterator[None]:
        """The physical world: a phone that is back on the network is plugged in again (`adb
        connect`), as a USB phone re-enumerates when its cable is back."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(0.5):
                listed = {d.serial: d.state for d in self.farm.adb.list()}
                for phone in self.phones:
                    if phone.online and listed.get(phone.serial) != "device":
                        with contextlib.suppress(adbutils.AdbError, OSError):
                            if phone.serial in listed:
                                self.farm.adb.disconnect(phone.serial)
                            self.farm.adb.connect(phone.serial, timeout=5)

        thread = threading.Thread(target=loop, name="replug", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=10)

    def engine(self) -> sa.Engine:
        return sa.create_engine(self.postgres.url, pool_pre_ping=True)


@dataclass(frozen=True)
class Fault:
    """One fault: applied `at_s` seconds after the jobs were submitted."""

    name: str
    at_s: float
    apply: Callable[[ChaosFarm], None]


def _kill_and_restart(role: str, down_s: float) -> Callable[[ChaosFarm], None]:
    def apply(chaos: ChaosFarm) -> None:
        chaos.kill(role)
        time.sleep(down_s)  # the fault itself: the process stays dead this long
        chaos.restart(role)

    return apply


def _broker_restart(down_s: float) -> Callable[[ChaosFarm], None]:
    def apply(chaos: ChaosFarm) -> None:
        chaos.redis.kill()
        time.sleep(down_s)  # the fault itself: the broker stays away this long
        chaos.redis.start()

    return apply


def _database_restart(chaos: ChaosFarm) -> None:
    chaos.postgres.restart()


def _offline_mid_run(victim: int, offline_s: float) -> Callable[[ChaosFarm], None]:
    def apply(chaos: ChaosFarm) -> None:
        phone = chaos.phones[victim]
        wait_until(phone.processes.computing, 60, f"{phone.serial} running something", 0.02)
        chaos.farm.fleet.call(phone.go_offline(offline_s))

    return apply


def schedule(seed: int, kinds: list[str], window_s: tuple[float, float]) -> list[Fault]:
    """The faults of `kinds`, in a seeded order at seeded times within `window_s` (at least 6 s
    apart, so each one's effects are its own), on seeded victims."""
    rng = random.Random(seed)
    order = list(kinds)
    rng.shuffle(order)
    start, end = window_s
    gap = (end - start) / max(1, len(order))
    faults = []
    for i, kind in enumerate(order):
        at = start + i * gap + rng.uniform(0, max(0.0, gap - 6))
        if kind in ("agent", "serve"):
            down = rng.uniform(1, 3)
            faults.append(Fault(f"{kind} SIGKILLed", at, _kill_and_restart(kind, down)))
        elif kind == "broker":
            faults.append(Fault("Redis SIGKILLed", at, _broker_restart(rng.uniform(1, 3))))
        elif kind == "database":
            faults.append(Fault("PostgreSQL restarted", at, _database_restart))
        elif kind == "offline":
            victim = rng.randrange(len(SOCS))
            faults.append(
                Fault(f"phone {victim} offline 10 s mid-run", at, _offline_mid_run(victim, 10))
            )
        else:
            raise ValueError(kind)
    return faults


def drop_mid_push(chaos: ChaosFarm, seed: int) -> int:
    """Arm a link drop on a seeded phone a seeded number of bytes into its first push (the
    runner bundle, ~35 MB, and the model go to every phone on its first run); returns it."""
    rng = random.Random(seed + 1)
    victim = rng.randrange(len(SOCS))
    chaos.phones[victim].faults.drop_after_bytes(rng.randint(2_000_000, 20_000_000))
    return victim


def run_faults(chaos: ChaosFarm, faults: list[Fault], t0: float) -> float:
    """Apply `faults` at their times after `t0` (monotonic); returns when the last one ended."""
    for fault in sorted(faults, key=lambda f: f.at_s):
        pause = t0 + fault.at_s - time.monotonic()
        if pause > 0:
            time.sleep(pause)  # the schedule itself: faults happen at their seeded times
        began = time.monotonic()
        fault.apply(chaos)
        chaos.events.append((began - t0, fault.name))
    return time.monotonic()


@dataclass
class Audit:
    """What the database says after the storm."""

    runs: int
    slots: int
    by_state: Counter[str]
    retries: Counter[str]
    succeeded_per_slot: Counter[int]  # succeeded attempts per slot -> how many slots
    non_final: list[str]
    duplicate_images: int
    images_off_success: int
    metrics_off_success: int
    slots_with_images: Counter[int]  # runs with images per slot -> how many slots
    finished_at: dict[str, dt.datetime | None]
    job_states: Counter[str]
    odd_slots: list[list[str]]  # the attempts of every slot without exactly one success


REASONS = [
    (re.compile(r"sent no heartbeat"), "phone silent"),
    (re.compile(r"reported .* after this run started"), "phone's heartbeats name another run"),
    (re.compile(r"after its deadline"), "past its deadline"),
    (re.compile(r"broker message was not in queue"), "broker message lost"),
    (re.compile(r"silent for .* while it waited"), "queued on a silent phone"),
    (re.compile(r"not known to the farm"), "phone unknown"),
]


def why_retried(row: Any) -> str:
    """A short name for why an attempt ended without an answer of its own."""
    if row.reason:
        for pattern, name in REASONS:
            if pattern.search(row.reason):
                return name
        return row.reason[:60]
    return f"agent reported it {row.state}: {(row.error or '')[:50]}"


def audit(engine: sa.Engine, job_ids: list[str]) -> Audit:
    with engine.connect() as conn:
        runs = conn.execute(
            sa.text(
                "SELECT id, job_id, slot, attempt, state, reason, error, retried_from, "
                "device_serial, created_at, started_at, finished_at "
                "FROM runs WHERE job_id = ANY(:jobs) ORDER BY job_id, slot, attempt"
            ),
            {"jobs": job_ids},
        ).all()
        images = conn.execute(
            sa.text(
                "SELECT i.run_id, i.index, r.state, r.job_id, r.slot FROM images i "
                "JOIN runs r ON r.id = i.run_id WHERE r.job_id = ANY(:jobs)"
            ),
            {"jobs": job_ids},
        ).all()
        metrics = conn.execute(
            sa.text(
                "SELECT m.run_id, r.state FROM metrics m JOIN runs r ON r.id = m.run_id "
                "WHERE r.job_id = ANY(:jobs)"
            ),
            {"jobs": job_ids},
        ).all()
        jobs = conn.execute(
            sa.text("SELECT id, state, finished_at FROM jobs WHERE id = ANY(:jobs)"),
            {"jobs": job_ids},
        ).all()
    succeeded: Counter[tuple[str, int]] = Counter()
    slots = {(r.job_id, r.slot) for r in runs}
    for run in runs:
        if run.state == "succeeded":
            succeeded[(run.job_id, run.slot)] += 1
    retried = {r.retried_from for r in runs if r.retried_from}
    with_images: dict[tuple[str, int], set[str]] = {}
    for image in images:
        with_images.setdefault((image.job_id, image.slot), set()).add(image.run_id)
    image_keys = Counter((i.run_id, i.index) for i in images)
    return Audit(
        runs=len(runs),
        slots=len(slots),
        by_state=Counter(r.state for r in runs),
        retries=Counter(why_retried(r) for r in runs if r.id in retried),
        succeeded_per_slot=Counter(succeeded[s] for s in slots),
        non_final=[r.id for r in runs if r.state not in FINAL_RUN_STATES],
        duplicate_images=sum(n - 1 for n in image_keys.values()),
        images_off_success=sum(1 for i in images if i.state != "succeeded"),
        metrics_off_success=sum(1 for m in metrics if m.state != "succeeded"),
        slots_with_images=Counter(len(with_images.get(s, ())) for s in slots),
        finished_at={j.id: j.finished_at for j in jobs},
        job_states=Counter(j.state for j in jobs),
        odd_slots=[
            [
                f"{r.attempt} {r.state} on {r.device_serial} created {r.created_at:%X.%f} "
                f"started {r.started_at} finished {r.finished_at}: {r.reason} / {r.error}"
                for r in runs
                if (r.job_id, r.slot) == slot
            ]
            for slot in sorted(slots)
            if succeeded[slot] != 1
        ],
    )


def wait_settled(engine: sa.Engine, job_ids: list[str], timeout: float) -> float:
    """Wait until every job is final (asked of the database); returns when that was seen."""

    def settled() -> bool:
        with engine.connect() as conn:
            open_jobs = conn.execute(
                sa.text(
                    "SELECT count(*) FROM jobs WHERE id = ANY(:jobs) "
                    "AND state NOT IN ('succeeded', 'failed', 'cancelled')"
                ),
                {"jobs": job_ids},
            ).scalar_one()
        return open_jobs == 0

    def settled_tolerant() -> bool:
        try:
            return settled()
        except sa.exc.OperationalError:
            return False  # the database restarting (a fault still in effect)

    wait_until(settled_tolerant, timeout, "every job settled", 0.5)
    return time.monotonic()


def env_seed(default: int) -> int:
    """The fault schedule's seed: HEXFLEET_CHAOS_SEED to try another one, else `default`."""
    return int(os.environ.get("HEXFLEET_CHAOS_SEED", default))
