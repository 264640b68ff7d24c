"""Handing stored runs to the broker: one Celery task per run attempt, its id the run's id."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from celery import Celery

from hexfleet.broker import RUN_TASK, Publisher
from hexfleet.messages import RunTask


class CeleryDispatcher:
    """Sends `hexfleet.run` tasks to queues and revokes them by run id."""

    def __init__(self, app: Celery, outage_wait_s: float = 60.0) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._publisher = Publisher(app, outage_wait_s)

    def send(self, task: RunTask, queue: str, priority: int) -> None:
        """Queue `task`; `priority` 9 is the most urgent (Celery counts the other way).

        One connection per calling thread, kept for its later sends, used under a lock: the API
        calls this from many threads, and some transports (the embedded filesystem one) do not
        share channels across threads. A new connection for every send (connect, ping, declare
        the queue again) made dispatch most of the cost of submitting a large job. While the
        broker is away it retries for `outage_wait_s` (then ServiceUnavailable); a run whose
        send failed after it was stored is sent again by reconciliation.
        """
        with self._lock:
            self._publisher.send(
                RUN_TASK,
                task.model_dump_json(),
                queue,
                priority=9 - priority,
                task_id=f"{task.run_id}.{task.attempt}",
            )

    def revoke(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            self.app.control.revoke([f"{run_id}.{n}" for run_id in run_ids for n in range(1, 4)])
