"""One phone's Celery worker: consumes its own queue and its capability queues, one run at a time.

Started by the agent as `python -m device_agent.worker SERIAL` for every online phone. Prefetch 1:
a busy phone never hoards work. A run's message is acknowledged when the run starts; a run whose
worker dies is retried by the orchestrator's reconciliation, which notices the phone's heartbeats
no longer name it. After a run ends with the phone lost, the worker stops: the agent starts a new
one when the phone is back. It also sends the phone's heartbeat (facts, health, current run,
idle/busy/throttled) every few seconds, through broker outages (hexfleet.broker.Publisher).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

import adbutils
import httpx
from celery import Celery
from kombu.exceptions import KombuError

from hexfleet.broker import (
    INGEST_HEARTBEAT_TASK,
    INGEST_PROGRESS_TASK,
    INGEST_QUEUE,
    INGEST_RESULT_TASK,
    RUN_TASK,
    RUN_TASK_OPTIONS,
    Publisher,
    make_celery,
    queues_for_device,
)
from hexfleet.device_agent.execution import Executor, ThermalGate
from hexfleet.device_agent.host_cache import HostCache
from hexfleet.device_agent.phone import Phone
from hexfleet.device_agent.push import ArtifactPusher
from hexfleet.errors import DeviceLost, HexfleetError
from hexfleet.messages import DeviceFacts, Heartbeat, RunProgress, RunResult, RunTask
from hexfleet.runner_spec import JOBS_DIR
from hexfleet.settings import Settings
from hexfleet.states import PhoneState, RunState

log = logging.getLogger(__name__)
HEARTBEAT_S = 3.0
CANCEL_POLL_S = 2.0
PROGRESS_FLUSH_S = 10.0
HEARTBEAT_BACKOFF_MAX_S = 10.0
STILL_WANTED = frozenset({RunState.QUEUED, RunState.RUNNING})


class Errands:
    """A background thread for work a run must not wait for. In order, one at a time; a failed
    errand is logged."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    def __call__(self, errand: Callable[[], object]) -> Future[None]:
        return self._pool.submit(self._do, errand)

    @staticmethod
    def _do(errand: Callable[[], object]) -> None:
        try:
            errand()
        except (HexfleetError, OSError, KombuError, httpx.HTTPError) as exc:
            log.warning("background errand failed: %s", exc)

    def drain(self) -> None:
        """Wait until every errand submitted so far is done."""
        self._pool.submit(lambda: None).result()


class CancelWatch:
    """Whether a run was cancelled, asked of the orchestrator in the background at most every
    CANCEL_POLL_S while the run is current: the run never waits on the HTTP round trip.

    The first question for a run goes out as soon as it is asked; a run cancelled while it was
    queued may therefore start, and is stopped on the phone moments later (reported cancelled).
    """

    def __init__(self, settings: Settings) -> None:
        token = settings.client_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=settings.api_url, headers=headers, timeout=5)
        self.errands = Errands("cancel-checks")
        self._run: str | None = None
        self._asked = 0.0
        self._pending = False
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, run_id: str) -> bool:
        with self._lock:
            if run_id in self._cancelled:
                return True
            if run_id != self._run:
                self._run, self._asked, self._pending = run_id, 0.0, False
            due = time.monotonic() - self._asked >= CANCEL_POLL_S
            if due and not self._pending:
                self._pending, self._asked = True, time.monotonic()
                self.errands(lambda: self._ask(run_id))
        return False

    def _ask(self, run_id: str) -> None:
        try:
            response = self.http.get(f"/api/v1/runs/{run_id}/state")
        finally:
            with self._lock:
                self._pending = False
        # Not queued or running any more: cancelled, or an attempt the orchestrator superseded
        # (its message came back after reconciliation sent the run again).
        if response.status_code == 200 and response.json().get("state") not in STILL_WANTED:
            with self._lock:
                self._cancelled.add(run_id)


class PhoneWorker:
    """Everything one phone's worker process holds: the phone, its executor, its Celery app."""

    def __init__(self, settings: Settings, serial: str) -> None:
        self.settings = settings
        self.host = settings.host_name
        client = adbutils.AdbClient(host=settings.adb_host, port=settings.adb_port)
        self.phone = Phone(client.device(serial))
        self.facts: DeviceFacts = self.phone.facts()
        self.app: Celery = make_celery(settings, name=f"phone-{serial}")
        self.publisher = Publisher(self.app, settings.outage_wait_s)
        self.current_run: str | None = None
        self.stopping = threading.Event()
        # Three background threads, so nothing slow holds up what a run's result waits for:
        # progress messages (`errands`), the phone's cache touches and folder removal
        # (`chores`, adb), the cancel checks (HTTP, in CancelWatch).
        self.errands = Errands("progress")
        self.chores = Errands("adb-chores")
        self._progress_sent: Future[None] | None = None
        cache = HostCache(
            settings.data_dir / "agent-cache",
            settings.api_url,
            settings.client_token(),
            settings.outage_wait_s,
        )
        self.executor = Executor(
            self.phone,
            ArtifactPusher(
                self.phone, cache, settings.agent_cache_quota_bytes, background=self.chores
            ),
            host=self.host,
            htp_arch=self.facts.htp_arch,
            on_progress=self.publish_progress,
            cancelled=CancelWatch(settings),
            thermal=ThermalGate.from_settings(settings),
            background=self.chores,
            abi=self.facts.abi,
        )
        self.app.task(name=RUN_TASK, shared=False, **RUN_TASK_OPTIONS)(self.run)

    def publish(self, task: str, body: str, wait_s: float | None = None) -> None:
        self.publisher.send(task, body, INGEST_QUEUE, wait_s)

    def publish_progress(self, progress: RunProgress) -> None:
        body = progress.model_dump_json()
        self._progress_sent = self.errands(lambda: self.publish(INGEST_PROGRESS_TASK, body))

    def publish_result(self, result: RunResult) -> None:
        """After the run's progress (the ingest drops progress that comes after a result)."""
        if self._progress_sent is not None:
            wait([self._progress_sent], timeout=PROGRESS_FLUSH_S)
            self._progress_sent = None
        self.publish(INGEST_RESULT_TASK, result.model_dump_json())

    def heartbeat(self, wait_s: float | None = None) -> None:
        """Report the phone: facts, a fresh health reading, idle/busy/throttled."""
        try:
            health = self.phone.health()
        except DeviceLost:
            return
        busy = PhoneState.BUSY if self.current_run else PhoneState.IDLE
        beat = Heartbeat(
            host=self.host,
            facts=self.facts,
            health=health,
            state=PhoneState.THROTTLED if health.throttled else busy,
            current_run_id=self.current_run,
            sent_at=dt.datetime.now(dt.UTC),
        )
        self.publish(INGEST_HEARTBEAT_TASK, beat.model_dump_json(), wait_s)

    def run(self, body: str) -> str:
        """The `hexfleet.run` task: run on this phone, publish the result, return the outcome."""
        task = RunTask.model_validate_json(body)
        if self.executor.cancelled(task.run_id):
            log.info("run %s was cancelled before it started", task.run_id)
            return "cancelled"
        # No heartbeat around the run: the ingest marks the phone busy on the run's first
        # progress and idle on its result, two messages fewer per run.
        self.current_run = task.run_id
        try:
            result = self.executor.execute(task)
        finally:
            self.current_run = None
        result = result.model_copy(
            update={
                "metrics": {
                    **result.metrics,
                    "soc": self.facts.soc,
                    "phone_model": self.facts.model,
                }
            }
        )
        self.publish_result(result)
        log.info(
            "run %s attempt %d on %s: %s",
            task.run_id,
            task.attempt,
            self.phone.serial,
            result.outcome,
        )
        if result.outcome == "lost":
            self.stop_soon()
        return result.outcome

    def stop_soon(self) -> None:
        """Stop consuming after the current task is acknowledged (the phone is gone)."""
        self.stopping.set()
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    def beat_forever(self) -> None:
        """Every HEARTBEAT_S, busy or not: the fleet view's temperature and battery stay live
        during long runs. A beat the broker does not take is logged and the next one comes later
        (up to HEARTBEAT_BACKOFF_MAX_S apart while it stays away): the thread never dies of it."""
        pause = HEARTBEAT_S
        while not self.stopping.wait(pause):
            try:
                # A beat is stale seconds later: do not hold the next one for a long retry.
                self.heartbeat(wait_s=HEARTBEAT_S)
            except (HexfleetError, OSError) as exc:  # the broker away (ServiceUnavailable), adb
                pause = min(pause * 2, HEARTBEAT_BACKOFF_MAX_S)
                log.warning(
                    "heartbeat of %s not sent (%s): next in %.0f s", self.phone.serial, exc, pause
                )
            else:
                pause = HEARTBEAT_S

    def serve(self) -> None:
        # Runs lost with a previous worker (phone gone mid-run) leave their folders: sweep them.
        self.phone.remove(JOBS_DIR)
        self.heartbeat()
        threading.Thread(target=self.beat_forever, name="heartbeat", daemon=True).start()
        queues = queues_for_device(self.facts.model_dump())
        self.app.Worker(
            queues=queues,
            concurrency=1,
            pool="solo",
            prefetch_multiplier=1,
            hostname=f"phone-{self.phone.serial}@{self.host}",
            loglevel="WARNING",
            without_mingle=True,
            without_gossip=True,
        ).start()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m hexfleet.device_agent.worker SERIAL", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        worker = PhoneWorker(Settings(), argv[0])
    except DeviceLost as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return 3
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
