"""Handing stored runs to the broker: one Celery task per run attempt, its id the run's id."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from celery import Celery
from kombu import Connection

from hexfleet.broker import RUN_TASK
from hexfleet.messages import RunTask


class CeleryDispatcher:
    """Sends `hexfleet.run` tasks to queues and revokes them by run id."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._local = threading.local()

    def send(self, task: RunTask, queue: str, priority: int) -> None:
        """Queue `task`; `priority` 9 is the most urgent (Celery counts the other way).

        One connection per calling thread, kept for its later sends, used under a lock: the API
        calls this from many threads, and some transports (the embedded filesystem one) do not
        share channels across threads. A new connection for every send (connect, ping, declare
        the queue again) made dispatch most of the cost of submitting a large job.
        """
        with self._lock:
            self._send(task, queue, priority, self._connection())

    def _connection(self) -> Connection:
        """This thread's connection; kombu re-establishes it if the broker dropped it."""
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self.app.connection_for_write()
        return connection

    def _send(self, task: RunTask, queue: str, priority: int, connection: object) -> None:
        self.app.send_task(
            RUN_TASK,
            args=[task.model_dump_json()],
            queue=queue,
            priority=9 - priority,
            task_id=f"{task.run_id}.{task.attempt}",
            connection=connection,
        )

    def revoke(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            self.app.control.revoke([f"{run_id}.{n}" for run_id in run_ids for n in range(1, 4)])
