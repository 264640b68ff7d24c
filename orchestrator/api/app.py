"""The FastAPI application: routes over the jobs service and the database, hexfleet errors as 4xx.

`create_app(settings, dispatcher)` builds it; `hexfleet serve` runs it with uvicorn.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from hexfleet import __version__
from hexfleet.bundle import RunnerBundle
from hexfleet.errors import (
    ArtifactMismatch,
    HexfleetError,
    InvalidRequest,
    ModelError,
    NotFound,
    ServiceUnavailable,
)
from hexfleet.manifest import SHA256_PATTERN, parse_manifest
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.api.auth import Caller, Role, require
from hexfleet.orchestrator.api.json_body import StrictJSONRoute
from hexfleet.orchestrator.api.views import (
    ComparisonView,
    DeviceView,
    JobView,
    ModelView,
    RunnerView,
    RunView,
)
from hexfleet.orchestrator.compare import THRESHOLD, compare
from hexfleet.orchestrator.db.engine import make_engine, session_factory
from hexfleet.orchestrator.db.schema import Device, Image, Model, Run, RunnerBundleRow
from hexfleet.orchestrator.jobs import Dispatcher, JobRequest, cancel, get_job, list_jobs, submit
from hexfleet.orchestrator.metrics import CONTENT_TYPE, exposition, registry_for
from hexfleet.orchestrator.registry import register
from hexfleet.orchestrator.runners import register_bundle as register_runner
from hexfleet.orchestrator.statistics import PhoneStats, job_benchmark_stats
from hexfleet.orchestrator.validation.rendering import render_html
from hexfleet.orchestrator.validation.report import load_report, report_images
from hexfleet.orchestrator.validation.submission import ValidationRequest, submit_validation
from hexfleet.orchestrator.web.routes import mount as mount_dashboard
from hexfleet.settings import Settings
from hexfleet.states import JobState

STATUS = {
    InvalidRequest: 400,
    ModelError: 400,
    NotFound: 404,
    ArtifactMismatch: 409,
    ServiceUnavailable: 503,
}

# images.id is a 32-bit INTEGER column: a larger id cannot name an image (PostgreSQL would
# refuse to compare it, a 500), so the path parameter says so and FastAPI answers 422.
ImageId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]

Viewer = Annotated[Caller, Depends(require(Role.VIEWER))]
Submitter = Annotated[Caller, Depends(require(Role.SUBMITTER))]


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


DB = Annotated[Session, Depends(_session)]


def _check_sha(sha256: str) -> None:
    # fullmatch: the pattern's `$` also matches before a trailing newline.
    if not SHA256_PATTERN.fullmatch(sha256):
        raise InvalidRequest(f"{sha256[:80]!r} is not a sha256 hex digest")


def _check_run_id(run_id: str) -> None:
    """Run ids are UUIDs; anything else (NUL, newlines, megabytes) never reaches the database."""
    try:
        uuid.UUID(run_id)
    except ValueError:
        raise InvalidRequest(f"{run_id[:80]!r} is not a run id") from None


def _error(status_code: int, kind: str, detail: str) -> JSONResponse:
    """The API's error body: the error kind and a one-line reason."""
    return JSONResponse({"error": kind, "detail": detail}, status_code=status_code)


def create_app(settings: Settings, dispatcher: Dispatcher) -> FastAPI:
    app = FastAPI(title="hexfleet", version=__version__, docs_url="/docs")
    app.router.route_class = StrictJSONRoute
    app.state.settings = settings
    app.state.engine = make_engine(settings.resolved_database_url)
    app.state.sessions = session_factory(app.state.engine)
    app.state.dispatcher = dispatcher
    store = ModelStore.from_settings(settings)
    store.root.mkdir(parents=True, exist_ok=True)
    app.state.store = store

    @app.exception_handler(HexfleetError)
    async def _hexfleet_error(_request: Request, exc: HexfleetError) -> JSONResponse:
        code = next((c for kind, c in STATUS.items() if isinstance(exc, kind)), 500)
        return _error(code, type(exc).__name__, str(exc))

    @app.get("/api/v1/health", responses={503: {"description": "a part of the server is down"}})
    def health() -> dict[str, str]:
        """ok, or 503 while a process this server depends on is down (its ingest worker)."""
        ingest_alive = getattr(app.state, "ingest_alive", None)
        if ingest_alive is not None and not ingest_alive():
            raise ServiceUnavailable("the ingest worker is not running (being restarted)")
        return {"status": "ok", "version": __version__}

    @app.post("/api/v1/jobs", status_code=201)
    def post_job(body: JobRequest, caller: Submitter, db: DB) -> JobView:
        job = submit(db, body, app.state.dispatcher, submitted_by=caller.name)
        return JobView.of(job, with_runs=True)

    @app.get("/api/v1/jobs")
    def get_jobs(
        _: Viewer,
        db: DB,
        state: JobState | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[JobView]:
        return [JobView.of(job) for job in list_jobs(db, state, limit)]

    @app.get("/api/v1/jobs/{job_id}")
    def get_one_job(job_id: str, _: Viewer, db: DB) -> JobView:
        return JobView.of(get_job(db, job_id), with_runs=True)

    @app.post("/api/v1/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, _: Submitter, db: DB) -> JobView:
        return JobView.of(cancel(db, job_id, app.state.dispatcher), with_runs=True)

    @app.get("/api/v1/jobs/{job_id}/benchmark")
    def get_benchmark_stats(job_id: str, _: Viewer, db: DB) -> list[PhoneStats]:
        """A benchmark job's latency statistics per phone (each one says if it is simulated)."""
        return job_benchmark_stats(db, job_id)

    @app.get("/api/v1/compare")
    def get_comparison(
        a: str, b: str, _: Viewer, db: DB, threshold: float = THRESHOLD
    ) -> ComparisonView:
        """Job b against job a (the baseline), per phone and timing metric."""
        return ComparisonView.of(compare(db, a, b, threshold=threshold))

    @app.post("/api/v1/validations", status_code=201)
    def post_validation(body: ValidationRequest, caller: Submitter, db: DB) -> JobView:
        """Submit a validation job: the same inputs on every selected phone."""
        job = submit_validation(db, body, app.state.dispatcher, caller.name, store)
        return JobView.of(job, with_runs=True)

    @app.get("/api/v1/jobs/{job_id}/validation")
    def get_validation(job_id: str, _: Viewer, db: DB) -> dict[str, Any]:
        """A validation job's verdicts as the ingest worker stored them when it ended
        (`complete: false` until then): reading never computes."""
        return load_report(db, job_id).to_dict()

    @app.get("/api/v1/jobs/{job_id}/validation.html", response_class=HTMLResponse)
    def get_validation_html(job_id: str, _: Viewer, db: DB) -> HTMLResponse:
        """The same report as one self-contained HTML page (images inline, no scripts)."""
        report = load_report(db, job_id)
        return HTMLResponse(render_html(report, report_images(db, get_job(db, job_id))))

    @app.get("/api/v1/runs/{run_id}")
    def get_run(run_id: str, _: Viewer, db: DB) -> RunView:
        _check_run_id(run_id)
        run = db.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        return RunView.of(run)

    @app.get("/api/v1/runs/{run_id}/state")
    def get_run_state(run_id: str, _: Viewer, db: DB) -> dict[str, str]:
        """Only a run's state: what agents poll to notice a cancel (cheaper than the run)."""
        _check_run_id(run_id)
        state = db.scalar(select(Run.state).where(Run.id == run_id))
        if state is None:
            raise NotFound(f"run {run_id} does not exist")
        return {"id": run_id, "state": str(state)}

    @app.get("/api/v1/images/{image_id}", response_class=Response)
    def get_image(image_id: ImageId, _: Viewer, db: DB) -> Response:
        image = db.get(Image, image_id)
        if image is None:
            raise NotFound(f"image {image_id} does not exist")
        return Response(image.png, media_type="image/png", headers={"ETag": image.sha256})

    @app.get("/api/v1/models")
    def get_models(_: Viewer, db: DB) -> list[ModelView]:
        rows = db.scalars(select(Model).order_by(Model.name, Model.version, Model.variant))
        return [ModelView.of(m) for m in rows]

    @app.post("/api/v1/models", status_code=201)
    def post_model(body: dict[str, Any], _: Submitter, db: DB) -> ModelView:
        """Register a manifest whose files were uploaded first (PUT /api/v1/artifacts/...)."""
        manifest = parse_manifest(json.dumps(body), origin="request body")
        return ModelView.of(register(db, store, manifest))

    @app.get("/api/v1/runners")
    def get_runners(_: Viewer, db: DB) -> list[RunnerView]:
        """The runner bundle registered for each CPU ABI."""
        return [RunnerView.of(row) for row in db.scalars(select(RunnerBundleRow))]

    @app.post("/api/v1/runners", status_code=201)
    def post_runner(bundle: RunnerBundle, _: Submitter, db: DB) -> RunnerView:
        """Register a runner bundle for its ABI (its files uploaded first, by sha256); it replaces
        the ABI's previous bundle for runs submitted from now on."""
        return RunnerView.of(register_runner(db, store, bundle))

    @app.put("/api/v1/artifacts/{sha256}", status_code=201, response_model=None)
    async def put_artifact(
        sha256: str, request: Request, _: Submitter
    ) -> dict[str, object] | JSONResponse:
        """Upload a file by its sha256; a body that hashes otherwise is refused (409), one larger
        than HEXFLEET_MAX_ARTIFACT_BYTES too (413). Nothing enters the store unless it is whole."""
        _check_sha(sha256)
        limit = settings.max_artifact_bytes
        too_large = _error(
            413,
            "InvalidRequest",
            f"the upload is larger than the limit of {limit} bytes (HEXFLEET_MAX_ARTIFACT_BYTES)",
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return too_large
        digest = hashlib.sha256()
        size = 0
        with tempfile.NamedTemporaryFile(dir=store.root, prefix=".upload-") as tmp:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:  # a body without (or lying about) its length
                    return too_large
                digest.update(chunk)
                tmp.write(chunk)
            tmp.flush()
            if digest.hexdigest() != sha256:
                raise ArtifactMismatch(
                    f"the uploaded body ({size} bytes) hashes to {digest.hexdigest()}, not {sha256}"
                )
            ref = store.put_file(Path(tmp.name), name=sha256)
        return {"sha256": ref.sha256, "size": ref.size}

    @app.get("/api/v1/artifacts/{sha256}")
    def get_artifact(sha256: str, _: Viewer) -> FileResponse:
        """A model file by content, for agents' host caches."""
        _check_sha(sha256)
        path = store.blobs / sha256
        if not path.is_file():
            raise NotFound(f"artifact {sha256} is not in the orchestrator's store")
        return FileResponse(path, media_type="application/octet-stream", headers={"ETag": sha256})

    @app.get("/api/v1/devices")
    def get_devices(_: Viewer, db: DB) -> list[DeviceView]:
        return [DeviceView.of(d) for d in db.scalars(select(Device).order_by(Device.serial))]

    metrics = registry_for(settings, app.state.sessions)

    @app.get("/metrics", response_class=Response)
    def get_metrics(_: Viewer) -> Response:
        """Prometheus exposition (orchestrator/metrics.py); scrape with a viewer token."""
        return Response(exposition(metrics), media_type=CONTENT_TYPE)

    mount_dashboard(app)
    return app
