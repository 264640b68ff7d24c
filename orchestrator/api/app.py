"""The FastAPI application: routes over the jobs service and the database, hexfleet errors as 4xx.

`create_app(settings, dispatcher)` builds it; `hexfleet serve` runs it with uvicorn.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from hexfleet import __version__
from hexfleet.errors import (
    ArtifactMismatch,
    HexfleetError,
    InvalidRequest,
    ModelError,
    NotFound,
    NotImplementedYet,
    ServiceUnavailable,
)
from hexfleet.settings import Settings
from orchestrator.api.auth import Caller, Role, require
from orchestrator.api.views import DeviceView, JobView, RunView
from orchestrator.db.engine import make_engine, session_factory
from orchestrator.db.schema import Device, Image, Run
from orchestrator.jobs import Dispatcher, JobRequest, cancel, get_job, list_jobs, submit

STATUS = {
    InvalidRequest: 400,
    ModelError: 400,
    NotFound: 404,
    ArtifactMismatch: 409,
    NotImplementedYet: 501,
    ServiceUnavailable: 503,
}

Viewer = Annotated[Caller, Depends(require(Role.VIEWER))]
Submitter = Annotated[Caller, Depends(require(Role.SUBMITTER))]


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


DB = Annotated[Session, Depends(_session)]


def create_app(settings: Settings, dispatcher: Dispatcher) -> FastAPI:
    app = FastAPI(title="hexfleet", version=__version__, docs_url="/docs")
    app.state.settings = settings
    app.state.engine = make_engine(settings.resolved_database_url)
    app.state.sessions = session_factory(app.state.engine)
    app.state.dispatcher = dispatcher

    @app.exception_handler(HexfleetError)
    async def _hexfleet_error(_request: Request, exc: HexfleetError) -> JSONResponse:
        code = next((c for kind, c in STATUS.items() if isinstance(exc, kind)), 500)
        return JSONResponse({"error": type(exc).__name__, "detail": str(exc)}, status_code=code)

    @app.get("/api/v1/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.post("/api/v1/jobs", status_code=201)
    def post_job(body: JobRequest, caller: Submitter, db: DB) -> JobView:
        job = submit(db, body, app.state.dispatcher, submitted_by=caller.name)
        return JobView.of(job, with_runs=True)

    @app.get("/api/v1/jobs")
    def get_jobs(_: Viewer, db: DB, state: str | None = None, limit: int = 50) -> list[JobView]:
        return [JobView.of(job) for job in list_jobs(db, state, limit)]

    @app.get("/api/v1/jobs/{job_id}")
    def get_one_job(job_id: str, _: Viewer, db: DB) -> JobView:
        return JobView.of(get_job(db, job_id), with_runs=True)

    @app.post("/api/v1/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, _: Submitter, db: DB) -> JobView:
        return JobView.of(cancel(db, job_id, app.state.dispatcher), with_runs=True)

    @app.get("/api/v1/runs/{run_id}")
    def get_run(run_id: str, _: Viewer, db: DB) -> RunView:
        run = db.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        return RunView.of(run)

    @app.get("/api/v1/images/{image_id}", response_class=Response)
    def get_image(image_id: int, _: Viewer, db: DB) -> Response:
        image = db.get(Image, image_id)
        if image is None:
            raise NotFound(f"image {image_id} does not exist")
        return Response(image.png, media_type="image/png", headers={"ETag": image.sha256})

    @app.get("/api/v1/devices")
    def get_devices(_: Viewer, db: DB) -> list[DeviceView]:
        return [DeviceView.of(d) for d in db.scalars(select(Device).order_by(Device.serial))]

    return app
