"""Runner bundles through the API: registered per ABI once their files are uploaded, carried by
every run task, and a job refused at submit when a selected phone's ABI has no bundle."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from hexfleet.bundle import RunnerBundle
from hexfleet.manifest import FileRef
from hexfleet.messages import RunTask
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import make_engine, upgrade
from hexfleet.orchestrator.db.schema import Device
from hexfleet.settings import Settings

VIEW = {"Authorization": "Bearer viewer-token"}
SUBMIT = {"Authorization": "Bearer submit-token"}
RUNNER = b"\x7fELF pretend runner"
JOB = {
    "kind": "generate",
    "model": "tiny-sd",
    "precision": "fp32",
    "selector": "all",
    "params": {"prompts": ["a red circle on the left in a blue background"]},
}


class Dispatcher:
    def __init__(self) -> None:
        self.sent: list[RunTask] = []

    def send(self, task: RunTask, queue: str, priority: int) -> None:
        self.sent.append(task)

    def revoke(self, run_ids: object) -> None:
        pass


@pytest.fixture
def dispatcher() -> Dispatcher:
    return Dispatcher()


@pytest.fixture
def client(
    settings: Settings, add_fleet: Callable[..., None], dispatcher: Dispatcher
) -> Iterator[TestClient]:
    configured = Settings.model_validate(
        {
            **settings.model_dump(),
            "viewer_tokens": ["viewer-token"],
            "submit_tokens": ["submit-token"],
        }
    )
    upgrade(configured.resolved_database_url)
    engine = make_engine(configured.resolved_database_url)
    with Session(engine) as session:
        add_fleet(session, [("vp-1", "SM8550", 73), ("vp-2", "SM8650", 75)])
        session.get_one(Device, "vp-1").abi = "x86_64"
        session.get_one(Device, "vp-2").abi = "arm64-v8a"
        session.commit()
    engine.dispose()
    with TestClient(create_app(configured, dispatcher)) as test_client:
        yield test_client


def _bundle(abi: str, data: bytes = RUNNER) -> RunnerBundle:
    ref = FileRef(name="hexfleet-runner", sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    return RunnerBundle(abi=abi, runner_version="2.0.0", files=[ref])  # type: ignore[arg-type]


def _register(client: TestClient, bundle: RunnerBundle, data: bytes = RUNNER) -> int:
    sha = bundle.files[0].sha256
    assert client.put(f"/api/v1/artifacts/{sha}", content=data, headers=SUBMIT).status_code == 201
    return client.post(
        "/api/v1/runners", json=bundle.model_dump(mode="json"), headers=SUBMIT
    ).status_code


def test_a_bundle_registers_once_its_files_are_uploaded(client: TestClient) -> None:
    bundle = _bundle("x86_64", b"never uploaded")
    refused = client.post("/api/v1/runners", json=bundle.model_dump(mode="json"), headers=SUBMIT)
    assert refused.status_code == 409 and "upload it first" in refused.json()["detail"]
    viewer = client.post("/api/v1/runners", json=bundle.model_dump(mode="json"), headers=VIEW)
    assert viewer.status_code == 403
    assert _register(client, _bundle("x86_64")) == 201
    (listed,) = client.get("/api/v1/runners", headers=VIEW).json()
    assert (listed["abi"], listed["sha256"], listed["files"]) == (
        "x86_64", _bundle("x86_64").sha256, 1,
    )
    # Registering again for the ABI replaces it.
    newer = b"\x7fELF pretend runner, newer"
    assert _register(client, _bundle("x86_64", newer), newer) == 201
    (listed,) = client.get("/api/v1/runners", headers=VIEW).json()
    assert listed["sha256"] == _bundle("x86_64", newer).sha256


def test_a_job_is_refused_when_a_selected_phones_abi_has_no_runner(
    client: TestClient, dispatcher: Dispatcher
) -> None:
    assert _register(client, _bundle("x86_64")) == 201
    refused = client.post("/api/v1/jobs", json=JOB, headers=SUBMIT)
    assert refused.status_code == 409
    assert "no runner is registered for ABI arm64-v8a" in refused.json()["detail"]
    assert dispatcher.sent == []
    only_x86 = client.post("/api/v1/jobs", json={**JOB, "selector": "soc=SM8550"}, headers=SUBMIT)
    assert only_x86.status_code == 201
    (task,) = dispatcher.sent
    assert set(task.bundles) == {"x86_64"}
    assert task.bundles["x86_64"].sha256 == _bundle("x86_64").sha256
