"""Hostile input through the API (SQLite and the real PostgreSQL): always a 4xx with the API's
JSON error body, never a 500 or a traceback — NUL bytes, newlines, over-long strings, ids beyond
64 bits, NaN and infinities in JSON bodies."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy.orm import Session
from validation_support import RecordingDispatcher

from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import make_engine, upgrade
from hexfleet.settings import Settings

VIEW = {"Authorization": "Bearer viewer-token"}
SUBMIT = {"Authorization": "Bearer submit-token"}
JSON = {"Content-Type": "application/json"}
JOB = (
    '{"kind": "generate", "model": "tiny-sd", "precision": "fp32", "selector": "all", '
    '"params": {"prompts": ["a red circle"]}'
)
LONG = "x" * 100_000  # in bodies
LONG_PART = "x" * 8_000  # in URLs (httpx refuses URLs over 64 KiB)
NUL = quote("a\x00b")
NEWLINE = quote("00000000-0000-0000-0000-000000000000\n")


@pytest.fixture
def client(
    settings: Settings, database_url: str, add_fleet: Callable[..., None]
) -> Iterator[TestClient]:
    configured = Settings.model_validate(
        {
            **settings.model_dump(),
            "database_url": database_url,
            "viewer_tokens": ["viewer-token"],
            "submit_tokens": ["submit-token"],
        }
    )
    upgrade(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        add_fleet(session, [("vp-1", "SM8550", 73)])
    engine.dispose()
    app = create_app(configured, RecordingDispatcher())
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
    app.state.engine.dispose()


GETS = [
    f"/api/v1/jobs?state={NUL}",
    f"/api/v1/jobs?state={LONG_PART}",
    f"/api/v1/jobs?state={quote(chr(10))}",
    f"/api/v1/jobs?limit={2**70}",
    "/api/v1/jobs?limit=NaN",
    f"/api/v1/jobs/{NEWLINE}",
    f"/api/v1/jobs/{NUL}",
    f"/api/v1/jobs/{LONG_PART}",
    f"/api/v1/jobs/{NEWLINE}/benchmark",
    f"/api/v1/jobs/{NUL}/benchmark",
    f"/api/v1/compare?a={NUL}&b={NEWLINE}",
    f"/api/v1/compare?a={NEWLINE}&b={NEWLINE}&threshold=NaN",
    "/api/v1/compare?a=x&b=y&threshold=Infinity",
    f"/api/v1/runs/{NEWLINE}",
    f"/api/v1/runs/{NUL}",
    f"/api/v1/runs/{LONG_PART}",
    f"/api/v1/runs/{NUL}/state",
    f"/api/v1/runs/{LONG_PART}/state",
    f"/api/v1/images/{2**45}",
    f"/api/v1/images/{2**63}",
    f"/api/v1/images/{2**70}",
    "/api/v1/images/-1",
    "/api/v1/images/1e400",
    f"/api/v1/artifacts/{NUL}",
    f"/api/v1/artifacts/{'a' * 64}{quote(chr(10))}",
]

SUBMIT_BODIES = [
    JOB.replace('"selector": "all"', '"deadline_s": NaN') + "}",
    JOB.replace('"selector": "all"', '"deadline_s": Infinity') + "}",
    JOB.replace('"selector": "all"', '"priority": -Infinity') + "}",
    JOB.replace('"selector": "all"', f'"priority": {2**70}') + "}",
    JOB.replace('"selector": "all"', f'"repeat": {2**64}') + "}",
    JOB.replace('"a red circle"]', '"a red circle"], "guidance": NaN') + "}",
    JOB.replace('"a red circle"]', f'"a red circle"], "seed": {2**70}') + "}",
    JOB.replace("a red circle", "a red\\u0000circle") + "}",
    JOB.replace("a red circle", LONG) + "}",
    JOB.replace("tiny-sd", "tiny\\u0000sd") + "}",
    JOB.replace("tiny-sd", "tiny-sd\\n") + "}",
    JOB.replace('"all"', '"soc=\\u0000"') + "}",
    JOB.replace('"all"', f'"soc={LONG}"') + "}",
    JOB.replace('"all"', '"model=a\\nb"') + "}",
    JOB.replace('"fp32"', '"fp32\\u0000"') + "}",
    JOB + ', "params": {"prompts": [NaN]}}',
    "NaN",
    "[1e400]",
    "{" * 10_000 + "}" * 10_000,
]


def _is_json_error(response: Any) -> bool:
    body = response.json()
    return isinstance(body, dict) and ("detail" in body or "error" in body)


@pytest.mark.parametrize("path", GETS)
def test_hostile_reads_are_4xx(client: TestClient, path: str) -> None:
    response = client.get(path, headers=VIEW)
    assert 400 <= response.status_code < 500, (path[:80], response.status_code, response.text)
    assert _is_json_error(response), response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("body", SUBMIT_BODIES, ids=lambda b: b[:60])
def test_hostile_submissions_are_4xx(client: TestClient, body: str) -> None:
    response = client.post("/api/v1/jobs", content=body, headers={**SUBMIT, **JSON})
    assert 400 <= response.status_code < 500, (body[:120], response.status_code, response.text)
    assert _is_json_error(response), response.text


def test_hostile_writes_elsewhere_are_4xx(client: TestClient) -> None:
    for path in (f"/api/v1/jobs/{NEWLINE}/cancel", f"/api/v1/jobs/{NUL}/cancel"):
        response = client.post(path, headers=SUBMIT)
        assert response.status_code == 422, (path, response.text)
        assert _is_json_error(response)
    models = ('{"name": "x", "image_size": NaN}', '{"name": "x", "latent_scale": Infinity}')
    for body in models:
        response = client.post("/api/v1/models", content=body, headers={**SUBMIT, **JSON})
        assert 400 <= response.status_code < 500, (body, response.text)
        assert _is_json_error(response)
    data = b"bytes"
    named = hashlib.sha256(data).hexdigest()
    newline = client.put(f"/api/v1/artifacts/{named}{quote(chr(10))}", content=data, headers=SUBMIT)
    assert newline.status_code == 422 and _is_json_error(newline)


def test_a_manifest_cannot_name_a_path_outside_the_store(
    client: TestClient, model_store: ModelStore, tmp_path: Path
) -> None:
    """A manifest's htp_arch becomes part of a file name in the store: digits only, or a 422
    (it once wrote `manifests/<name>/<version>/fp32-v<htp_arch>.json` wherever `..` led)."""
    target = tmp_path / "outside"
    manifest = model_store.load("tiny-sd").model_dump(mode="json")
    for htp_arch in ("/../../../../../../../../.." + str(target), "../x", "7\n3", "73\u0000"):
        body = {**manifest, "version": "9", "htp_arch": htp_arch}
        refused = client.post("/api/v1/models", json=body, headers=SUBMIT)
        assert refused.status_code == 422, (htp_arch, refused.text)
    named = {**manifest, "version": "9"}
    named["tokenizer"]["files"][0]["name"] = "vocab\u0000.json"
    assert client.post("/api/v1/models", json=named, headers=SUBMIT).status_code == 422
    assert not list(tmp_path.glob("outside*"))
    assert [p.name for p in (model_store.manifests / "tiny-sd").iterdir()] == ["1"]


def test_bodies_that_are_not_utf8_are_a_422(client: TestClient) -> None:
    for path in ("/api/v1/jobs", "/api/v1/models", "/api/v1/validations", "/api/v1/runners"):
        response = client.post(path, content=b"\xff\xfe{", headers={**SUBMIT, **JSON})
        assert response.status_code == 422, (path, response.text)
        assert response.json()["detail"][0]["type"] == "json_invalid"


def test_refusals_share_one_body_and_405_names_every_method(client: TestClient) -> None:
    unauthenticated = client.get("/api/v1/jobs")
    assert unauthenticated.status_code == 401
    assert unauthenticated.json() == {
        "error": "Unauthorized", "detail": "a valid bearer token is required"
    }
    assert unauthenticated.headers["WWW-Authenticate"] == "Bearer"
    forbidden = client.post("/api/v1/jobs", content=JOB + "}", headers={**VIEW, **JSON})
    assert forbidden.status_code == 403 and forbidden.json()["error"] == "Forbidden"
    for path, methods in (
        ("/api/v1/jobs", "GET, POST"),
        ("/api/v1/models", "GET, POST"),
        (f"/api/v1/artifacts/{'a' * 64}", "GET, PUT"),
    ):
        answer = client.delete(path, headers=SUBMIT)
        assert answer.status_code == 405 and answer.headers["Allow"] == methods, path
        assert answer.json()["error"] == "MethodNotAllowed"


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=300))
def test_any_id_or_filter_is_answered_without_a_500(client: TestClient, text: str) -> None:
    """Whatever characters a job id, run id or state filter holds, the answer is not a 5xx."""
    part = quote(text, safe="")
    for path in (
        f"/api/v1/jobs/{part}",
        f"/api/v1/runs/{part}",
        f"/api/v1/runs/{part}/state",
        f"/api/v1/jobs?state={part}",
        f"/api/v1/compare?a={part}&b={part}",
    ):
        response = client.get(path, headers=VIEW)
        assert response.status_code < 500, (path, response.status_code, response.text)


def test_prompts_are_data_not_commands(client: TestClient) -> None:
    """Shell metacharacters and newlines in a prompt are accepted and kept verbatim."""
    prompt = "a red\ncircle; rm -rf / $(id) `id` | tee ../x 'q' \"q\""
    body = JOB.replace('"a red circle"', json.dumps(prompt)) + "}"
    created = client.post("/api/v1/jobs", content=body, headers={**SUBMIT, **JSON})
    assert created.status_code == 201, created.text
    assert created.json()["spec"]["params"]["prompts"] == [prompt]


def test_nan_is_refused_with_the_reason(client: TestClient) -> None:
    body = JOB.replace('"selector": "all"', '"deadline_s": NaN') + "}"
    refused = client.post("/api/v1/jobs", content=body, headers={**SUBMIT, **JSON})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["ctx"]["error"].startswith("NaN is not a JSON number")
