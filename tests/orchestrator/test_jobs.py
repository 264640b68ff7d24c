"""Submitting jobs: validation, runs stored per plan, tasks on the real broker's queues, cancel."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Callable

import pytest
import redis as redis_lib
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from hexfleet.broker import device_queue, make_celery
from hexfleet.errors import InvalidRequest, NotFound
from hexfleet.messages import RunResult
from hexfleet.orchestrator.db.schema import Device, Model, Run
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.orchestrator.ingest import ingest_result
from hexfleet.orchestrator.jobs import JobRequest, cancel, get_job, submit
from hexfleet.orchestrator.scheduler import RETRY_LIMIT
from hexfleet.settings import Settings

FLEET = [("a", "SM8550", 73), ("b", "SM8650", 75), ("c", "SM8750", 79)]
AddFleet = Callable[[Session, list[tuple[str, str, int]]], None]


@pytest.fixture
def dispatcher(settings: Settings, redis_url: str) -> CeleryDispatcher:
    return CeleryDispatcher(make_celery(settings.model_copy(update={"broker_url": redis_url})))


def _queued(redis_url: str, queue: str) -> list[dict[str, object]]:
    """Messages waiting on `queue` (kombu keeps one Redis list per priority step)."""
    client = redis_lib.Redis.from_url(redis_url)
    keys = [k for k in client.keys(f"{queue}*") if k.split(b"\x06\x16")[0] == queue.encode()]
    return [json.loads(raw) for key in keys for raw in client.lrange(key, 0, -1)]


def request(**overrides: object) -> JobRequest:
    body = {
        "kind": "generate",
        "model": "tiny-sd",
        "precision": "fp32",
        "selector": "htp_arch>=75",
        "params": {"prompts": ["a red circle; rm -rf / $(reboot)"], "seed": 3},
    }
    body.update(overrides)
    return JobRequest.model_validate(body)


def test_submit_stores_runs_and_queues_one_task_per_phone(
    db_engine: Engine, dispatcher: CeleryDispatcher, redis_url: str, add_fleet: AddFleet
) -> None:
    with Session(db_engine) as session:
        add_fleet(session, FLEET)
        job = submit(session, request(repeat=2), dispatcher, submitted_by="alice")
        assert sorted(r.device_serial for r in job.runs) == ["b", "b", "c", "c"]
        assert job.state == "queued" and job.submitted_by == "alice"
    messages = _queued(redis_url, "device.b")
    assert len(messages) == 2
    headers = messages[0]["headers"]
    assert isinstance(headers, dict)
    assert headers["task"] == "hexfleet.run"
    assert len(_queued(redis_url, "device.c")) == 2


def test_bad_requests_are_refused_before_anything_is_stored(
    db_engine: Engine, dispatcher: CeleryDispatcher, add_fleet: AddFleet
) -> None:
    with Session(db_engine) as session:
        add_fleet(session, FLEET)
        with pytest.raises(InvalidRequest, match="no online phone"):
            submit(session, request(selector="soc=SM8450"), dispatcher, "alice")
        with pytest.raises(InvalidRequest, match="unknown scheduler"):
            submit(
                session,
                request(params={"prompts": ["x"], "scheduler": "magic"}),
                dispatcher,
                "alice",
            )
        with pytest.raises(InvalidRequest, match="control characters"):
            submit(session, request(params={"prompts": ["a\x00b"]}), dispatcher, "alice")
        with pytest.raises(NotFound, match="not registered"):
            submit(session, request(precision="w8a16"), dispatcher, "alice")
        with pytest.raises(InvalidRequest, match="not a job id"):
            get_job(session, "../../etc/passwd")
    with pytest.raises(ValueError, match="pattern"):
        request(model="../evil")


def test_cancel_marks_open_runs_cancelled(
    db_engine: Engine, dispatcher: CeleryDispatcher, add_fleet: AddFleet
) -> None:
    with Session(db_engine) as session:
        add_fleet(session, FLEET)
        job = submit(session, request(selector="all", count=3), dispatcher, "alice")
        assert {r.queue for r in job.runs} == {"any"}
        cancelled = cancel(session, job.id, dispatcher)
        assert cancelled.state == "cancelled"
        assert {r.state for r in cancelled.runs} == {"cancelled"}
        with pytest.raises(NotFound):
            cancel(session, str(uuid.uuid4()), dispatcher)


def _lost(run: Run) -> RunResult:
    now = dt.datetime.now(dt.UTC)
    return RunResult(
        run_id=run.id,
        attempt=run.attempt,
        serial=run.device_serial or "?",
        host="host-a",
        outcome="lost",
        simulated=True,
        error="gone",
        started_at=now,
        finished_at=now,
    )


def test_any_n_goes_to_the_least_loaded_phones_first(
    db_engine: Engine, dispatcher: CeleryDispatcher, add_fleet: AddFleet
) -> None:
    with Session(db_engine) as session:
        add_fleet(session, FLEET)
        first = submit(session, request(selector="htp_arch>=75", count=1), dispatcher, "alice")
        assert [r.device_serial for r in first.runs] == ["b"]
        job = submit(session, request(selector="htp_arch>=75", count=3), dispatcher, "alice")
        slots = sorted(job.runs, key=lambda r: r.slot)
        assert [r.device_serial for r in slots] == ["c", "b", "c"], "b had a run queued"


def test_a_lost_run_is_retried_on_another_phone_up_to_the_bound(
    db_engine: Engine, dispatcher: CeleryDispatcher, add_fleet: AddFleet, redis_url: str
) -> None:
    with Session(db_engine) as session:
        # One matching phone per attempt: b and c, and one more for each retry past the first.
        spares = [(f"x{i}", "SM8650", 75) for i in range(RETRY_LIMIT - 1)]
        add_fleet(session, FLEET + spares)
        job = submit(session, request(selector="htp_arch>=75", count=1), dispatcher, "alice")
        (first,) = job.runs
        assert first.device_serial == "b"
        seen = {"b"}
        current = first
        for _ in range(RETRY_LIMIT):
            ingest_result(session, _lost(current), dispatcher)
            session.commit()
            current = max(job.runs, key=lambda r: r.attempt)
            assert current.device_serial not in seen
            assert len(_queued(redis_url, f"device.{current.device_serial}")) == 1
            seen.add(str(current.device_serial))
        ingest_result(session, _lost(current), dispatcher)
        session.commit()
        assert len(job.runs) == RETRY_LIMIT + 1, "no retry past the bound"
        assert job.state == "failed"
        assert session.get_one(Device, "b").state == "offline"


def test_a_lost_run_waits_for_a_known_phone_when_none_was_heard_from_lately(
    db_engine: Engine, dispatcher: CeleryDispatcher, add_fleet: AddFleet, redis_url: str
) -> None:
    """Found in the chaos suite: with the other phones' heartbeats late (their agent restarting,
    the ingest behind), a run its agent reported lost got no new attempt and its slot stayed
    unanswered. It now waits in a known phone's queue; with no other phone at all, it fails
    with the reason."""
    with Session(db_engine) as session:
        add_fleet(session, FLEET)
        job = submit(session, request(selector="all", repeat=1), dispatcher, "alice")
        run = next(r for r in job.runs if r.device_serial == "a")
        lonely = submit(session, request(selector="serial=a"), dispatcher, "alice").runs[0]
        for device in session.scalars(select(Device)):
            device.last_seen = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
        session.commit()
        ingest_result(session, _lost(run), dispatcher)
        session.commit()
        retry = max((r for r in job.runs if r.slot == run.slot), key=lambda r: r.attempt)
        assert retry.attempt == 2 and retry.device_serial in {"b", "c"}
        assert len(_queued(redis_url, f"device.{retry.device_serial}")) == 2  # its own + retry

        ingest_result(session, _lost(lonely), dispatcher)
        session.commit()
        assert lonely.state == "failed"
        assert lonely.reason == "its phone was lost; not retried: no other eligible phone"


def test_a_more_urgent_run_is_taken_first(
    db_engine: Engine, dispatcher: CeleryDispatcher, add_fleet: AddFleet
) -> None:
    with Session(db_engine) as session:
        add_fleet(session, FLEET)
        low = submit(session, request(selector="serial=a", priority=1), dispatcher, "alice").id
        high = submit(session, request(selector="serial=a", priority=8), dispatcher, "alice").id
    with dispatcher.app.connection_for_read() as connection:
        queue = connection.SimpleQueue(device_queue("a"))
        order = []
        for _ in range(2):
            message = queue.get(timeout=10)
            order.append(json.loads(message.payload[0][0])["job_id"])
            message.ack()
        queue.close()
    assert order == [high, low]


def test_a_phone_gets_the_context_binary_compiled_for_its_arch(
    db_engine: Engine, dispatcher: CeleryDispatcher, add_fleet: AddFleet, redis_url: str
) -> None:
    with Session(db_engine) as session:
        add_fleet(session, FLEET)
        portable = session.scalars(select(Model).where(Model.variant == "fp32")).one()
        compiled = {**portable.manifest, "htp_arch": "75"}
        session.add(Model(name=portable.name, version=portable.version, precision="fp32",
                          variant="fp32-v75", manifest_sha256="1" * 64, manifest=compiled))
        session.commit()
        submit(session, request(selector="htp_arch<=75", precision="fp32"), dispatcher, "alice")

    def manifest_arch(serial: str) -> object:
        (message,) = _queued(redis_url, device_queue(serial))
        body = json.loads(base64.b64decode(message["body"]))[0][0]
        return json.loads(body)["manifest"]["htp_arch"]

    assert manifest_arch("b") == "75", "SM8650 (v75) gets the v75 context binary"
    assert manifest_arch("a") is None, "SM8550 (v73) has none compiled: the portable QDQ model"
