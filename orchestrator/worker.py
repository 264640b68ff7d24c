"""The ingest worker: a Celery consumer of the `ingest` queue that writes agents' messages.

Each message is validated into its typed model and written in its own transaction by
`orchestrator.ingest`; a malformed message is logged and dropped (retrying cannot fix it), a
database outage is retried by redelivery (late acknowledgement).
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from hexfleet.broker import (
    INGEST_HEARTBEAT_TASK,
    INGEST_PROGRESS_TASK,
    INGEST_QUEUE,
    INGEST_RESULT_TASK,
    make_celery,
)
from hexfleet.errors import NotFound
from hexfleet.messages import Heartbeat, RunProgress, RunResult
from hexfleet.orchestrator.db.engine import make_engine, session_factory
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.orchestrator.ingest import ingest_heartbeat, ingest_result, record_progress
from hexfleet.settings import Settings

log = logging.getLogger(__name__)
INGEST_PREFETCH = 64
PER_MESSAGE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


def make_ingest_app(settings: Settings, sessions: sessionmaker[Session] | None = None) -> Celery:
    """The orchestrator's Celery app with the three ingest tasks bound to the database."""
    app = make_celery(settings, name="hexfleet-ingest")
    # Ingest is short and idempotent: no reason to fetch one message at a time (prefetch 1
    # throttles kombu's polling transports to one message per polling interval).
    app.conf.worker_prefetch_multiplier = INGEST_PREFETCH
    if sessions is None:
        sessions = session_factory(make_engine(settings.resolved_database_url))

    dispatcher = CeleryDispatcher(app)

    def _write(kind: str, model: type[Any], body: str, write: Any, durable: bool = True) -> None:
        try:
            message = model.model_validate_json(body)
        except ValidationError as exc:
            log.error("dropping a malformed %s message: %s", kind, exc)
            return
        with sessions() as session:
            if not durable and session.get_bind().dialect.name == "postgresql":
                # Progress and heartbeats are superseded seconds later: no need to wait for
                # their commit to reach the disk (a crash loses at most the latest few).
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
            try:
                write(session, message)
            except NotFound as exc:
                log.warning("dropping a %s message: %s", kind, exc)
                return
            session.commit()

    @app.task(name=INGEST_RESULT_TASK, shared=False)
    def result(body: str) -> None:
        _write(
            "result",
            RunResult,
            body,
            lambda session, message: ingest_result(session, message, dispatcher),
        )

    @app.task(name=INGEST_PROGRESS_TASK, shared=False)
    def progress(body: str) -> None:
        _write("progress", RunProgress, body, record_progress, durable=False)

    @app.task(name=INGEST_HEARTBEAT_TASK, shared=False)
    def heartbeat(body: str) -> None:
        _write("heartbeat", Heartbeat, body, ingest_heartbeat, durable=False)

    return app


def run_ingest_worker(settings: Settings) -> None:
    """Consume the ingest queue until interrupted (`hexfleet serve` runs this, in a process of
    its own).

    One writer thread beside the consumer: while a write waits on the database, the consumer
    fetches and acknowledges (the solo pool, which writes in the consumer's thread, ingested 12 %
    fewer results per second in bench/farm_overhead.py). Celery's two INFO lines per message
    (received, succeeded) are left out; hexfleet's own INFO lines stay."""
    for name in PER_MESSAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    app = make_ingest_app(settings)
    app.Worker(
        queues=[INGEST_QUEUE],
        concurrency=1,
        pool="threads",
        loglevel="INFO",
        hostname="ingest@%h",
    ).start()
