"""The API over a migrated database and the real Redis broker: roles, jobs, devices, images."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from hexfleet.broker import make_celery
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import make_engine, upgrade
from hexfleet.orchestrator.db.schema import Image
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.settings import Settings

VIEW = {"Authorization": "Bearer viewer-token"}
SUBMIT = {"Authorization": "Bearer submit-token"}
JOB = {
    "kind": "generate",
    "model": "tiny-sd",
    "precision": "fp32",
    "selector": "soc=SM8550",
    "params": {"prompts": ["a red circle on the left in a blue background"]},
}


@pytest.fixture
def client(
    settings: Settings, redis_url: str, add_fleet: Callable[..., None]
) -> Iterator[TestClient]:
    configured = Settings.model_validate(
        {
            **settings.model_dump(),
            "broker_url": redis_url,
            "viewer_tokens": ["viewer-token"],
            "submit_tokens": ["submit-token"],
        }
    )
    upgrade(configured.resolved_database_url)
    engine = make_engine(configured.resolved_database_url)
    with Session(engine) as session:
        add_fleet(session, [("vp-1", "SM8550", 73)])
    engine.dispose()
    app = create_app(configured, CeleryDispatcher(make_celery(configured)))
    with TestClient(app) as test_client:
        yield test_client


def test_reads_need_a_token_and_writes_need_a_submitting_one(client: TestClient) -> None:
    assert client.get("/api/v1/jobs").status_code == 401
    assert client.get("/api/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/v1/jobs", headers=VIEW).status_code == 200
    assert client.post("/api/v1/jobs", json=JOB).status_code == 401
    assert client.post("/api/v1/jobs", json=JOB, headers=VIEW).status_code == 403


def test_submit_show_list_cancel(client: TestClient) -> None:
    created = client.post("/api/v1/jobs", json=JOB, headers=SUBMIT)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["submitted_by"] == "submitter-1"
    assert [r["device_serial"] for r in job["runs"]] == ["vp-1"]
    shown = client.get(f"/api/v1/jobs/{job['id']}", headers=VIEW).json()
    assert shown["state"] == "queued"
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=VIEW).json()] == [job["id"]]
    run_id = job["runs"][0]["id"]
    assert client.get(f"/api/v1/runs/{run_id}", headers=VIEW).json()["state"] == "queued"
    state = f"/api/v1/runs/{run_id}/state"
    assert client.get(state, headers=VIEW).json() == {"id": run_id, "state": "queued"}
    assert client.get(state).status_code == 401
    assert client.get(f"/api/v1/runs/{uuid.uuid4()}/state", headers=VIEW).status_code == 404
    cancelled = client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=SUBMIT).json()
    assert cancelled["state"] == "cancelled"
    # What an agent polls to notice the cancel.
    assert client.get(state, headers=VIEW).json()["state"] == "cancelled"


def test_user_errors_are_4xx_with_a_json_reason(client: TestClient) -> None:
    nothing = client.post("/api/v1/jobs", json={**JOB, "selector": "soc=SM8750"}, headers=SUBMIT)
    assert nothing.status_code == 409
    assert nothing.json() == {
        "error": "Conflict",
        "detail": "no online phone matches the selector 'soc=SM8750'",
    }
    bad_model = client.post("/api/v1/jobs", json={**JOB, "model": "a b"}, headers=SUBMIT)
    assert bad_model.status_code == 422
    assert client.get("/api/v1/jobs/not-a-uuid", headers=VIEW).status_code == 422
    missing = client.get("/api/v1/jobs/00000000-0000-0000-0000-000000000000", headers=VIEW)
    assert missing.status_code == 404


def test_devices_and_images(client: TestClient, settings: Settings) -> None:
    devices = client.get("/api/v1/devices", headers=VIEW).json()
    assert [(d["serial"], d["soc"], d["htp_arch"]) for d in devices] == [("vp-1", "SM8550", 73)]
    job = client.post("/api/v1/jobs", json=JOB, headers=SUBMIT).json()
    engine = make_engine(settings.resolved_database_url)
    with Session(engine) as session:
        image = Image(
            run_id=job["runs"][0]["id"],
            index=0,
            prompt="p",
            seed=1,
            png=b"\x89PNG-bytes",
            sha256="ef" * 32,
        )
        session.add(image)
        session.commit()
        image_id = image.id
    engine.dispose()
    got = client.get(f"/api/v1/images/{image_id}", headers=VIEW)
    assert got.headers["content-type"] == "image/png"
    assert got.content == b"\x89PNG-bytes"
    assert client.get("/docs").status_code == 200


def test_models_and_artifacts(client: TestClient, settings: Settings) -> None:
    listed = client.get("/api/v1/models", headers=VIEW).json()
    assert [(m["name"], m["variant"], m["files"]) for m in listed] == [("tiny-sd", "fp32", 4)]
    manifest = ModelStore.from_settings(settings).load("tiny-sd")
    unet = manifest.components["unet"].file
    got = client.get(f"/api/v1/artifacts/{unet.sha256}", headers=VIEW)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == unet.sha256
    assert client.get("/api/v1/artifacts/..%2Fetc", headers=VIEW).status_code in (400, 404)
    assert client.get(f"/api/v1/artifacts/{'0' * 64}", headers=VIEW).status_code == 404

    body = b"a new model file"
    digest = hashlib.sha256(body).hexdigest()
    assert client.put(f"/api/v1/artifacts/{digest}", content=body, headers=VIEW).status_code == 403
    wrong = client.put(f"/api/v1/artifacts/{'1' * 64}", content=body, headers=SUBMIT)
    assert wrong.status_code == 409
    put = client.put(f"/api/v1/artifacts/{digest}", content=body, headers=SUBMIT)
    assert put.json() == {"sha256": digest, "size": len(body)}
    assert client.get(f"/api/v1/artifacts/{digest}", headers=VIEW).content == body

    renamed = manifest.model_copy(update={"version": "2"}).model_dump(mode="json")
    created = client.post("/api/v1/models", json=renamed, headers=SUBMIT)
    assert created.status_code == 201, created.text
    assert len(client.get("/api/v1/models", headers=VIEW).json()) == 2
    broken = {**renamed, "version": "3", "image_size": -1}
    assert client.post("/api/v1/models", json=broken, headers=SUBMIT).status_code == 422
