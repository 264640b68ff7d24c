"""`hexfleet serve` through a broker restart and its ingest worker's death, on real processes.

A Redis of the test's own (no persistence) is SIGKILLed and started again while `hexfleet serve`
runs its API and ingest worker: messages sent afterwards are still ingested. The ingest worker is
SIGKILLed: the API answers its health check with 503 until the worker is back, then ingests again.
Every wait is on a condition with a deadline.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from redis_process import RedisProcess, free_port
from sqlalchemy.orm import Session

from hexfleet.broker import INGEST_HEARTBEAT_TASK, INGEST_QUEUE, Publisher, make_celery
from hexfleet.messages import DeviceFacts, DeviceHealth, Heartbeat
from hexfleet.orchestrator.db.engine import make_engine
from hexfleet.orchestrator.db.schema import Device, Job, Run
from hexfleet.settings import Settings

HEXFLEET = str(Path(sys.executable).parent / "hexfleet")


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def beat(serial: str) -> str:
    return Heartbeat(
        host="chaos-host",
        facts=DeviceFacts(serial=serial, soc="SM8650", htp_arch=75),
        health=DeviceHealth(battery_level=90),
        state="idle",
        sent_at=dt.datetime.now(dt.UTC),
    ).model_dump_json()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    with RedisProcess(tmp_path) as server:
        yield server


@pytest.fixture
def served(data_dir: Path, redis_server: RedisProcess, tmp_path: Path) -> Iterator[Settings]:
    settings = Settings(
        data_dir=data_dir,
        api_url=f"http://127.0.0.1:{free_port()}",
        broker_url=redis_server.url,
        database_url=f"sqlite:///{data_dir / 'hexfleet.db'}",
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("HEXFLEET_")},
        "HEXFLEET_DATA_DIR": str(data_dir),
        "HEXFLEET_API_URL": settings.api_url,
        "HEXFLEET_BROKER_URL": redis_server.url,
        "HEXFLEET_DATABASE_URL": settings.resolved_database_url,
        "HEXFLEET_RECONCILE_INTERVAL_S": "1",
    }
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen([HEXFLEET, "serve"], env=env, stdout=log, stderr=log)
    settings = settings.model_copy(update={"outage_wait_s": 30.0})
    try:
        wait_until(lambda: health(settings) == 200, 60, "serve healthy")
        yield settings
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            pytest.fail("serve did not stop on SIGINT")
        finally:
            print((tmp_path / "serve.log").read_text(errors="replace")[-4000:])


def health(settings: Settings) -> int | None:
    try:
        return httpx.get(f"{settings.api_url}/api/v1/health", timeout=2).status_code
    except httpx.TransportError:
        return None


def known(settings: Settings, serial: str) -> bool:
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            return session.get(Device, serial) is not None
    finally:
        engine.dispose()


def serve_pid(settings: Settings) -> int:
    """The `hexfleet serve` process listening on the settings' API port (ours: started here)."""
    port = settings.api_url.rsplit(":", 1)[1]
    out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True)
    return int(out.stdout.split("pid=")[1].split(",")[0])


def test_serve_ingests_again_after_the_broker_restarts_and_its_worker_dies(
    served: Settings, redis_server: RedisProcess
) -> None:
    publisher = Publisher(make_celery(served, name="chaos-sender"), served.outage_wait_s)
    publisher.send(INGEST_HEARTBEAT_TASK, beat("vp-before"), INGEST_QUEUE)
    wait_until(lambda: known(served, "vp-before"), 30, "a heartbeat ingested")
    (worker,) = children(serve_pid(served))

    redis_server.kill()
    redis_server.start()  # empty: no persistence
    publisher.send(INGEST_HEARTBEAT_TASK, beat("vp-after-restart"), INGEST_QUEUE)
    wait_until(lambda: known(served, "vp-after-restart"), 60, "ingested after Redis restarted")
    assert children(serve_pid(served)) == [worker]  # the same worker reconnected
    assert health(served) == 200

    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: health(served) == 503, 10, "503 while the ingest worker is dead")
    wait_until(lambda: health(served) == 200, 30, "healthy once the worker is back")
    assert children(serve_pid(served)) != [worker]
    publisher.send(INGEST_HEARTBEAT_TASK, beat("vp-after-worker"), INGEST_QUEUE)
    wait_until(lambda: known(served, "vp-after-worker"), 60, "ingested by the new worker")

    # The new worker's reconciler ends a run that outlived its deadline (no phone left to retry
    # it on: its selector names only its own phone).
    run_id = stale_run(served, "vp-before")
    wait_until(lambda: run_state(served, run_id)[0] == "failed", 30, "the stale run reconciled")
    reason = run_state(served, run_id)[1] or ""
    assert reason.endswith("after its deadline (1 s); not retried: no other eligible phone")


def stale_run(settings: Settings, serial: str) -> str:
    """A run on `serial` that started 10 min ago with a 1 s deadline and never reported."""
    started = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    run_id = str(uuid.uuid4())
    job = Job(id=str(uuid.uuid4()), kind="generate", selector=f"serial={serial}", spec={})
    run = Run(
        id=run_id,
        job=job,
        slot=0,
        queue=f"device.{serial}",
        device_serial=serial,
        state="running",
        deadline_s=1,
        created_at=started,
        started_at=started,
    )
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            session.add_all([job, run])
            session.commit()
    finally:
        engine.dispose()
    return run_id


def run_state(settings: Settings, run_id: str) -> tuple[str, str | None]:
    engine = make_engine(settings.resolved_database_url)
    try:
        with Session(engine) as session:
            run = session.get_one(Run, run_id)
            return run.state, run.reason
    finally:
        engine.dispose()
