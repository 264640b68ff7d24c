"""A populated orchestrator for dashboard and /metrics tests: phones by heartbeat, jobs submitted
to the real Redis broker, results stored by the real ingest code (no rows written by hand)."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from hexfleet.broker import make_celery
from hexfleet.bundle import RunnerInfo
from hexfleet.messages import DeviceFacts, DeviceHealth, Heartbeat, ImageOut, RunResult
from hexfleet.orchestrator.api.app import create_app
from hexfleet.orchestrator.db.engine import make_engine, upgrade
from hexfleet.orchestrator.db.schema import Job
from hexfleet.orchestrator.dispatch import CeleryDispatcher
from hexfleet.orchestrator.ingest import ingest_heartbeat, ingest_result
from hexfleet.orchestrator.jobs import JobRequest, submit
from hexfleet.settings import Settings

VIEWER = "viewer-token"
SUBMITTER = "submit-token"
PHONES = [("vp-1", "SM8550", 73), ("vp-2", "SM8650", 75), ("vp-3", "SM8750", 79)]
PROMPT = "a red circle on the left in a blue background"


def png(colour: tuple[int, int, int], size: int = 32) -> bytes:
    out = io.BytesIO()
    PILImage.new("RGB", (size, size), colour).save(out, format="PNG")
    return out.getvalue()


def heartbeat(
    serial: str, soc: str, arch: int, state: str = "idle", **health: object
) -> Heartbeat:
    return Heartbeat(
        host="host-a",
        facts=DeviceFacts(serial=serial, soc=soc, htp_arch=arch, model="Galaxy", is_virtual=True),
        health=DeviceHealth(
            battery_level=health.get("battery", 80),  # type: ignore[arg-type]
            max_temp_c=health.get("temp", 36.5),  # type: ignore[arg-type]
            throttled=bool(health.get("throttled", False)),
        ),
        state=state,  # type: ignore[arg-type]
        sent_at=dt.datetime.now(dt.UTC),
    )


@dataclass
class Populated:
    client: TestClient
    settings: Settings
    generate_id: str
    benchmark_ids: list[str]
    queued_id: str

    def login(self, token: str) -> None:
        response = self.client.get(f"/ui/fleet?token={token}", follow_redirects=False)
        assert response.status_code == 303, response.text
        assert response.headers["location"] == "/ui/fleet"


def _finish(session: Session, job: Job, make: Callable[[int, str], RunResult]) -> None:
    for i, run in enumerate(job.runs):
        assert ingest_result(session, make(i, run.id))
        session.commit()


def populate(settings: Settings, add_fleet: Callable[..., None]) -> Iterator[Populated]:
    """Three phones; a finished generate job with images, two finished benchmark jobs and a
    queued job whose runs wait on the broker."""
    upgrade(settings.resolved_database_url)
    engine = make_engine(settings.resolved_database_url)
    dispatcher = CeleryDispatcher(make_celery(settings))
    now = dt.datetime.now(dt.UTC)
    with Session(engine) as session:
        add_fleet(session, [])
        for serial, soc, arch in PHONES:
            ingest_heartbeat(session, heartbeat(serial, soc, arch))
        session.commit()

        generate = submit(
            session,
            JobRequest(
                kind="generate", model="tiny-sd", precision="fp32", params={"prompts": [PROMPT]}
            ),
            dispatcher,
            submitted_by="submitter-1",
        )
        _finish(
            session,
            generate,
            lambda i, run_id: RunResult(
                run_id=run_id,
                attempt=1,
                serial=PHONES[i][0],
                host="host-a",
                outcome="succeeded",
                simulated=True,
                timings={
                    "load_s": 0.5,
                    "text_encoder_s": [0.01],
                    "unet_steps_s": [0.2, 0.2, 0.2],
                    "unet_step_mean_s": 0.2,
                    "vae_decoder_s": [0.05],
                    "total_s": 1.3,
                },
                metrics={"steps": 3, "pushed_bytes": 1000 if i == 0 else 0, "cached_files": 3 * i},
                runner=RunnerInfo(bundle_sha256="b" * 64, runner_version="2.0.0", abi="x86_64"),
                images=[ImageOut(index=0, prompt=PROMPT, seed=7, png=png((200, 30 * i, 30)))],
                started_at=now - dt.timedelta(seconds=4),
                finished_at=now - dt.timedelta(seconds=1),
            ),
        )
        benchmark_ids = []
        for round_ in range(2):
            bench = submit(
                session,
                JobRequest(
                    kind="benchmark",
                    model="tiny-sd",
                    precision="fp32",
                    params={"component": "unet", "iterations": 5},
                ),
                dispatcher,
                submitted_by="submitter-1",
            )
            _finish(
                session,
                bench,
                lambda i, run_id, r=round_: RunResult(
                    run_id=run_id,
                    attempt=1,
                    serial=PHONES[i][0],
                    host="host-a",
                    outcome="succeeded",
                    simulated=True,
                    timings={
                        "load_ms": 300.0,
                        "first_ms": 80.0,
                        "iterations_ms": [50.0 + 10 * i + r + k for k in range(5)],
                        "p50_ms": 52.0 + 10 * i + r,
                        "p90_ms": 54.0 + 10 * i + r,
                        "p99_ms": 54.0 + 10 * i + r,
                    },
                    metrics={"component": "unet", "npu_share": 1.0, "runtime": "htp"},
                    started_at=now - dt.timedelta(seconds=20),
                    finished_at=now - dt.timedelta(seconds=5),
                ),
            )
            benchmark_ids.append(bench.id)
        queued = submit(
            session,
            JobRequest(
                kind="generate",
                model="tiny-sd",
                precision="fp32",
                selector="soc=SM8550",
                params={"prompts": ["<script>alert(1)</script> a green cross"]},
            ),
            dispatcher,
            submitted_by="submitter-1",
        )
        ids = (generate.id, queued.id)
    engine.dispose()
    app = create_app(settings, dispatcher)
    with TestClient(app) as client:
        yield Populated(client, settings, ids[0], benchmark_ids, ids[1])


@pytest.fixture
def populated(
    settings: Settings, redis_url: str, database_url: str, add_fleet: Callable[..., None]
) -> Iterator[Populated]:
    configured = Settings.model_validate(
        {
            **settings.model_dump(),
            "database_url": database_url,
            "broker_url": redis_url,
            "viewer_tokens": [VIEWER],
            "submit_tokens": [SUBMITTER],
        }
    )
    yield from populate(configured, add_fleet)
