"""The ingest worker: a Celery consumer of the `ingest` queue that writes agents' messages.

Each message is validated into its typed model and written in its own transaction by
`orchestrator.ingest`; a malformed message is logged and dropped (retrying cannot fix it). A
database outage is waited out: the write is tried again with backoff for `outage_wait_s`, then the
message goes back to the queue (late acknowledgement) and the next one waits the same way. The
process also runs the reconciler (orchestrator.reconciliation) in a thread of its own. The result
that ends a validation job's last run also stores the job's verdicts, in the same transaction: a
reader never sees the job settled without them, and nothing computes a report when it is read.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

from celery import Celery
from celery.exceptions import Reject
from pydantic import ValidationError
from sqlalchemy import select, text
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hexfleet.broker import (
    INGEST_HEARTBEAT_TASK,
    INGEST_PROGRESS_TASK,
    INGEST_QUEUE,
    INGEST_RESULT_TASK,
    make_celery,
    queue_depths,
)
from hexfleet.errors import NotFound
from hexfleet.messages import Heartbeat, RunProgress, RunResult
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.engine import make_engine, session_factory
from hexfleet.orchestrator.db.schema import Job, Run
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.orchestrator.ingest import ingest_heartbeat, ingest_result, record_progress
from hexfleet.orchestrator.jobs import Dispatcher
from hexfleet.orchestrator.reconciliation import Reconciler
from hexfleet.orchestrator.reconciliation import from_settings as reconciler_from_settings
from hexfleet.orchestrator.validation.report import store_report, unreported_jobs
from hexfleet.settings import Settings
from hexfleet.states import FINAL_JOB_STATES, JobKind

log = logging.getLogger(__name__)
INGEST_PREFETCH = 64
PER_MESSAGE_LOGGERS = ("celery.worker.strategy", "celery.app.trace")
REPORT_SWEEP_S = 10.0  # how often the worker looks for settled validations without verdicts


def _report(session: Session, job: Job, store: ModelStore) -> bool:
    """Store a settled validation job's verdicts; False (logged) when they cannot be computed.

    A comparison that fails (a model file gone, a reference that will not run) must not lose the
    run's result with it: the verdicts are built before anything is added, so the result still
    commits, and the sweep tries the job again once. Database errors are raised: redelivery
    retries the whole message."""
    try:
        return store_report(session, job, store)
    except SQLAlchemyError:
        raise
    except Exception:
        log.exception("cannot compare validation job %s with its reference", job.id)
        return False


def ingest_result_and_report(
    session: Session, result: RunResult, dispatcher: Dispatcher | None, store: ModelStore
) -> bool:
    """`ingest_result`, then the verdicts of a validation job that this result settled (not
    committed: the caller commits both at once)."""
    stored = ingest_result(session, result, dispatcher)
    if stored:
        job = session.get_one(Run, result.run_id).job  # loaded already by ingest_result
        if job.kind == JobKind.VALIDATE and job.state in FINAL_JOB_STATES:
            _report(session, job, store)
    return stored


def report_unreported(
    sessions: sessionmaker[Session], store: ModelStore, tried: set[str] | None = None
) -> list[str]:
    """Store the verdicts of settled validation jobs that have none (a cancelled job, a worker
    stopped mid-comparison, a comparison that failed); each job is tried once per `tried` set.
    Returns the jobs reported now. A job another worker is comparing is skipped (row lock)."""
    tried = set() if tried is None else tried
    reported = []
    with sessions() as session:
        waiting = [j for j in unreported_jobs(session) if j not in tried]
    for job_id in waiting:
        tried.add(job_id)
        with sessions() as session:
            job = session.scalars(
                select(Job).where(Job.id == job_id).with_for_update(skip_locked=True)
            ).first()
            if job is not None and _report(session, job, store):
                session.commit()
                reported.append(job_id)
    return reported


def _sweep(sessions: sessionmaker[Session], store: ModelStore, stop: threading.Event) -> None:
    tried: set[str] = set()
    while True:
        try:
            for job_id in report_unreported(sessions, store, tried):
                log.info("validation job %s: verdicts stored", job_id)
        except SQLAlchemyError as exc:
            log.warning("validation sweep: %s", exc)  # the database is away: next sweep
        if stop.wait(REPORT_SWEEP_S):
            return


class IngestLag:
    """How late this process writes heartbeats: the newest one written was sent `lag_s()`
    before it was written (0 until one is). The reconciler in the same process takes a phone's
    silence as its heartbeat's age minus this (reconciliation.Hearing)."""

    def __init__(self) -> None:
        self._lag_s = 0.0

    def observe(self, sent_at: dt.datetime) -> None:
        self._lag_s = max(0.0, (dt.datetime.now(dt.UTC) - sent_at).total_seconds())

    def lag_s(self) -> float:
        return self._lag_s


def make_ingest_app(
    settings: Settings,
    sessions: sessionmaker[Session] | None = None,
    store: ModelStore | None = None,
    lag: IngestLag | None = None,
) -> Celery:
    """The orchestrator's Celery app with the three ingest tasks bound to the database (and to
    the model store, for the host reference of validation jobs); `lag` learns how late each
    heartbeat is written."""
    app = make_celery(settings, name="hexfleet-ingest")
    # Ingest is short and idempotent: no reason to fetch one message at a time (prefetch 1
    # throttles kombu's polling transports to one message per polling interval).
    app.conf.worker_prefetch_multiplier = INGEST_PREFETCH
    if sessions is None:
        sessions = session_factory(make_engine(settings.resolved_database_url))
    models = store or ModelStore.from_settings(settings)

    dispatcher = CeleryDispatcher(app, settings.outage_wait_s)

    def _write(kind: str, model: type[Any], body: str, write: Any, durable: bool = True) -> None:
        try:
            message = model.model_validate_json(body)
        except ValidationError as exc:
            log.error("dropping a malformed %s message: %s", kind, exc)
            return
        give_up, pause = time.monotonic() + settings.outage_wait_s, 0.5
        while True:
            try:
                _write_once(kind, message, write, durable)
                return
            except (OperationalError, InterfaceError) as exc:
                if time.monotonic() + pause > give_up:
                    log.error(
                        "database away for %.0f s: %s back to the queue",
                        settings.outage_wait_s,
                        kind,
                    )
                    raise Reject(str(exc), requeue=True) from exc
                log.warning("database away (%s): %s write again in %.1f s", exc, kind, pause)
                time.sleep(pause)
                pause = min(pause * 2, 5.0)

    def _write_once(kind: str, message: Any, write: Any, durable: bool) -> None:
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
            lambda session, message: ingest_result_and_report(session, message, dispatcher, models),
        )

    @app.task(name=INGEST_PROGRESS_TASK, shared=False)
    def progress(body: str) -> None:
        _write("progress", RunProgress, body, record_progress, durable=False)

    def _heartbeat(session: Session, beat: Heartbeat) -> None:
        ingest_heartbeat(session, beat)
        if lag is not None:
            lag.observe(beat.sent_at)

    @app.task(name=INGEST_HEARTBEAT_TASK, shared=False)
    def heartbeat(body: str) -> None:
        _write("heartbeat", Heartbeat, body, _heartbeat, durable=False)

    return app


def run_ingest_worker(settings: Settings) -> None:
    """Consume the ingest queue until interrupted (`hexfleet serve` runs this, in a process of
    its own).

    One writer thread beside the consumer: while a write waits on the database, the consumer
    fetches and acknowledges (the solo pool, which writes in the consumer's thread, ingested 12 %
    fewer results per second in bench/farm_overhead.py). Celery's two INFO lines per message
    (received, succeeded) are left out; hexfleet's own INFO lines stay. A sweep thread stores the
    verdicts of settled validation jobs that have none (at start, then every REPORT_SWEEP_S)."""
    for name in PER_MESSAGE_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    sessions = session_factory(make_engine(settings.resolved_database_url))
    store = ModelStore.from_settings(settings)
    lag = IngestLag()
    app = make_ingest_app(settings, sessions, store, lag)
    stop = threading.Event()
    sweep = threading.Thread(
        target=_sweep, args=(sessions, store, stop), name="validation-sweep", daemon=True
    )
    sweep.start()
    reconciler = start_reconciler(settings, sessions, lag)
    try:
        app.Worker(
            queues=[INGEST_QUEUE],
            concurrency=1,
            pool="threads",
            loglevel="INFO",
            hostname="ingest@%h",
            # Neither is used, and both publish on broker reconnects (fewer ways to fail there).
            without_mingle=True,
            without_gossip=True,
        ).start()
    finally:
        stop.set()
        reconciler.stop()


def start_reconciler(
    settings: Settings, sessions: sessionmaker[Session], lag: IngestLag | None = None
) -> Reconciler:
    """The reconciler thread, with a dispatcher (a broker connection) of its own."""
    dispatcher = CeleryDispatcher(make_celery(settings, name="reconciler"), settings.outage_wait_s)
    return reconciler_from_settings(
        settings,
        sessions,
        dispatcher,
        lambda queues: queue_depths(settings, queues),
        lag.lag_s if lag is not None else None,
    ).start()
