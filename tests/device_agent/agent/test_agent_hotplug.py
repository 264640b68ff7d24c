"""The agent's hot-plug loop with real worker processes: a phone that appears gets a worker that
reports it online, one that is switched off or drops offline loses it, and it comes back.

The agent and its workers read their settings from the environment, as `hexfleet agent` does;
heartbeats are read from the embedded broker's folder (kombu's filesystem transport).
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Iterator

import pytest
from agent_support import ModelServer
from virtual_phone_support import AdbServer
from waiting import wait_until

from hexfleet.broker import INGEST_HEARTBEAT_TASK, INGEST_QUEUE
from hexfleet.device_agent.agent import Agent
from hexfleet.messages import Heartbeat
from hexfleet.settings import Settings
from hexfleet.virtual_phone.fleet import ThreadedFleet
from hexfleet.virtual_phone.phone import VirtualPhone

WORKER_UP_S = 30.0  # a worker process imports Celery, adbutils and the agent, then reads facts
NOTICED_S = 10.0


@pytest.fixture
def agent_settings(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: os.PathLike[str],
    adb_server: AdbServer,
    model_server: ModelServer,
) -> Settings:
    for key in [k for k in os.environ if k.startswith("HEXFLEET_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("HEXFLEET_DATA_DIR", os.path.join(tmp_path, "agent-data"))
    monkeypatch.setenv("HEXFLEET_ADB_PORT", str(adb_server.port))
    monkeypatch.setenv("HEXFLEET_API_URL", model_server.url)
    return Settings()


@pytest.fixture
def agent(agent_settings: Settings) -> Iterator[Agent]:
    running = Agent(agent_settings, poll_s=0.2)
    thread = threading.Thread(target=running.run, name="agent", daemon=True)
    thread.start()
    try:
        yield running
    finally:
        running.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the agent did not stop its workers"


def heartbeats(settings: Settings) -> list[Heartbeat]:
    """Every heartbeat waiting on the ingest queue (nothing consumes it in these tests)."""
    beats = []
    for path in sorted((settings.broker_folder / "in").glob(f"*.{INGEST_QUEUE}.msg")):
        message = json.loads(path.read_bytes())
        if message["headers"]["task"] != INGEST_HEARTBEAT_TASK:
            continue
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        beats.append(Heartbeat.model_validate_json(args[0]))
    return beats


def reported(settings: Settings, serial: str, state: str) -> Callable[[], int]:
    """How many `state` heartbeats of `serial` are queued (a condition for wait_until)."""
    return lambda: sum(
        1 for b in heartbeats(settings) if b.facts.serial == serial and b.state == state
    )


def live_worker(agent: Agent, serial: str) -> int | None:
    """The pid of the worker process running for `serial`, if there is one."""
    worker = agent.workers.get(serial)
    return worker.process.pid if worker and worker.process.poll() is None else None


def test_workers_follow_phones_that_appear_disappear_and_come_back(
    agent: Agent,
    agent_settings: Settings,
    adb_server: AdbServer,
    fleet: ThreadedFleet,
    make_phone: Callable[..., VirtualPhone],
) -> None:
    first, second = make_phone("sm8550"), make_phone("sm8650")
    adb_server.connect(first.serial)
    first_pid = wait_until(lambda: live_worker(agent, first.serial), NOTICED_S, "a worker")
    adb_server.connect(second.serial)
    wait_until(lambda: live_worker(agent, second.serial), NOTICED_S, "a second worker")
    wait_until(reported(agent_settings, first.serial, "idle"), WORKER_UP_S, "first online")
    beat = next(b for b in heartbeats(agent_settings) if b.facts.serial == first.serial)
    assert (beat.facts.soc, beat.facts.htp_arch) == ("SM8550", 73)
    process = agent.workers[first.serial].process

    fleet.stop_phone(first)  # switched off
    wait_until(lambda: first.serial not in agent.workers, NOTICED_S, "its worker released")
    wait_until(reported(agent_settings, first.serial, "offline"), NOTICED_S, "first offline")
    assert live_worker(agent, second.serial), "the other phone's worker was touched"

    fleet.restart_phone(first)  # noticed even while the old worker winds down
    adb_server.connect(first.serial)
    again = wait_until(lambda: live_worker(agent, first.serial), NOTICED_S, "a new worker")
    assert again != first_pid
    wait_until(lambda: process.poll() is not None, NOTICED_S, "the old worker process to end")
    wait_until(lambda: not agent.leaving, NOTICED_S, "the old worker reaped")

    fleet.call(second.go_offline())  # flaky Wi-Fi: the server sees it go away
    wait_until(lambda: second.serial not in agent.workers, NOTICED_S, "offline noticed")
    fleet.call(second.come_online())
    adb_server.connect(second.serial)
    wait_until(lambda: live_worker(agent, second.serial), NOTICED_S, "back with the same serial")
    wait_until(reported(agent_settings, second.serial, "idle"), WORKER_UP_S, "second online")
