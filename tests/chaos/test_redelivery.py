"""The broker's redelivery agrees with run deadlines (a Redis of the test's own).

A run message is acknowledged when its run starts: while the run goes on, Redis holds nothing
of it to deliver again, however short the visibility timeout. An ingest message, acknowledged
late, stays unacknowledged while its task runs (so a dead ingest worker's message comes back).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from celery.contrib.testing.worker import start_worker
from redis_process import RedisProcess

from hexfleet.broker import (
    ANY_QUEUE,
    INGEST_QUEUE,
    INGEST_RESULT_TASK,
    RUN_TASK,
    RUN_TASK_OPTIONS,
    make_celery,
)
from hexfleet.settings import Settings

# kombu's Redis transport keeps delivered, unacknowledged messages in this hash.
UNACKED = "unacked"


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.05)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisProcess]:
    with RedisProcess(tmp_path) as server:
        yield server


def test_make_celery_takes_the_visibility_timeout_from_settings(redis_server: RedisProcess) -> None:
    settings = Settings(broker_url=redis_server.url)
    options = make_celery(settings).conf.broker_transport_options
    assert options["visibility_timeout"] == settings.broker_visibility_timeout_s == 300


@pytest.mark.parametrize(
    ("task", "queue", "options", "held_while_running"),
    [(RUN_TASK, ANY_QUEUE, RUN_TASK_OPTIONS, 0), (INGEST_RESULT_TASK, INGEST_QUEUE, {}, 1)],
)
def test_a_run_message_is_acknowledged_when_the_run_starts(
    redis_server: RedisProcess,
    data_dir: Path,
    task: str,
    queue: str,
    options: dict[str, object],
    held_while_running: int,
) -> None:
    settings = Settings(
        data_dir=data_dir, broker_url=redis_server.url, broker_visibility_timeout_s=1
    )
    app = make_celery(settings, name="redelivery")
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def work(body: str) -> None:
        calls.append(body)
        started.set()
        release.wait(timeout=30)

    app.task(name=task, shared=False, **options)(work)
    app.send_task(task, args=["one"], queue=queue)
    client = redis_server.client()
    with start_worker(
        app, queues=[queue], pool="solo", perform_ping_check=False, shutdown_timeout=10
    ):
        wait_until(started.is_set, 20, "the task started")
        # Running: the run message is acknowledged (nothing to redeliver, even after the 1 s
        # visibility timeout); the ingest message is still held, to come back if we died.
        assert client.hlen(UNACKED) == held_while_running
        assert client.llen(queue) == 0
        release.set()
        wait_until(lambda: client.hlen(UNACKED) == 0, 20, "acknowledged once done")
    assert calls == ["one"]
