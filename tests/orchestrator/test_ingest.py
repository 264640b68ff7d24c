"""Ingest is idempotent: a result delivered twice is stored once; heartbeats upsert the fleet."""

from __future__ import annotations

import base64
import datetime as dt
import uuid

import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hexfleet.errors import NotFound
from hexfleet.messages import (
    DeviceFacts,
    DeviceHealth,
    Heartbeat,
    ImageOut,
    RunProgress,
    RunResult,
)
from hexfleet.orchestrator.db.schema import Device, Image, Job, Metric, Run
from hexfleet.orchestrator.ingest import ingest_heartbeat, ingest_result, record_progress

NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)


def _job_with_runs(session: Session, slots: int) -> list[Run]:
    job = Job(id=str(uuid.uuid4()), kind="generate", selector="all", spec={})
    runs = [
        Run(id=str(uuid.uuid4()), job=job, slot=i, queue="any", deadline_s=60) for i in range(slots)
    ]
    session.add_all([job, *runs])
    session.commit()
    return runs


def _result(run: Run, outcome: str = "succeeded", attempt: int = 1) -> RunResult:
    return RunResult(
        run_id=run.id,
        attempt=attempt,
        serial="vp-1",
        host="h",
        outcome=outcome,
        simulated=True,
        timings={"total_ms": 1234.5},
        metrics={"unet_step_ms": [49.0, 51.0], "npu_share": 1.0, "scheduler": "ddim"},
        tensors={"out_sample": b"\x93NUMPY-bytes"},
        images=[ImageOut(index=0, prompt="a red circle", seed=1, png=b"png-bytes")],
        started_at=NOW,
        finished_at=NOW + dt.timedelta(seconds=2),
    )


def test_a_result_delivered_twice_is_stored_once(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        run, other = _job_with_runs(session, 2)
        assert ingest_result(session, _result(run)) is True
        session.commit()
        assert ingest_result(session, _result(run)) is False
        session.commit()
        assert session.scalar(select(func.count()).select_from(Image)) == 1
        assert session.scalar(select(func.count()).select_from(Metric)) == 2
        stored = session.get_one(Run, run.id).result
        assert stored["metrics"]["scheduler"] == "ddim"
        assert base64.b64decode(stored["tensors"]["out_sample"]) == b"\x93NUMPY-bytes"
        assert run.job.state == "running"
        ingest_result(session, _result(other, outcome="failed"))
        session.commit()
        assert run.job.state == "failed"
        assert session.get_one(Run, run.id).timings == {"total_ms": 1234.5}


def test_a_stale_attempt_is_ignored_and_unknown_runs_are_an_error(db_engine: Engine) -> None:
    with Session(db_engine) as session:
        (run,) = _job_with_runs(session, 1)
        assert ingest_result(session, _result(run, attempt=2)) is False
        with pytest.raises(NotFound):
            ingest_result(session, _result(Run(id=str(uuid.uuid4()), attempt=1)))


def test_heartbeats_upsert_the_fleet(db_engine: Engine) -> None:
    facts = DeviceFacts(serial="vp-1", soc="SM8550", htp_arch=73, model="Galaxy S23")
    with Session(db_engine) as session:
        for level, state in ((90, "idle"), (85, "busy")):
            beat = Heartbeat(
                host="h",
                facts=facts,
                state=state,
                sent_at=NOW,
                health=DeviceHealth(battery_level=level, max_temp_c=41.5),
            )
            ingest_heartbeat(session, beat)
            session.commit()
        device = session.get_one(Device, "vp-1")
        assert (device.battery_level, device.state, device.htp_arch) == (85, "busy", 73)
        assert session.scalar(select(func.count()).select_from(Device)) == 1


def test_a_runs_first_progress_marks_its_phone_busy_and_its_result_idle(
    db_engine: Engine,
) -> None:
    """Agents send no heartbeat around a run: progress and result say busy and idle."""
    facts = DeviceFacts(serial="vp-1", soc="SM8550", htp_arch=73, model="Galaxy S23")
    beat = Heartbeat(host="h", facts=facts, state="idle", sent_at=NOW, health=DeviceHealth())
    with Session(db_engine) as session:
        ingest_heartbeat(session, beat)
        (run,) = _job_with_runs(session, 1)
        record_progress(
            session, RunProgress(run_id=run.id, attempt=1, serial="vp-1", step=1, total=20)
        )
        session.commit()
        device = session.get_one(Device, "vp-1")
        assert (device.state, device.current_run_id, run.state) == ("busy", run.id, "running")
        ingest_result(session, _result(run))
        session.commit()
        assert (device.state, device.current_run_id) == ("idle", None)


def test_progress_moves_a_running_run_and_never_a_stale_attempt_or_a_finished_run(
    db_engine: Engine,
) -> None:
    def progress(run_id: str, step: int, attempt: int = 1, serial: str = "vp-1") -> None:
        record_progress(
            session,
            RunProgress(run_id=run_id, attempt=attempt, serial=serial, step=step, total=20),
        )
        session.commit()
        session.expire_all()

    with Session(db_engine) as session:
        (run,) = _job_with_runs(session, 1)
        progress(run.id, 1)
        assert (run.state, run.progress["step"], run.device_serial) == ("running", 1, "vp-1")
        progress(run.id, 7)
        assert run.progress["step"] == 7
        progress(run.id, 9, attempt=2)
        assert run.progress["step"] == 7, "another attempt's progress moved this one"
        ingest_result(session, _result(run))
        session.commit()
        settled = dict(run.progress or {})
        progress(run.id, 3)
        assert run.state == "succeeded" and run.progress == settled
