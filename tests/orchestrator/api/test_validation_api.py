"""Validation over HTTP: submit (submitter), the report as JSON and as a self-contained HTML page
(viewer), refused bodies, and a report asked of a job that is not a validation."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from validation_support import RecordingDispatcher, play_phones

from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import make_engine, upgrade
from hexfleet.settings import Settings

VIEW = {"Authorization": "Bearer viewer-token"}
SUBMIT = {"Authorization": "Bearer submit-token"}
BODY = {
    "model": "tiny-sd",
    "precision": "fp32",
    "selector": "all",
    "prompt_count": 2,
    "steps": 2,
    "runtime": "cpu",
}


@dataclass
class Api:
    client: TestClient
    dispatcher: RecordingDispatcher
    settings: Settings
    store: ModelStore

    def play(self, root: Path, faulty: dict[str, float] | None = None) -> None:
        engine = make_engine(self.settings.resolved_database_url)
        with Session(engine) as session:
            play_phones(session, self.dispatcher, self.store, root, faulty)
        engine.dispose()


@pytest.fixture
def api(
    settings: Settings, model_store: ModelStore, add_fleet: Callable[..., None]
) -> Iterator[Api]:
    configured = settings.model_copy(
        update={"viewer_tokens": ["viewer-token"], "submit_tokens": ["submit-token"]}
    )
    configured = Settings.model_validate(configured.model_dump())
    upgrade(configured.resolved_database_url)
    engine = make_engine(configured.resolved_database_url)
    with Session(engine) as session:
        add_fleet(session, [("vp-1", "SM8550", 73), ("vp-2", "SM8650", 75)])
    engine.dispose()
    dispatcher = RecordingDispatcher()
    with TestClient(create_app(configured, dispatcher)) as client:
        yield Api(client, dispatcher, configured, model_store)


def test_submit_then_read_the_report_as_json_and_html(api: Api, tmp_path: Path) -> None:
    assert api.client.post("/api/v1/validations", json=BODY, headers=VIEW).status_code == 403
    created = api.client.post("/api/v1/validations", json=BODY, headers=SUBMIT)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["kind"] == "validate" and len(job["runs"]) == 2
    pending = api.client.get(f"/api/v1/jobs/{job['id']}/validation", headers=VIEW).json()
    assert pending["complete"] is False and pending["passed"] is False

    api.play(tmp_path, faulty={"vp-2": 0.05})
    report = api.client.get(f"/api/v1/jobs/{job['id']}/validation", headers=VIEW).json()
    assert report["complete"] is True and report["passed"] is False
    verdicts = {p["serial"]: p for p in report["phones"]}
    assert verdicts["vp-1"]["passed"] is True and verdicts["vp-2"]["passed"] is False
    assert "PSNR" in verdicts["vp-2"]["reason"]
    assert report["matrix"]["vp-1"]["vp-2"]["agree"] is False
    assert report["outliers"] == []  # two phones that disagree: the reference decides

    page = api.client.get(f"/api/v1/jobs/{job['id']}/validation.html", headers=VIEW)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert html.count("data:image/png;base64,") == 2 * 3  # reference + two phones, 2 prompts
    assert "<script" not in html and not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<style>" in html and "simulated" in html and "FAIL" in html


def test_refused_bodies_and_reports_of_other_jobs(api: Api) -> None:
    for bad in (
        {**BODY, "reference": "serial=vp-1 && reboot"},
        {**BODY, "inputs": 2, "prompts": ["a red circle on the left in a blue background"]},
        {**BODY, "precision": "int4"},
        {**BODY, "extra": 1},
    ):
        assert api.client.post("/api/v1/validations", json=bad, headers=SUBMIT).status_code == 422
    unknown = {**BODY, "prompts": ["a red circle; reboot"]}
    refused = api.client.post("/api/v1/validations", json=unknown, headers=SUBMIT)
    assert refused.status_code == 400 and "vocabulary" in refused.json()["detail"]
    generate = {
        "kind": "generate",
        "model": "tiny-sd",
        "precision": "fp32",
        "params": {"prompts": ["a red circle on the left in a blue background"]},
    }
    job = api.client.post("/api/v1/jobs", json=generate, headers=SUBMIT).json()
    answer = api.client.get(f"/api/v1/jobs/{job['id']}/validation", headers=VIEW)
    assert answer.status_code == 400 and "not a validation" in answer.json()["detail"]
    missing = "00000000-0000-0000-0000-000000000000"
    assert api.client.get(f"/api/v1/jobs/{missing}/validation", headers=VIEW).status_code == 404
