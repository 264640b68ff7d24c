"""Handing stored runs to the broker: one Celery task per run attempt, its id the run's id."""

from __future__ import annotations

from collections.abc import Sequence

from celery import Celery

from device_agent.messages import RunTask
from hexfleet.broker import RUN_TASK


class CeleryDispatcher:
    """Sends `hexfleet.run` tasks to queues and revokes them by run id."""

    def __init__(self, app: Celery) -> None:
        self.app = app

    def send(self, task: RunTask, queue: str, priority: int) -> None:
        """Queue `task`; `priority` 9 is the most urgent (Celery counts the other way)."""
        self.app.send_task(
            RUN_TASK,
            args=[task.model_dump_json()],
            queue=queue,
            priority=9 - priority,
            task_id=f"{task.run_id}.{task.attempt}",
        )

    def revoke(self, run_ids: Sequence[str]) -> None:
        if run_ids:
            self.app.control.revoke([f"{run_id}.{n}" for run_id in run_ids for n in range(1, 4)])
