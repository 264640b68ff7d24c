"""Benchmark statistics and job comparison over the API: viewer token, per-phone statistics in the
finished job's view, `/compare` with its verdicts, simulated timings labelled, errors as 4xx."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from benchmark_support import store_benchmark_job, timings
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from hexfleet.broker import make_celery
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import make_engine, upgrade
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.settings import Settings
from hexfleet.states import JobState

VIEW = {"Authorization": "Bearer viewer-token"}


@pytest.fixture
def api(settings: Settings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    configured = Settings.model_validate(
        {**settings.model_dump(), "viewer_tokens": ["viewer-token"]}
    )
    upgrade(configured.resolved_database_url)
    engine = make_engine(configured.resolved_database_url)
    rng = np.random.default_rng(21)
    with Session(engine) as session:
        jobs = {
            "base": store_benchmark_job(
                session, {"vp-1": [timings(rng, 30)], "vp-2": [timings(rng, 30)]}
            ).id,
            "slow": store_benchmark_job(
                session,
                {"vp-1": [timings(rng, 30, median=108.0)], "vp-2": [timings(rng, 30)]},
                simulated=False,
            ).id,
            "running": store_benchmark_job(
                session, {"vp-1": [timings(rng, 30)]}, state=JobState.RUNNING
            ).id,
        }
    engine.dispose()
    app = create_app(configured, CeleryDispatcher(make_celery(configured)))
    with TestClient(app) as client:
        yield client, jobs


def test_compare_flags_the_slowed_phone_and_labels_simulated_timings(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, jobs = api
    url = f"/api/v1/compare?a={jobs['base']}&b={jobs['slow']}"
    assert client.get(url).status_code == 401
    found = client.get(url, headers=VIEW)
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["version"] == 1 and body["regressions"] == 1 and body["simulated"] is True
    latency = {c["serial"]: c for c in body["changes"] if c["metric"] == "iterations_ms"}
    assert latency["vp-1"]["verdict"] == "regression"
    assert latency["vp-1"]["ci_low"] < latency["vp-1"]["change"] < latency["vp-1"]["ci_high"]
    assert latency["vp-2"]["verdict"] == "unchanged"
    strict = client.get(f"{url}&threshold=0.5", headers=VIEW).json()
    assert strict["regressions"] == 0, "an 8 % change is below a 50 % threshold"

    assert client.get(f"{url}&threshold=-1", headers=VIEW).status_code == 422
    bad = client.get(f"/api/v1/compare?a=x;reboot&b={jobs['slow']}", headers=VIEW)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "a"]
    missing = f"/api/v1/compare?a=00000000-0000-0000-0000-000000000000&b={jobs['slow']}"
    assert client.get(missing, headers=VIEW).status_code == 404
    unfinished = client.get(f"/api/v1/compare?a={jobs['base']}&b={jobs['running']}", headers=VIEW)
    assert unfinished.status_code == 409 and "still running" in unfinished.json()["detail"]


def test_a_finished_benchmark_job_shows_its_statistics_per_phone(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, jobs = api
    job = client.get(f"/api/v1/jobs/{jobs['base']}", headers=VIEW).json()
    stats = {s["serial"]: s for s in job["benchmark"]}
    assert sorted(stats) == ["vp-1", "vp-2"]
    latency = stats["vp-1"]["latency"]
    assert latency["n"] == 30 and latency["ci_low"] <= latency["median"] <= latency["ci_high"]
    assert latency["p99"] >= latency["p90"] >= latency["median"] and latency["cv"] > 0
    assert stats["vp-1"]["simulated"] is True
    assert client.get(f"/api/v1/jobs/{jobs['running']}", headers=VIEW).json()["benchmark"] is None
    direct = client.get(f"/api/v1/jobs/{jobs['slow']}/benchmark", headers=VIEW).json()
    assert [s["simulated"] for s in direct] == [False, False]
