"""The ingest worker consumes real broker messages and writes them once, on Redis and embedded."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from celery.contrib.testing.worker import start_worker
from sqlalchemy.orm import Session
from waiting import wait_until

from hexfleet.broker import (
    INGEST_HEARTBEAT_TASK,
    INGEST_PROGRESS_TASK,
    INGEST_QUEUE,
    INGEST_RESULT_TASK,
    make_celery,
)
from hexfleet.messages import DeviceFacts, DeviceHealth, Heartbeat, RunProgress, RunResult
from hexfleet.orchestrator.db.engine import make_engine, session_factory, upgrade
from hexfleet.orchestrator.db.schema import Device, Job, Run
from hexfleet.orchestrator.worker import make_ingest_app
from hexfleet.settings import Settings

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


@pytest.mark.parametrize("broker", ["redis", "embedded"])
def test_ingest_worker_writes_each_message_once(
    broker: str, settings: Settings, request: pytest.FixtureRequest
) -> None:
    if broker == "redis":
        settings = settings.model_copy(update={"broker_url": request.getfixturevalue("redis_url")})
    upgrade(settings.resolved_database_url)
    sessions = session_factory(make_engine(settings.resolved_database_url))
    job = Job(id=str(uuid.uuid4()), kind="generate", selector="all", spec={})
    run = Run(id=str(uuid.uuid4()), job=job, slot=0, queue="any", deadline_s=60)
    with sessions() as session:
        session.add_all([job, run])
        session.commit()
    sender = make_celery(settings, name="agent-side")
    beat = Heartbeat(
        host="h",
        facts=DeviceFacts(serial="vp-1", soc="SM8650", htp_arch=75),
        health=DeviceHealth(battery_level=80),
        state="idle",
        sent_at=NOW,
    )
    progress = RunProgress(run_id=run.id, attempt=1, serial="vp-1", step=3, total=20, stage="unet")
    result = RunResult(
        run_id=run.id,
        attempt=1,
        serial="vp-1",
        host="h",
        outcome="succeeded",
        simulated=True,
        timings={"total_ms": 5.0},
        started_at=NOW,
        finished_at=NOW,
    )
    for name, message in (
        (INGEST_HEARTBEAT_TASK, beat),
        (INGEST_PROGRESS_TASK, progress),
        (INGEST_RESULT_TASK, result),
        (INGEST_RESULT_TASK, result),
    ):
        sender.send_task(name, args=[message.model_dump_json()], queue=INGEST_QUEUE)
    sender.send_task(INGEST_RESULT_TASK, args=['{"garbage": true}'], queue=INGEST_QUEUE)

    app = make_ingest_app(settings, sessions)
    with start_worker(
        app, queues=[INGEST_QUEUE], pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):

        def landed() -> bool:
            with sessions() as session:
                stored = session.get_one(Run, run.id)
                return stored.state == "succeeded"

        wait_until(landed, 20, "every message in the database")
    with Session(sessions.kw["bind"]) as session:
        stored = session.get_one(Run, run.id)
        assert stored.timings == {"total_ms": 5.0}
        assert stored.job.state == "succeeded"
        # Busy on the run's first progress, idle again on its result, whatever order the
        # embedded broker delivered them in.
        device = session.get_one(Device, "vp-1")
        assert (device.state, device.current_run_id, device.battery_level) == ("idle", None, 80)
