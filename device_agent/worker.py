"""One phone's Celery worker: consumes its own queue and its capability queues, one run at a time.

Started by the agent as `python -m device_agent.worker SERIAL` for every online phone. Prefetch 1
and late acknowledgement: a busy phone never hoards work, and a run whose worker dies is delivered
again. After a run ends with the phone lost, the worker stops: the agent starts a new one when the
phone is back. It also sends the phone's heartbeat (facts, health, busy/online) every few seconds.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import threading
import time

import adbutils
import httpx
from celery import Celery

from device_agent.execution import Executor, ThermalGate
from device_agent.host_cache import HostCache
from device_agent.messages import DeviceFacts, DeviceHealth, Heartbeat, RunProgress, RunTask
from device_agent.phone import Phone
from device_agent.push import ArtifactPusher
from device_agent.runner.spec import JOBS_DIR
from hexfleet.broker import (
    INGEST_HEARTBEAT_TASK,
    INGEST_PROGRESS_TASK,
    INGEST_QUEUE,
    INGEST_RESULT_TASK,
    RUN_TASK,
    make_celery,
    queues_for_device,
)
from hexfleet.errors import DeviceLost
from hexfleet.settings import Settings

log = logging.getLogger(__name__)
HEARTBEAT_S = 3.0
CANCEL_POLL_S = 2.0


class CancelWatch:
    """Asks the orchestrator, at most every CANCEL_POLL_S, whether a run was cancelled."""

    def __init__(self, settings: Settings) -> None:
        token = settings.client_token()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=settings.api_url, headers=headers, timeout=5)
        self._checked: dict[str, float] = {}
        self._cancelled: set[str] = set()

    def __call__(self, run_id: str) -> bool:
        if run_id in self._cancelled:
            return True
        last = self._checked.get(run_id)
        if last is not None and time.monotonic() - last < CANCEL_POLL_S:
            return False
        if last is None:
            self._checked.clear()
        self._checked[run_id] = time.monotonic()
        try:
            response = self.http.get(f"/api/v1/runs/{run_id}")
        except httpx.TransportError:
            return False
        if response.status_code == 200 and response.json().get("state") == "cancelled":
            self._cancelled.add(run_id)
        return run_id in self._cancelled


class PhoneWorker:
    """Everything one phone's worker process holds: the phone, its executor, its Celery app."""

    def __init__(self, settings: Settings, serial: str) -> None:
        self.settings = settings
        self.host = settings.host_name
        client = adbutils.AdbClient(host=settings.adb_host, port=settings.adb_port)
        self.phone = Phone(client.device(serial))
        self.facts: DeviceFacts = self.phone.facts()
        self.app: Celery = make_celery(settings, name=f"phone-{serial}")
        self.current_run: str | None = None
        self._health: DeviceHealth | None = None
        self.stopping = threading.Event()
        cache = HostCache(
            settings.data_dir / "agent-cache", settings.api_url, settings.client_token()
        )
        self.executor = Executor(
            self.phone,
            ArtifactPusher(self.phone, cache, settings.agent_cache_quota_bytes),
            host=self.host,
            htp_arch=self.facts.htp_arch,
            on_progress=self.publish_progress,
            cancelled=CancelWatch(settings),
            thermal=ThermalGate.from_settings(settings),
        )
        self.app.task(name=RUN_TASK, shared=False)(self.run)

    def publish(self, task: str, body: str) -> None:
        self.app.send_task(task, args=[body], queue=INGEST_QUEUE)

    def publish_progress(self, progress: RunProgress) -> None:
        self.publish(INGEST_PROGRESS_TASK, progress.model_dump_json())

    def heartbeat(self, state: str | None = None, fresh: bool = True) -> None:
        """Report the phone; `fresh=False` (around runs) reuses the last health reading."""
        if fresh or self._health is None:
            try:
                self._health = self.phone.health()
            except DeviceLost:
                return
        health = self._health
        busy = "busy" if self.current_run else "online"
        beat = Heartbeat(
            host=self.host,
            facts=self.facts,
            health=health,
            state=state or ("throttled" if health.throttled else busy),
            current_run_id=self.current_run,
            sent_at=dt.datetime.now(dt.UTC),
        )
        self.publish(INGEST_HEARTBEAT_TASK, beat.model_dump_json())

    def run(self, body: str) -> str:
        """The `hexfleet.run` task: run on this phone, publish the result, return the outcome."""
        task = RunTask.model_validate_json(body)
        if self.executor.cancelled(task.run_id):
            log.info("run %s was cancelled before it started", task.run_id)
            return "cancelled"
        self.current_run = task.run_id
        self.heartbeat("busy", fresh=False)
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
        self.publish(INGEST_RESULT_TASK, result.model_dump_json())
        log.info(
            "run %s attempt %d on %s: %s",
            task.run_id,
            task.attempt,
            self.phone.serial,
            result.outcome,
        )
        if result.outcome == "lost":
            self.stop_soon()
        else:
            self.heartbeat(fresh=False)
        return result.outcome

    def stop_soon(self) -> None:
        """Stop consuming after the current task is acknowledged (the phone is gone)."""
        self.stopping.set()
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()

    def beat_forever(self) -> None:
        while not self.stopping.wait(HEARTBEAT_S):
            if self.current_run is None:
                self.heartbeat()

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
        print("usage: python -m device_agent.worker SERIAL", file=sys.stderr)
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
