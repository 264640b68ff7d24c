"""Validation over HTTP: submit (submitter), the report as JSON and as a self-contained HTML page
(viewer), refused bodies, a report asked of a job that is not a validation, and a read while the
ingest worker compares (it answers at once; the worker stores the verdicts once)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from validation_support import RecordingDispatcher, phone_results, play_phones

from hexfleet.manifest import Manifest
from hexfleet.messages import RunResult
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import make_engine, session_factory, upgrade
from hexfleet.orchestrator.db.schema import ValidationBlob, ValidationResult
from hexfleet.orchestrator.worker import ingest_result_and_report, report_unreported
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
    assert refused.status_code == 409 and "vocabulary" in refused.json()["detail"]
    generate = {
        "kind": "generate",
        "model": "tiny-sd",
        "precision": "fp32",
        "params": {"prompts": ["a red circle on the left in a blue background"]},
    }
    job = api.client.post("/api/v1/jobs", json=generate, headers=SUBMIT).json()
    answer = api.client.get(f"/api/v1/jobs/{job['id']}/validation", headers=VIEW)
    assert answer.status_code == 409 and "not a validation" in answer.json()["detail"]
    missing = "00000000-0000-0000-0000-000000000000"
    assert api.client.get(f"/api/v1/jobs/{missing}/validation", headers=VIEW).status_code == 404


class HeldStore(ModelStore):
    """The model store, holding the worker at its first manifest load (the host reference's FP32
    model, the start of the comparison) until the test releases it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.computing = threading.Event()
        self.release = threading.Event()

    def load(self, *args: object, **kwargs: object) -> Manifest:
        self.computing.set()
        assert self.release.wait(60), "the test never released the worker"
        return super().load(*args, **kwargs)  # type: ignore[arg-type]


def _stored(sessions: Callable[[], Session], job_id: str) -> tuple[int, int]:
    with sessions() as session:
        rows = session.scalar(
            select(func.count())
            .select_from(ValidationResult)
            .where(ValidationResult.job_id == job_id)
        )
        blobs = session.scalar(
            select(func.count()).select_from(ValidationBlob).where(ValidationBlob.job_id == job_id)
        )
    return rows or 0, blobs or 0


def test_a_read_answers_at_once_while_the_worker_compares(api: Api, tmp_path: Path) -> None:
    """The last result's write (the ingest worker's) computes the reference and the verdicts; a
    GET meanwhile answers "pending" at once, and the verdicts are stored once: a redelivered
    result and the worker's sweep add no second copy."""
    job = api.client.post("/api/v1/validations", json=BODY, headers=SUBMIT).json()
    results = phone_results(api.dispatcher, api.store, tmp_path)
    sessions = session_factory(make_engine(api.settings.resolved_database_url))
    *first, last = results
    for result in first:
        with sessions() as session:
            ingest_result_and_report(session, result, None, api.store)
            session.commit()

    held = HeldStore(api.store.root)

    def write(result: RunResult) -> None:  # what the worker's result task does
        with sessions() as session:
            ingest_result_and_report(session, result, None, held)
            session.commit()

    worker = threading.Thread(target=write, args=(last,))
    worker.start()
    try:
        assert held.computing.wait(30), "the worker never started comparing"
        started = time.monotonic()
        pending = api.client.get(f"/api/v1/jobs/{job['id']}/validation", headers=VIEW)
        took = time.monotonic() - started
        assert pending.status_code == 200 and took < 2.0, took
        assert pending.json()["complete"] is False and pending.json()["passed"] is False
        page = api.client.get(f"/api/v1/jobs/{job['id']}/validation.html", headers=VIEW)
        assert page.status_code == 200 and time.monotonic() - started < 4.0
    finally:
        held.release.set()
        worker.join(60)
    assert not worker.is_alive()

    report = api.client.get(f"/api/v1/jobs/{job['id']}/validation", headers=VIEW).json()
    assert report["complete"] is True and report["passed"] is True, report["phones"]
    stored = _stored(sessions, job["id"])
    assert stored == (2 * (1 + 2), 2)  # per phone: its verdict and one per prompt; 2 references

    write(last)  # the same result redelivered: the run has it already, nothing is compared
    assert report_unreported(sessions, api.store) == []  # the sweep finds nothing to do
    assert _stored(sessions, job["id"]) == stored
    again = api.client.get(f"/api/v1/jobs/{job['id']}/validation", headers=VIEW).json()
    assert again == report


def test_a_settled_job_without_verdicts_is_read_as_pending_and_swept(
    api: Api, tmp_path: Path
) -> None:
    """A cancelled validation settles with no result to carry its verdicts: reading it computes
    nothing (no reference is drawn), and the worker's sweep stores them once."""
    job = api.client.post("/api/v1/validations", json=BODY, headers=SUBMIT).json()
    cancelled = api.client.post(f"/api/v1/jobs/{job['id']}/cancel", headers=SUBMIT)
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    sessions = session_factory(make_engine(api.settings.resolved_database_url))
    pending = api.client.get(f"/api/v1/jobs/{job['id']}/validation", headers=VIEW).json()
    assert pending["complete"] is False and pending["state"] == "cancelled"
    assert {p["reason"] for p in pending["phones"]} == {"verdicts not stored yet"}
    assert _stored(sessions, job["id"]) == (0, 0)

    assert report_unreported(sessions, api.store) == [job["id"]]
    assert report_unreported(sessions, api.store) == []
    stored = _stored(sessions, job["id"])
    assert stored == (2, 2)  # one verdict per phone (no outputs); the reference's two images
    report = api.client.get(f"/api/v1/jobs/{job['id']}/validation", headers=VIEW).json()
    assert report["complete"] is True and report["passed"] is False
    assert all(p["reason"].startswith("run cancelled") for p in report["phones"])
