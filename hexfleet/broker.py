"""The Celery application both sides share: broker settings, task names, delivery guarantees.

The orchestrator sends `hexfleet.run` tasks to device queues and consumes `hexfleet.ingest.*`
from the `ingest` queue; the agent does the reverse. Tasks are addressed by name, so neither side
imports the other's code.
Late acknowledgement + prefetch 1: a busy phone never hoards work and a task whose worker dies is
delivered again; the visibility timeout sits above the longest run deadline (FACTS.md).
"""

from __future__ import annotations

from celery import Celery

from hexfleet.settings import Settings

RUN_TASK = "hexfleet.run"
INGEST_RESULT_TASK = "hexfleet.ingest.result"
INGEST_PROGRESS_TASK = "hexfleet.ingest.progress"
INGEST_HEARTBEAT_TASK = "hexfleet.ingest.heartbeat"
INGEST_QUEUE = "ingest"
MAX_RUN_DEADLINE_S = 6 * 3600


def make_celery(settings: Settings, name: str = "hexfleet") -> Celery:
    app = Celery(name, broker=settings.resolved_broker_url)
    options = dict(settings.broker_transport_options())
    if settings.resolved_broker_url.startswith(("redis://", "rediss://")):
        options["visibility_timeout"] = MAX_RUN_DEADLINE_S + 600
    app.conf.update(
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_default_queue="any",
        task_routes={"hexfleet.ingest.*": {"queue": INGEST_QUEUE}},
        worker_hijack_root_logger=False,
    )
    return app
