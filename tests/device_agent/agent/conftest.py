"""Fixtures for the device agent's tests: the tiny model served by a real orchestrator API, a host
cache fetching from it, and the agent's `Phone`, pusher and executor on a virtual phone.

The API is `orchestrator.api.app.create_app` served by uvicorn in a thread (the artifact route
needs no database rows); phones come from tests/device_agent/conftest.py through the private adb
server. Nothing of ADB, the runner or ONNX Runtime is replaced.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import adbutils
import pytest
import uvicorn
from agent_support import VIEWER_TOKEN, ModelServer, Runs
from virtual_phone_support import free_port, wait_until

from device_agent.execution import Executor, ThermalGate
from device_agent.host_cache import HostCache
from device_agent.messages import RunProgress
from device_agent.phone import Phone as AgentPhone
from device_agent.push import ArtifactPusher
from device_agent.virtual.phone import Phone
from hexfleet.broker import make_celery
from hexfleet.settings import Settings
from models.manifest import Manifest
from models.registration import register_tiny_sd
from models.store import ModelStore
from models.synthetic_sd import write_tiny_layout
from orchestrator.api.app import create_app
from orchestrator.dispatch import CeleryDispatcher


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """`create_app` on uvicorn in a thread, its store holding the tiny model (fp32)."""
    root = tmp_path_factory.mktemp("orchestrator")
    port = free_port()
    settings = Settings(
        data_dir=root / "data",
        database_url=None,
        broker_url=None,
        api_url=f"http://127.0.0.1:{port}",
        viewer_tokens=[VIEWER_TOKEN],  # type: ignore[list-item]
    )
    store = ModelStore.from_settings(settings)
    manifest = register_tiny_sd(store, write_tiny_layout(root / "tiny-sd"))
    app = create_app(settings, CeleryDispatcher(make_celery(settings)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="orchestrator-api", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, what="the orchestrator API")
    try:
        yield ModelServer(settings.api_url, VIEWER_TOKEN, store, manifest)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def manifest(model_server: ModelServer) -> Manifest:
    return model_server.manifest


@pytest.fixture
def host_cache(model_server: ModelServer, tmp_path: Path) -> Iterator[HostCache]:
    cache = HostCache(tmp_path / "agent-cache", model_server.url, model_server.token)
    try:
        yield cache
    finally:
        cache.close()


@pytest.fixture
def agent_phone(device: adbutils.AdbDevice) -> AgentPhone:
    """The virtual phone as the agent drives it, through the private adb server."""
    return AgentPhone(device)


@pytest.fixture
def pusher(agent_phone: AgentPhone, host_cache: HostCache) -> ArtifactPusher:
    return ArtifactPusher(agent_phone, host_cache)


@pytest.fixture
def runs(agent_phone: AgentPhone, pusher: ArtifactPusher, phone: Phone) -> Runs:
    """An Executor whose progress is recorded and whose cancel switch the test holds."""
    progress: list[RunProgress] = []
    cancel = threading.Event()
    executor = Executor(
        agent_phone,
        pusher,
        host="test-host",
        htp_arch=int(phone.profile.htp_arch),
        on_progress=progress.append,
        cancelled=lambda _run_id: cancel.is_set(),
        thermal=ThermalGate(limit_c=45.0, max_wait_s=10.0),
    )
    return Runs(executor, progress, cancel)
