"""Artifact uploads and model registration over HTTP: a body that does not hash to its name, one
over HEXFLEET_MAX_ARTIFACT_BYTES, or a manifest naming a file with the wrong size is refused with
a JSON reason, and the model store is left exactly as it was."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from validation_support import RecordingDispatcher

from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import make_engine, upgrade
from hexfleet.settings import Settings

SUBMIT = {"Authorization": "Bearer submit-token"}
VIEW = {"Authorization": "Bearer viewer-token"}
LIMIT = 1000


@pytest.fixture
def client(
    settings: Settings, model_store: ModelStore, add_fleet: Callable[..., None]
) -> Iterator[TestClient]:
    configured = Settings.model_validate(
        {
            **settings.model_dump(),
            "viewer_tokens": ["viewer-token"],
            "submit_tokens": ["submit-token"],
            "max_artifact_bytes": LIMIT,
        }
    )
    upgrade(configured.resolved_database_url)
    engine = make_engine(configured.resolved_database_url)
    with Session(engine) as session:
        add_fleet(session, [("vp-1", "SM8550", 73)])
    engine.dispose()
    app = create_app(configured, RecordingDispatcher())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    app.state.engine.dispose()


def _contents(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_limit_is_a_documented_setting() -> None:
    field = Settings.model_fields["max_artifact_bytes"]
    assert field.default == 4 << 30 and "413" in (field.description or "")


def test_upload_that_does_not_match_its_name(client: TestClient, model_store: ModelStore) -> None:
    before = _contents(model_store.root)
    body = b"x" * 100
    refused = client.put(f"/api/v1/artifacts/{'1' * 64}", content=body, headers=SUBMIT)
    assert refused.status_code == 409
    assert refused.json()["error"] == "ArtifactMismatch"
    assert "hashes to" in refused.json()["detail"] and "\n" not in refused.json()["detail"]
    assert _contents(model_store.root) == before


def test_upload_over_the_limit_is_413(client: TestClient, model_store: ModelStore) -> None:
    before = _contents(model_store.root)
    exact = b"y" * LIMIT
    digest = hashlib.sha256(exact).hexdigest()
    assert client.put(f"/api/v1/artifacts/{digest}", content=exact, headers=SUBMIT).json() == {
        "sha256": digest,
        "size": LIMIT,
    }
    after_exact = _contents(model_store.root)
    assert len(after_exact) == len(before) + 1

    big = b"z" * (LIMIT + 1)
    named = hashlib.sha256(big).hexdigest()
    refused = client.put(f"/api/v1/artifacts/{named}", content=big, headers=SUBMIT)
    assert refused.status_code == 413
    assert refused.json() == {
        "error": "InvalidRequest",
        "detail": f"the upload is larger than the limit of {LIMIT} bytes "
        "(HEXFLEET_MAX_ARTIFACT_BYTES)",
    }

    # A body sent in chunks, without a Content-Length, is cut off as it crosses the limit.
    chunked = client.put(
        f"/api/v1/artifacts/{named}", content=iter([big[:600], big[600:]]), headers=SUBMIT
    )
    assert chunked.status_code == 413
    assert _contents(model_store.root) == after_exact
    assert client.get(f"/api/v1/artifacts/{named}", headers=VIEW).status_code == 404


def test_manifest_whose_hash_does_not_match_its_file(
    client: TestClient, model_store: ModelStore
) -> None:
    manifest = json.loads(model_store.load("tiny-sd").model_dump_json())
    manifest["version"] = "2"
    vae = manifest["components"]["vae_decoder"]["file"]
    manifest["components"]["unet"]["file"]["sha256"] = vae["sha256"]
    before = _contents(model_store.root)
    refused = client.post("/api/v1/models", json=manifest, headers=SUBMIT)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"] == "ArtifactMismatch"
    assert "unet.onnx: stored blob" in refused.json()["detail"]
    assert _contents(model_store.root) == before
    assert [m["version"] for m in client.get("/api/v1/models", headers=VIEW).json()] == ["1"]
