"""A phone worker's heartbeat thread outlives a broker restart (a Redis of the test's own, killed
with SIGKILL and started again empty): beats stop while Redis is away, are logged, and resume
on the new server without restarting anything."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import adbutils
import pytest
from redis_process import RedisProcess
from virtual_phone_support import AdbServer, wait_until

from hexfleet.broker import INGEST_QUEUE, queue_depths
from hexfleet.device_agent.worker import PhoneWorker
from hexfleet.messages import Heartbeat
from hexfleet.settings import Settings


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    with RedisProcess(tmp_path) as server:
        yield server


def beats(settings: Settings) -> int:
    try:
        return queue_depths(settings, [INGEST_QUEUE])[INGEST_QUEUE]
    except OSError:
        return 0


def test_heartbeats_resume_after_the_broker_restarts(
    adb_server: AdbServer,
    device: adbutils.AdbDevice,
    redis_server: RedisProcess,
    data_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = Settings(
        data_dir=data_dir, broker_url=redis_server.url, adb_port=adb_server.port, outage_wait_s=5
    )
    worker = PhoneWorker(settings, device.serial)
    thread = threading.Thread(target=worker.beat_forever, name="heartbeat", daemon=True)
    thread.start()
    try:
        wait_until(lambda: beats(settings) >= 1, timeout=15, what="a first heartbeat")
        raw = redis_server.client().lrange(INGEST_QUEUE, 0, 0)[0]
        assert Heartbeat.model_validate_json(_body(raw)).facts.serial == device.serial

        redis_server.kill()
        with caplog.at_level(logging.WARNING, logger="hexfleet.device_agent.worker"):
            wait_until(lambda: "not sent" in caplog.text, timeout=20, what="a failed beat, logged")
        assert thread.is_alive()
        redis_server.start()  # empty: a broker without persistence
        wait_until(lambda: beats(settings) >= 1, timeout=30, what="a heartbeat after the restart")
        assert thread.is_alive()
    finally:
        worker.stopping.set()
        thread.join(timeout=20)
    assert not thread.is_alive()


def _body(raw: bytes) -> str:
    """The heartbeat JSON inside a kombu message on Redis (a Celery task's first argument)."""
    import base64
    import json

    message = json.loads(raw)
    args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    return str(args[0])
