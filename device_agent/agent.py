"""`hexfleet agent`: watches the adb server for phones and keeps one worker process per online one.

A phone that appears (or comes back) gets a worker within a poll interval (a worker dies
with the agent: hexfleet.children); one that disappears or
goes `offline` has its worker stopped and is reported offline. Stopping does not hold up the scan
(a Celery worker's warm shutdown takes seconds): the worker is signalled, then reaped, or killed
after STOP_GRACE_S, by later scans. A worker that dies while its phone is still online is
restarted, at most once per RESTART_BACKOFF_S. The agent never opens the database: all it says
goes through the broker's `ingest` queue.
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

import adbutils

from hexfleet.broker import INGEST_HEARTBEAT_TASK, INGEST_QUEUE, Publisher, make_celery
from hexfleet.children import die_with_parent
from hexfleet.errors import ServiceUnavailable
from hexfleet.messages import DeviceFacts, DeviceHealth, Heartbeat
from hexfleet.settings import Settings

log = logging.getLogger(__name__)
POLL_S = 1.0
RESTART_BACKOFF_S = 5.0
STOP_GRACE_S = 30.0


@dataclass
class WorkerProcess:
    serial: str
    process: subprocess.Popen[bytes]
    started: float = field(default_factory=time.monotonic)
    stopping_since: float | None = None


class Agent:
    def __init__(self, settings: Settings, poll_s: float = POLL_S) -> None:
        self.settings = settings
        self.poll_s = poll_s
        self.client = adbutils.AdbClient(host=settings.adb_host, port=settings.adb_port)
        self.app = make_celery(settings, name="agent")
        self.publisher = Publisher(self.app, settings.outage_wait_s)
        self.host = settings.host_name
        self.workers: dict[str, WorkerProcess] = {}
        self.leaving: list[WorkerProcess] = []  # signalled to stop, not yet exited
        self.stopped = threading.Event()

    def online_serials(self) -> set[str]:
        try:
            return {info.serial for info in self.client.list() if info.state == "device"}
        except (adbutils.AdbError, OSError) as exc:
            raise ServiceUnavailable(
                f"the adb server at {self.settings.adb_host}:{self.settings.adb_port} "
                f"does not answer: {exc}"
            ) from exc

    def start_worker(self, serial: str) -> None:
        log.info("phone %s online: starting its worker", serial)
        # Killed with the agent (SIGKILL: a run in flight is retried by the orchestrator's
        # reconciliation): a restarted agent starts a worker of its own for every phone, and an
        # orphan beside it would drive the same phone at the same time.
        process = subprocess.Popen(  # noqa: S603 - fixed argv; the serial came from adb itself
            [sys.executable, "-m", "hexfleet.device_agent.worker", serial],
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGKILL),  # noqa: PLW1509 - one prctl, no locks
        )
        self.workers[serial] = WorkerProcess(serial, process)

    def release_worker(self, serial: str) -> None:
        """Ask `serial`'s worker to stop (SIGTERM: Celery's warm shutdown) without waiting."""
        worker = self.workers.pop(serial)
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
            worker.stopping_since = time.monotonic()
            self.leaving.append(worker)

    def reap(self) -> None:
        """Forget workers that exited; SIGKILL those still running STOP_GRACE_S after SIGTERM."""
        for worker in list(self.leaving):
            if worker.process.poll() is not None:
                self.leaving.remove(worker)
            elif time.monotonic() - (worker.stopping_since or 0.0) >= STOP_GRACE_S:
                log.warning("worker of %s ignored SIGTERM: killing it", worker.serial)
                worker.process.kill()

    def wait_for_leaving(self) -> None:
        for worker in list(self.leaving):
            try:
                worker.process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            self.leaving.remove(worker)

    def report_offline(self, serial: str) -> None:
        beat = Heartbeat(
            host=self.host,
            facts=DeviceFacts(serial=serial),
            health=DeviceHealth(),
            state="offline",
            sent_at=dt.datetime.now(dt.UTC),
        )
        try:
            # Bounded: the scan must go on (other phones), and a goodbye is only a courtesy.
            self.publisher.send(INGEST_HEARTBEAT_TASK, beat.model_dump_json(), INGEST_QUEUE, 5.0)
        except ServiceUnavailable as exc:
            log.warning("%s not reported offline (%s): its heartbeats stop instead", serial, exc)

    def scan(self) -> None:
        """One look at the adb server: start, stop and restart workers to match it."""
        online = self.online_serials()
        self.reap()
        for serial in sorted(set(self.workers) - online):
            log.info("phone %s gone or offline: stopping its worker", serial)
            self.release_worker(serial)
            self.report_offline(serial)
        for serial in sorted(online):
            worker = self.workers.get(serial)
            if worker is None:
                self.start_worker(serial)
            elif worker.process.poll() is not None:
                if time.monotonic() - worker.started >= RESTART_BACKOFF_S:
                    log.warning(
                        "worker of %s exited (%s): restarting", serial, worker.process.returncode
                    )
                    self.workers.pop(serial)
                    self.start_worker(serial)

    def run(self) -> None:
        """Scan until `stop()` (or SIGINT/SIGTERM through the CLI), then stop every worker."""
        try:
            while not self.stopped.is_set():
                self.scan()
                self.stopped.wait(self.poll_s)
        finally:
            for serial in list(self.workers):
                self.release_worker(serial)
            self.wait_for_leaving()

    def stop(self) -> None:
        self.stopped.set()
