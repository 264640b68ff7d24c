"""Reconciliation: the database is the farm's truth; this makes it agree with the phones and broker.

Every few seconds (`Reconciler`, run by the ingest process) `reconcile_once` looks at unfinished
runs and ends the attempts nobody works on any more:

- a *running* attempt whose phone sent no heartbeat for `silence_s`, whose phone's heartbeats
  named another run (or none) `grace_s` after the attempt started, or which outlived its deadline
  by `deadline_margin_s`, is marked lost with the reason and retried on another eligible phone
  (`jobs.retry_lost`, under the retry limit); with no retry left it is failed with the reason;
- a *queued* attempt whose broker message is gone (a broker restarted without persistence, a
  flushed queue) is sent again as a new attempt on the same queue once it has been missing for
  `queued_s`. "Missing" is counted per queue: when a queue holds fewer messages than it has
  queued runs, the oldest of those are the missing ones (a queue is first in, first out). A
  count is a snapshot: a phone takes its queue's oldest message seconds before its heartbeat
  names the run, and a finished run stays queued until its result is ingested, so the oldest run
  of a long queue is often "missing" for a moment. Only a run counted missing in every pass for
  `queued_s` is sent again (the reconciler remembers since when, `missing_since`). A queued
  attempt pinned to a phone silent for `silence_s` is retried on another phone instead.

A superseded attempt's message that turns up after all is stopped by its agent (it asks the
run's state and stops a run that is no longer queued or running), and its late result is kept
on its own row without being counted (orchestrator.ingest). Every change is a conditional update
(`WHERE state = <what we saw>`), so two reconcilers never both retry a run; on PostgreSQL an
advisory lock also keeps a second one from doing the work at all.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import redis
from kombu.exceptions import KombuError
from sqlalchemy import select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from hexfleet.errors import HexfleetError
from hexfleet.messages import RunTask
from hexfleet.orchestrator.db.schema import Device, Run
from hexfleet.orchestrator.ingest import settle_job
from hexfleet.orchestrator.jobs import Dispatcher, retry_lost, send_attempt, why_not_retried
from hexfleet.orchestrator.presence import heartbeat_age_s
from hexfleet.orchestrator.scheduler import RETRY_LIMIT
from hexfleet.settings import Settings
from hexfleet.states import FINAL_JOB_STATES, PhoneState, RunState

log = logging.getLogger(__name__)

# pg_try_advisory_xact_lock's key: any constant no other hexfleet lock uses ("hexrecon").
ADVISORY_LOCK_KEY = 0x6865787265636F6E

QueueDepths = Callable[[Iterable[str]], Mapping[str, int]]


@dataclass(frozen=True)
class Bounds:
    """How long the reconciler waits before it decides (seconds; HEXFLEET_RECONCILE_*)."""

    silence_s: float = 60.0
    grace_s: float = 30.0
    deadline_margin_s: float = 120.0
    queued_s: float = 120.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Bounds:
        return cls(
            silence_s=settings.reconcile_silence_s,
            grace_s=settings.reconcile_grace_s,
            deadline_margin_s=settings.reconcile_deadline_margin_s,
            queued_s=settings.reconcile_queued_s,
        )


@dataclass
class Summary:
    """What one pass did: run ids by what happened to them, and why."""

    lost: dict[str, str] = field(default_factory=dict)  # attempt id -> reason
    retried: dict[str, str] = field(default_factory=dict)  # old attempt id -> new attempt id
    resent: dict[str, str] = field(default_factory=dict)  # old attempt id -> new attempt id
    failed: dict[str, str] = field(default_factory=dict)  # attempt id -> reason
    skipped: bool = False  # another reconciler holds the lock

    @property
    def changed(self) -> bool:
        return bool(self.lost or self.resent or self.failed)


class _AfterCommit:
    """A dispatcher that holds sends until the pass is committed, so no message ever names an
    attempt the database does not have. A send that fails then leaves its attempt queued with no
    message: the next passes find it as a lost message and send it again."""

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.held: list[tuple[RunTask, str, int]] = []

    def send(self, task: RunTask, queue: str, priority: int) -> None:
        self.held.append((task, queue, priority))

    def revoke(self, run_ids: Sequence[str]) -> None:
        self.dispatcher.revoke(run_ids)

    def flush(self) -> None:
        while self.held:
            self.dispatcher.send(*self.held[0])
            self.held.pop(0)


def _locked_elsewhere(session: Session) -> bool:
    """Take the reconciler's lock for this transaction; True if another process holds it."""
    if session.get_bind().dialect.name != "postgresql":
        return False  # SQLite has one writer at a time; the conditional updates suffice
    taken = session.scalar(
        text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
    )
    return not taken


def _age_s(since: dt.datetime | None, now: dt.datetime) -> float:
    return (now - since).total_seconds() if since is not None else 0.0


@dataclass(frozen=True)
class Hearing:
    """How far the reconciler can trust a phone's silence: `lag_s`, how late the ingest writes
    heartbeats right now (the newest one written was sent that long before it was written),
    and `since`, when this reconciler's process started listening (None: long ago).

    A phone is silent only for the time the ingest was listening and caught up: an ingest
    behind by 12 s under load, or one started a moment ago with the queue's backlog still to
    write, is not a fleet of silent phones (found in the chaos suite: 114 runs of a fault-free
    storm lost to phones "silent for 20 s" while the ingest was 200 messages behind).
    """

    lag_s: float = 0.0
    since: dt.datetime | None = None

    def silence_s(self, device: Device, now: dt.datetime) -> float:
        silent = heartbeat_age_s(device, now) - self.lag_s
        if self.since is not None:
            silent = min(silent, _age_s(self.since, now))
        return max(0.0, silent)


def why_running_is_lost(
    run: Run,
    device: Device | None,
    now: dt.datetime,
    bounds: Bounds,
    hearing: Hearing | None = None,
) -> str | None:
    """The reason a running attempt is no longer being worked on, or None while it may be."""
    hearing = hearing or Hearing()
    running_for = _age_s(run.started_at, now)
    if run.deadline_s + bounds.deadline_margin_s < running_for:
        return (
            f"no result {running_for - run.deadline_s:.0f} s after its deadline "
            f"({run.deadline_s:.0f} s)"
        )
    if device is None:
        if running_for > bounds.silence_s:
            return f"its phone {run.device_serial} is not known to the farm"
        return None
    silent = hearing.silence_s(device, now)
    if silent > bounds.silence_s and running_for > bounds.silence_s:
        return f"phone {device.serial} sent no heartbeat for {silent:.0f} s"
    # A heartbeat composed `grace_s` after the run started that names something else: the phone
    # is no longer on it (its worker restarted, its agent reported it offline...).
    composed_after = _age_s(run.started_at, device.last_seen)
    if device.current_run_id != run.id and composed_after > bounds.grace_s:
        doing = (
            "offline"
            if device.state == PhoneState.OFFLINE
            else f"running {device.current_run_id}"
            if device.current_run_id
            else "running nothing"
        )
        return (
            f"phone {device.serial} reported {doing} {composed_after:.0f} s after this run started"
        )
    return None


def _end_attempt(
    session: Session, run: Run, seen: str, state: RunState, reason: str, now: dt.datetime
) -> bool:
    """Set `run` final if it is still in state `seen`; False when someone else moved it first."""
    moved = session.execute(
        update(Run)
        .where(Run.id == run.id, Run.state == seen)
        .values(state=state, reason=reason, finished_at=now)
        .execution_options(synchronize_session=False)
    )
    session.refresh(run)
    return moved.rowcount == 1


def _lose(
    session: Session,
    run: Run,
    seen: str,
    reason: str,
    now: dt.datetime,
    dispatcher: Dispatcher,
    summary: Summary,
) -> None:
    """Mark an attempt lost and retry it elsewhere; fail it when no retry is possible."""
    if not _end_attempt(session, run, seen, RunState.LOST, reason, now):
        return
    device = session.get(Device, run.device_serial) if run.device_serial else None
    if device is not None and device.current_run_id == run.id:
        device.current_run_id = None
    summary.lost[run.id] = reason
    try:
        retry = retry_lost(session, run, dispatcher)
    except (ValueError, HexfleetError) as exc:  # a job stored before its spec's rules changed
        retry, why_not = None, f"its job cannot be sent again ({exc})"
    else:
        why_not = why_not_retried(run)
    if retry is not None:
        summary.retried[run.id] = retry.id
        log.warning(
            "run %s attempt %d lost (%s): retried as %s", run.id, run.attempt, reason, retry.id
        )
        return
    run.state = RunState.FAILED
    run.reason = f"{reason}; not retried: {why_not}"
    summary.failed[run.id] = run.reason
    log.warning("run %s attempt %d failed: %s", run.id, run.attempt, run.reason)


def _resend(
    session: Session, run: Run, now: dt.datetime, dispatcher: Dispatcher, summary: Summary
) -> None:
    """Send a queued attempt whose message is gone again, as the slot's next attempt."""
    reason = (
        f"its broker message was not in queue {run.queue} {_age_s(run.created_at, now):.0f} s "
        "after it was sent"
    )
    if run.attempt > RETRY_LIMIT:
        if _end_attempt(session, run, RunState.QUEUED, RunState.FAILED, reason, now):
            run.reason = f"{reason}; not sent again: retry limit ({RETRY_LIMIT}) reached"
            summary.failed[run.id] = run.reason
        return
    if not _end_attempt(session, run, RunState.QUEUED, RunState.LOST, reason, now):
        return
    summary.lost[run.id] = reason
    try:
        again = send_attempt(session, run, run.queue, run.device_serial, dispatcher)
        why_not = "its model is no longer registered"
    except (ValueError, HexfleetError) as exc:
        again, why_not = None, f"its job cannot be sent again ({exc})"
    if again is None:
        run.state = RunState.FAILED
        run.reason = f"{reason}; not sent again: {why_not}"
        summary.failed[run.id] = run.reason
        return
    summary.resent[run.id] = again.id
    log.warning("run %s attempt %d: %s; sent again as %s", run.id, run.attempt, reason, again.id)


def _missing_messages(queued: list[Run], depths: Mapping[str, int]) -> list[Run]:
    """The queued attempts whose messages are not in the broker right now.

    Per queue: it holds `depth` messages; its runs beyond that many (oldest first, as the broker
    hands them out) have no message waiting to be delivered.
    """
    by_queue: dict[str, list[Run]] = {}
    for run in sorted(queued, key=lambda r: (r.created_at, r.id)):
        by_queue.setdefault(run.queue, []).append(run)
    missing = []
    for queue, runs in by_queue.items():
        # The newest `depth` runs may be the ones whose messages the queue still holds.
        keep = depths.get(queue, 0)
        missing += runs[: max(0, len(runs) - keep)]
    return missing


def _missing_for_long(
    queued: list[Run],
    depths: Mapping[str, int],
    now: dt.datetime,
    bounds: Bounds,
    missing_since: dict[str, dt.datetime],
    hearing: Hearing,
) -> list[Run]:
    """The queued attempts counted missing in every pass for `queued_s` plus the ingest's lag
    (and queued that long).

    `missing_since` (run id -> first pass that counted it missing) is updated in place: a run
    counted present again, or no longer queued, is forgotten.
    """
    missing = _missing_messages(queued, depths)
    now_missing = {r.id for r in missing}
    for run_id in [r for r in missing_since if r not in now_missing]:
        del missing_since[run_id]
    for run in missing:
        missing_since.setdefault(run.id, now)
    # What the database says lags the broker by the ingest's lag: a run a phone took (or
    # finished) that long ago may still look queued.
    wait_s = bounds.queued_s + hearing.lag_s
    return [
        r
        for r in missing
        if _age_s(missing_since[r.id], now) >= wait_s and _age_s(r.created_at, now) > wait_s
    ]


def reconcile_once(
    session: Session,
    dispatcher: Dispatcher,
    now: dt.datetime,
    bounds: Bounds,
    depths: QueueDepths | None = None,
    missing_since: dict[str, dt.datetime] | None = None,
    hearing: Hearing | None = None,
) -> Summary:
    """One pass over unfinished runs (see the module docstring); commits what it changed.

    New attempts are sent after the commit (a message never names an attempt that is not
    stored). `depths` tells how many messages wait on each queue; without it (or when the broker
    does not answer) queued runs are left alone this pass: a message cannot be called lost
    unseen. `missing_since` is the caller's memory of which queued runs earlier passes counted
    missing, and since when (a fresh one each call when not given: nothing is sent again then).
    `hearing` corrects phones' silence for the ingest's lag (see Hearing).
    """
    missing_since = {} if missing_since is None else missing_since
    hearing = hearing or Hearing()
    summary = Summary()
    held = _AfterCommit(dispatcher)
    if _locked_elsewhere(session):
        session.rollback()
        summary.skipped = True
        return summary
    open_runs = list(
        session.scalars(
            select(Run)
            .where(Run.state.in_([RunState.QUEUED, RunState.RUNNING]))
            .order_by(Run.created_at, Run.id)
        )
    )
    devices = {
        d.serial: d
        for d in session.scalars(
            select(Device).where(
                Device.serial.in_({r.device_serial for r in open_runs if r.device_serial})
            )
        )
    }
    # A phone names the run it is on in its heartbeats from the moment it takes it, while it
    # still pushes files and before the run's first progress marks it running.
    taken = set(
        session.scalars(select(Device.current_run_id).where(Device.current_run_id.is_not(None)))
    )
    queued: list[Run] = []
    for run in open_runs:
        if run.job.state in FINAL_JOB_STATES:
            continue  # a cancelled job's runs are ended by the cancel itself
        device = devices.get(run.device_serial) if run.device_serial else None
        if run.state == RunState.RUNNING:
            reason = why_running_is_lost(run, device, now, bounds, hearing)
            if reason is not None:
                _lose(session, run, RunState.RUNNING, reason, now, held, summary)
            continue
        waited = _age_s(run.created_at, now)
        if device is not None and waited > bounds.queued_s:
            silent = hearing.silence_s(device, now)
            if silent > bounds.silence_s:
                reason = f"its phone {device.serial} was silent for {silent:.0f} s while it waited"
                _lose(session, run, RunState.QUEUED, reason, now, held, summary)
                continue
        if run.id not in taken:
            queued.append(run)
    if depths is not None and queued:
        try:
            counted = depths({r.queue for r in queued})
        except (redis.RedisError, KombuError, OSError) as exc:
            log.warning("reconciliation: cannot count the broker's queues: %s", exc)
            missing_since.clear()  # unseen, not missing: count again from the next answer
        else:
            for run in _missing_for_long(queued, counted, now, bounds, missing_since, hearing):
                _resend(session, run, now, held, summary)
    else:
        missing_since.clear()
    for job in {session.get_one(Run, r).job for r in {*summary.lost, *summary.failed}}:
        settle_job(session, job)
    session.commit()
    try:
        held.flush()
    except HexfleetError as exc:  # the broker is away: those attempts count as lost messages
        log.warning("reconciliation: %d attempts stored but not sent yet: %s", len(held.held), exc)
    return summary


class Reconciler:
    """Runs `reconcile_once` every `interval_s` in a daemon thread until `stop()`.

    A database or broker outage costs a pass (logged) and the next one tries again; anything
    else is a bug that would leave runs unattended, so it ends the process loudly for its
    supervisor (`hexfleet serve`, docker-compose) to restart.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        dispatcher: Dispatcher,
        bounds: Bounds,
        interval_s: float,
        depths: QueueDepths | None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        ingest_lag: Callable[[], float] | None = None,
    ) -> None:
        self.sessions = sessions
        self.dispatcher = dispatcher
        self.bounds = bounds
        self.interval_s = interval_s
        self.depths = depths
        self.clock = clock
        self.ingest_lag = ingest_lag or (lambda: 0.0)
        self.listening_since: dt.datetime | None = None
        self.passes = 0
        # Queued runs the last passes counted missing from the broker, and since when.
        self.missing_since: dict[str, dt.datetime] = {}
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconciler", daemon=True)

    def start(self) -> Reconciler:
        self.listening_since = self.clock()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.interval_s + 30)

    def run_once(self) -> Summary | None:
        """One pass; None when the database or the broker failed it (logged)."""
        try:
            with self.sessions() as session:
                return reconcile_once(
                    session,
                    self.dispatcher,
                    self.clock(),
                    self.bounds,
                    self.depths,
                    self.missing_since,
                    Hearing(self.ingest_lag(), self.listening_since),
                )
        except (SQLAlchemyError, HexfleetError, KombuError, redis.RedisError, OSError) as exc:
            log.warning("reconciliation pass failed, next one in %.0f s: %s", self.interval_s, exc)
            return None
        finally:
            self.passes += 1

    def _loop(self) -> None:
        try:
            while not self._stopped.wait(self.interval_s):
                self.run_once()
        except BaseException:
            log.critical(
                "the reconciler crashed: exiting for the supervisor to restart us", exc_info=True
            )
            os._exit(70)  # EX_SOFTWARE: a thread cannot end its process otherwise


def from_settings(
    settings: Settings,
    sessions: sessionmaker[Session],
    dispatcher: Dispatcher,
    depths: QueueDepths | None,
    ingest_lag: Callable[[], float] | None = None,
) -> Reconciler:
    return Reconciler(
        sessions,
        dispatcher,
        Bounds.from_settings(settings),
        settings.reconcile_interval_s,
        depths,
        ingest_lag=ingest_lag,
    )
