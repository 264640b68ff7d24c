"""The FastAPI application: routes over the jobs service and the database, hexfleet errors as 4xx.

`create_app(settings, dispatcher)` builds it; `hexfleet serve` runs it with uvicorn.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.exceptions import HTTPException as StarletteHTTPException

from hexfleet import __version__
from hexfleet.bundle import RunnerBundle
from hexfleet.errors import (
    ArtifactMismatch,
    Conflict,
    HexfleetError,
    InvalidRequest,
    ModelError,
    NotFound,
    ServiceUnavailable,
)
from hexfleet.manifest import SHA256_SCHEMA, Manifest
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.api.auth import Caller, Role, require
from hexfleet.orchestrator.api.json_body import StrictJSONRoute
from hexfleet.orchestrator.api.views import (
    ArtifactView,
    ComparisonView,
    DeviceView,
    ErrorBody,
    JobView,
    ModelView,
    RunnerView,
    RunView,
)
from hexfleet.orchestrator.compare import THRESHOLD, compare
from hexfleet.orchestrator.db.engine import make_engine, session_factory
from hexfleet.orchestrator.db.schema import Device, Image, Model, Run, RunnerBundleRow
from hexfleet.orchestrator.jobs import Dispatcher, JobSubmission, cancel, get_job, list_jobs, submit
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
    Conflict: 409,
    InvalidRequest: 400,
    ModelError: 400,
    NotFound: 404,
    ArtifactMismatch: 409,
    ServiceUnavailable: 503,
}

# images.id is a 32-bit INTEGER column: a larger id cannot name an image (PostgreSQL would
# refuse to compare it, a 500), so the path parameter says so and FastAPI answers 422.
ImageId = Annotated[int, PathParam(ge=1, le=2**31 - 1)]
# Ids and digests as the server writes them; anything else (NUL, newlines, megabytes) is a 422
# before a handler runs, and the schema says so.
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
JobId = Annotated[str, PathParam(pattern=UUID_PATTERN, description="A job id (lower-case UUID).")]
RunId = Annotated[str, PathParam(pattern=UUID_PATTERN, description="A run id (lower-case UUID).")]
Sha256 = Annotated[
    str, PathParam(pattern=SHA256_SCHEMA["pattern"], description="A file's sha256 (hex).")
]
JobIdQuery = Annotated[str, Query(pattern=UUID_PATTERN, description="A job id.")]

# What each refusal means; every operation documents the ones it can answer (ErrorBody bodies;
# 422 is FastAPI's validation body, documented by FastAPI itself).
REASONS = {
    400: "The request cannot be carried out as asked (the reason says why).",
    401: "No valid bearer token.",
    403: "The token may only read (a submitting token is needed).",
    404: "The named thing does not exist.",
    409: "Well-formed, but refused by what is stored now (the reason says what).",
    413: "The upload is larger than HEXFLEET_MAX_ARTIFACT_BYTES.",
    503: "A part of the server is down.",
}


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses` of an operation that may answer `codes` (401 always: every route needs a
    token)."""
    return {
        code: {"model": ErrorBody, "description": REASONS[code]} for code in sorted({401, *codes})
    }


def binary(media_type: str, description: str) -> dict[int | str, dict[str, Any]]:
    """A 200 whose body is not JSON."""
    return {200: {"description": description, "content": {media_type: {"schema": {}}}}}

Viewer = Annotated[Caller, Depends(require(Role.VIEWER))]
Submitter = Annotated[Caller, Depends(require(Role.SUBMITTER))]


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


DB = Annotated[Session, Depends(_session)]


def _error(status_code: int, kind: str, detail: str) -> JSONResponse:
    """The API's error body: the error kind and a one-line reason."""
    return JSONResponse({"error": kind, "detail": detail}, status_code=status_code)


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route takes at `path`. FastAPI makes one route per method, so Starlette's
    own 405 names only the first route's methods; the Allow header must name them all."""
    methods: set[str] = set()
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path_regex.match(path):
            methods |= route.methods
    return sorted(methods)


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

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        """401, 403, an unknown path (404) or method (405, with its Allow header): the same
        body as every other refusal."""
        kind = HTTPStatus(exc.status_code).phrase.replace(" ", "")
        response = _error(exc.status_code, kind, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            response.headers["Allow"] = ", ".join(allowed_methods(app, request.url.path))
        return response

    @app.get("/api/v1/health", responses={503: {"model": ErrorBody, "description": REASONS[503]}})
    def health() -> dict[str, str]:
        """ok, or 503 while a process this server depends on is down (its ingest worker)."""
        ingest_alive = getattr(app.state, "ingest_alive", None)
        if ingest_alive is not None and not ingest_alive():
            raise ServiceUnavailable("the ingest worker is not running (being restarted)")
        return {"status": "ok", "version": __version__}

    @app.post("/api/v1/jobs", status_code=201, responses=errors(403, 404, 409))
    def post_job(body: JobSubmission, caller: Submitter, db: DB) -> JobView:
        """Submit a job; 404 when its model is not registered at that precision, 409 when no
        online phone matches its selector or a selected phone's ABI has no runner."""
        job = submit(db, body, app.state.dispatcher, submitted_by=caller.name)
        return JobView.of(job, with_runs=True)

    @app.get("/api/v1/jobs", responses=errors())
    def get_jobs(
        _: Viewer,
        db: DB,
        state: JobState | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    ) -> list[JobView]:
        return [JobView.of(job) for job in list_jobs(db, state, limit)]

    @app.get("/api/v1/jobs/{job_id}", responses=errors(404))
    def get_one_job(job_id: JobId, _: Viewer, db: DB) -> JobView:
        return JobView.of(get_job(db, job_id), with_runs=True)

    @app.post("/api/v1/jobs/{job_id}/cancel", responses=errors(403, 404))
    def cancel_job(job_id: JobId, _: Submitter, db: DB) -> JobView:
        return JobView.of(cancel(db, job_id, app.state.dispatcher), with_runs=True)

    @app.get("/api/v1/jobs/{job_id}/benchmark", responses=errors(404))
    def get_benchmark_stats(job_id: JobId, _: Viewer, db: DB) -> list[PhoneStats]:
        """A benchmark job's latency statistics per phone (each one says if it is simulated)."""
        return job_benchmark_stats(db, job_id)

    @app.get("/api/v1/compare", responses=errors(404, 409))
    def get_comparison(
        a: JobIdQuery,
        b: JobIdQuery,
        _: Viewer,
        db: DB,
        threshold: Annotated[float, Query(ge=0, lt=10)] = THRESHOLD,
    ) -> ComparisonView:
        """Job b against job a (the baseline), per phone and timing metric; 409 while either
        has not finished or when no phone has timings in both."""
        return ComparisonView.of(compare(db, a, b, threshold=threshold))

    @app.post("/api/v1/validations", status_code=201, responses=errors(403, 404, 409))
    def post_validation(body: ValidationRequest, caller: Submitter, db: DB) -> JobView:
        """Submit a validation job: the same inputs on every selected phone."""
        job = submit_validation(db, body, app.state.dispatcher, caller.name, store)
        return JobView.of(job, with_runs=True)

    @app.get("/api/v1/jobs/{job_id}/validation", responses=errors(404, 409))
    def get_validation(job_id: JobId, _: Viewer, db: DB) -> dict[str, Any]:
        """A validation job's verdicts as the ingest worker stored them when it ended
        (`complete: false` until then): reading never computes."""
        return load_report(db, job_id).to_dict()

    @app.get(
        "/api/v1/jobs/{job_id}/validation.html",
        response_class=Response,
        responses={**binary("text/html", "The report as one HTML page."), **errors(404, 409)},
    )
    def get_validation_html(job_id: JobId, _: Viewer, db: DB) -> HTMLResponse:
        """The same report as one self-contained HTML page (images inline, no scripts)."""
        report = load_report(db, job_id)
        return HTMLResponse(render_html(report, report_images(db, get_job(db, job_id))))

    @app.get("/api/v1/runs/{run_id}", responses=errors(404))
    def get_run(run_id: RunId, _: Viewer, db: DB) -> RunView:
        run = db.get(Run, run_id)
        if run is None:
            raise NotFound(f"run {run_id} does not exist")
        return RunView.of(run)

    @app.get("/api/v1/runs/{run_id}/state", responses=errors(404))
    def get_run_state(run_id: RunId, _: Viewer, db: DB) -> dict[str, str]:
        """Only a run's state: what agents poll to notice a cancel (cheaper than the run)."""
        state = db.scalar(select(Run.state).where(Run.id == run_id))
        if state is None:
            raise NotFound(f"run {run_id} does not exist")
        return {"id": run_id, "state": str(state)}

    @app.get(
        "/api/v1/images/{image_id}",
        response_class=Response,
        responses={**binary("image/png", "The PNG."), **errors(404)},
    )
    def get_image(image_id: ImageId, _: Viewer, db: DB) -> Response:
        image = db.get(Image, image_id)
        if image is None:
            raise NotFound(f"image {image_id} does not exist")
        return Response(image.png, media_type="image/png", headers={"ETag": image.sha256})

    @app.get("/api/v1/models", responses=errors())
    def get_models(_: Viewer, db: DB) -> list[ModelView]:
        rows = db.scalars(select(Model).order_by(Model.name, Model.version, Model.variant))
        return [ModelView.of(m) for m in rows]

    @app.post("/api/v1/models", status_code=201, responses=errors(403, 404, 409))
    def post_model(manifest: Manifest, _: Submitter, db: DB) -> ModelView:
        """Register a manifest whose files were uploaded first (PUT /api/v1/artifacts/...): 404
        when one is not in the store, 409 when one is there with another size, or when the
        name/version/variant is registered with other content."""
        return ModelView.of(register(db, store, manifest))

    @app.get("/api/v1/runners", responses=errors())
    def get_runners(_: Viewer, db: DB) -> list[RunnerView]:
        """The runner bundle registered for each CPU ABI."""
        return [RunnerView.of(row) for row in db.scalars(select(RunnerBundleRow))]

    @app.post("/api/v1/runners", status_code=201, responses=errors(403, 409))
    def post_runner(bundle: RunnerBundle, _: Submitter, db: DB) -> RunnerView:
        """Register a runner bundle for its ABI (its files uploaded first, by sha256); it replaces
        the ABI's previous bundle for runs submitted from now on. 409 when a file is not in the
        store with its size."""
        return RunnerView.of(register_runner(db, store, bundle))

    @app.put(
        "/api/v1/artifacts/{sha256}",
        status_code=201,
        response_model=ArtifactView,
        responses=errors(403, 409, 413),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/octet-stream": {"schema": {"format": "binary"}}},
            }
        },
    )
    async def put_artifact(sha256: Sha256, request: Request, _: Submitter) -> Response:
        """Upload a file by its sha256; a body that hashes otherwise is refused (409), one larger
        than HEXFLEET_MAX_ARTIFACT_BYTES too (413). Nothing enters the store unless it is whole."""
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
        view = ArtifactView(sha256=ref.sha256, size=ref.size)
        return JSONResponse(view.model_dump(), status_code=201)

    @app.get(
        "/api/v1/artifacts/{sha256}",
        response_class=FileResponse,
        responses={**binary("application/octet-stream", "The file's bytes."), **errors(404)},
    )
    def get_artifact(sha256: Sha256, _: Viewer) -> FileResponse:
        """A model file by content, for agents' host caches."""
        path = store.blobs / sha256
        if not path.is_file():
            raise NotFound(f"artifact {sha256} is not in the orchestrator's store")
        return FileResponse(path, media_type="application/octet-stream", headers={"ETag": sha256})

    @app.get("/api/v1/devices", responses=errors())
    def get_devices(_: Viewer, db: DB) -> list[DeviceView]:
        return [DeviceView.of(d) for d in db.scalars(select(Device).order_by(Device.serial))]

    metrics = registry_for(settings, app.state.sessions)

    @app.get(
        "/metrics",
        response_class=Response,
        responses={**binary(CONTENT_TYPE, "Prometheus text exposition."), **errors()},
    )
    def get_metrics(_: Viewer) -> Response:
        """Prometheus exposition (orchestrator/metrics.py); scrape with a viewer token."""
        return Response(exposition(metrics), media_type=CONTENT_TYPE)

    mount_dashboard(app)
    return app
