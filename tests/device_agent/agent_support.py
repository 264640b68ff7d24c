"""Helpers for the device agent's tests: run tasks for the tiny model, and what the phone saw.

`opened(caplog)` lists the services the virtual phone's adbd opened (it logs every OPEN), which
is how the tests check that no user string ever reached a shell command line.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from hexfleet.bundle import RunnerBundle
from hexfleet.device_agent.execution import Executor
from hexfleet.manifest import Manifest
from hexfleet.messages import RunProgress, RunResult, RunTask
from hexfleet.virtual_phone.phone import VirtualPhone

if TYPE_CHECKING:
    from hexfleet.models.store import ModelStore

VIEWER_TOKEN = "agent-tests-viewer"
PROMPT = "a red circle on the left in a blue background"
# About half a minute of denoising on a CPU phone: long enough to be stopped while it runs.
LONG_RUN = {"steps": 150, "prompts": [PROMPT] * 16, "images_per_prompt": 8}
ADBD_LOGGER = "hexfleet.virtual_phone.adbd"
SYNC_LOGGER = "hexfleet.virtual_phone.sync"
SHELL_LOGGER = "hexfleet.virtual_phone.shell_service"
RUNNER_NAME = "hexfleet-runner"


@dataclass
class ModelServer:
    """The orchestrator API serving the tiny model's artifacts."""

    url: str
    token: str
    store: ModelStore
    manifest: Manifest
    bundle: RunnerBundle  # the host runner's bundle (x86_64), its files in `store`


@dataclass
class Runs:
    """An executor on the phone, the progress it reported and the cancel switch tests flip."""

    executor: Executor
    progress: list[RunProgress] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)


class RunnerWatch:
    """When runner processes started and ended on a phone, as its own process table saw it."""

    def __init__(self, phone: VirtualPhone) -> None:
        self._table = phone.processes
        self.started: dict[int, float] = {}
        self.ended: dict[int, float] = {}
        self._table.on_change(self._changed)

    def _changed(self) -> None:
        now = time.monotonic()
        live = {p.pid for p in self._table.rows() if p.name == RUNNER_NAME}
        for pid in live - set(self.started):
            self.started[pid] = now
        for pid in set(self.started) - live - set(self.ended):
            self.ended[pid] = now

    def running(self) -> list[int]:
        return [pid for pid in self.started if pid not in self.ended]


def make_task(
    manifest: Manifest, bundle: RunnerBundle, deadline_s: float = 120.0, **params: Any
) -> RunTask:
    """A run of the tiny model on the CPU with `bundle` as the runner for its ABI: generate
    unless `params` name another kind."""
    body: dict[str, Any] = {"kind": "generate", "runtime": "cpu"}
    if params.get("kind", "generate") == "generate":
        body.update(prompts=[PROMPT], steps=2)
    body.update(params)
    return RunTask(
        run_id=str(uuid.uuid4()),
        job_id=str(uuid.uuid4()),
        attempt=1,
        kind=body["kind"],
        model=manifest.name,
        manifest=manifest.model_dump(mode="json"),
        params=body,
        deadline_s=deadline_s,
        bundles={bundle.abi: bundle},
    )


def in_background(executor: Executor, task: RunTask) -> tuple[threading.Thread, list[RunResult]]:
    """Start `executor.execute(task)` in a thread; `finished` joins it and returns the result."""
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(executor.execute(task)))
    thread.start()
    return thread, results


def finished(thread: threading.Thread, results: list[RunResult], timeout: float) -> RunResult:
    thread.join(timeout)
    assert not thread.is_alive(), f"execute did not return within {timeout:g} s"
    return results[0]


def jobs_left(phone: VirtualPhone) -> list[str]:
    """Job folders still on the phone (read from its disk, not through the agent)."""
    jobs = phone.fs.root / "data/local/tmp/hexfleet/jobs"
    return sorted(p.name for p in jobs.iterdir()) if jobs.is_dir() else []


def watch_phone(caplog: pytest.LogCaptureFixture) -> None:
    """Record every service the phone opens, every line a shell without a command reads and
    every path its sync service touches."""
    caplog.set_level(logging.INFO, logger=ADBD_LOGGER)
    caplog.set_level(logging.INFO, logger=SHELL_LOGGER)
    caplog.set_level(logging.DEBUG, logger=SYNC_LOGGER)


def opened(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Destinations the phone's adbd opened (`shell,v2,raw:rm -rf ...`, `sync:`), in order."""
    return [
        str(record.args[1])
        for record in caplog.records
        if record.name == ADBD_LOGGER and record.msg.startswith("%s: OPEN")
    ]


def synced(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    """(request, device path) of every sync request (SEND, RECV, LIST, STAT...), in order.

    QUIT is left out: it only ends a sync session, and the phone may log it after the client
    has already moved on, so whether a given moment's log holds it is a race."""
    requests = [
        (bytes(record.args[0]).decode(), str(record.args[1]))
        for record in caplog.records
        if record.name == SYNC_LOGGER
    ]
    return [(request, path) for request, path in requests if request != "QUIT"]


def shell_commands(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The command lines the phone's shells ran, in order: each shell's command, and the lines
    a shell opened without one (a session) read from its stdin."""
    commands = []
    for record in caplog.records:
        if record.name == ADBD_LOGGER and record.msg.startswith("%s: OPEN"):
            destination = str(record.args[1])
            if destination.startswith(("shell", "exec")) and destination.partition(":")[2]:
                commands.append(destination.partition(":")[2])
        elif record.name == SHELL_LOGGER and record.msg.startswith("sh %d reads"):
            commands.append(str(record.args[1]))
    return commands
