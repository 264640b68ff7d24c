"""Fixtures for the agent's tests: the tiny model served by a real orchestrator API and the agent's
parts, on the virtual phones of tests/support/phone_fixtures.py (a private adb server, phones).

The adb server is the real binary bundled with adbutils, started on its own port (`adb -P`), so
tests never touch a developer's server on 5037. Phones run on a background event loop in this
process so tests can inject faults directly. The API is `orchestrator.api.app.create_app` on
uvicorn in a thread (imported only when an agent test asks for it); its store also holds the
native runner built from this checkout as a bundle (tests/support/runner_bundle.py). Nothing of
ADB, the runner or ONNX Runtime is replaced.

The agent's fixtures live here rather than in agent/conftest.py: tests/e2e imports helpers with
`from conftest import ...`, which a conftest loaded later in the same session would shadow.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import adbutils
import pytest
from agent_support import VIEWER_TOKEN, ModelServer, Runs
from runner_bundle import build_runner, register_bundle
from waiting import free_port, wait_until

from hexfleet.bundle import RunnerBundle
from hexfleet.device_agent.execution import Executor, ThermalGate
from hexfleet.device_agent.host_cache import HostCache
from hexfleet.device_agent.phone import Phone as AgentPhone
from hexfleet.device_agent.push import ArtifactPusher
from hexfleet.manifest import Manifest
from hexfleet.messages import RunProgress
from hexfleet.settings import Settings
from hexfleet.virtual_phone.phone import VirtualPhone

# the device agent ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    """`create_app` on uvicorn in a thread, its store holding the tiny model (fp32)."""
    import uvicorn
    from synthetic_sd import write_tiny_layout

    from hexfleet.broker import make_celery
    from hexfleet.models.registration import register_tiny_sd
    from hexfleet.models.store import ModelStore
    from hexfleet.orchestrator.api.app import create_app
    from hexfleet.orchestrator.dispatch import CeleryDispatcher

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
    bundle = register_bundle(store, build_runner())
    app = create_app(settings, CeleryDispatcher(make_celery(settings)))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, name="orchestrator-api", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, what="the orchestrator API")
    try:
        yield ModelServer(settings.api_url, VIEWER_TOKEN, store, manifest, bundle)
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def manifest(model_server: ModelServer) -> Manifest:
    return model_server.manifest


@pytest.fixture
def bundle(model_server: ModelServer) -> RunnerBundle:
    """The native runner built from this checkout (x86_64), as a registered bundle."""
    return model_server.bundle


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
def runs(agent_phone: AgentPhone, pusher: ArtifactPusher, phone: VirtualPhone) -> Runs:
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
        abi=phone.config.abi,
    )
    return Runs(executor, progress, cancel)
