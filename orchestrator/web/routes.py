"""The dashboard's pages under /ui: fleet, jobs, a job, benchmarks, validation (server-rendered).

Pages read with a viewer's token (cookie, see `session.py`); the only change of state, cancelling
a job, needs a submitter's token and the form's CSRF value. Parts that change refresh themselves
by fetching `.../rows` or `.../live` fragments (static/dashboard.js); all JavaScript is served
from static/, nothing from a CDN.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from hexfleet.errors import HexfleetError, InvalidRequest, NotFound
from hexfleet.orchestrator.api.auth import Caller, Role, identify
from hexfleet.orchestrator.db.schema import Image
from hexfleet.orchestrator.jobs import cancel
from hexfleet.orchestrator.web import pages
from hexfleet.orchestrator.web.session import (
    LoginRequired,
    SubmitterRequired,
    TokenInQuery,
    csrf_ok,
    csrf_value,
    forget,
    login_redirect,
    page_caller,
    safe_next,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ui", include_in_schema=False)
REFRESH_S = 3
STATUS = {InvalidRequest: 400, NotFound: 404}  # as the API answers them (api/app.py)


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


DB = Annotated[Session, Depends(_session)]


def _ago(value: dt.datetime | None) -> str:
    if value is None:
        return ""
    seconds = (dt.datetime.now(dt.UTC) - value).total_seconds()
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{value:%Y-%m-%d %H:%M} UTC"


templates.env.filters["ago"] = _ago


def _render(
    request: Request, name: str, caller: Caller | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    context.update(
        caller=caller,
        submitter=caller is not None and caller.role >= Role.SUBMITTER,
        csrf=csrf_value(request) if caller else "",
        refresh_s=REFRESH_S,
    )
    return templates.TemplateResponse(request, name, context, status_code=status_code)


def html_errors(endpoint: Callable[..., Response]) -> Callable[..., Response]:
    """Turn a hexfleet error into a page with the same status code the API would give."""

    @functools.wraps(endpoint)
    def wrapper(request: Request, *args: Any, **kwargs: Any) -> Response:
        try:
            return endpoint(request, *args, **kwargs)
        except HexfleetError as exc:
            code = next((c for kind, c in STATUS.items() if isinstance(exc, kind)), 500)
            caller = identify(request.app.state.settings, request.cookies.get("hexfleet_token"))
            return _render(request, "error.html", caller, code, message=str(exc))

    return wrapper


@router.get("", response_class=RedirectResponse)
@router.get("/", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/ui/fleet", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str | None = None) -> HTMLResponse:  # noqa: A002
    return _render(request, "login.html", None, next=safe_next(next), reason="")


@router.post("/login")
def login(
    request: Request,
    token: Annotated[str, Form()],
    next: Annotated[str, Form()] = "",  # noqa: A002
) -> Response:
    if identify(request.app.state.settings, token) is None:
        return _render(
            request, "login.html", None, 401, next=safe_next(next), reason="that token is not valid"
        )
    return login_redirect(request, token, next)


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    if not csrf_ok(request, csrf):
        return _render(request, "error.html", None, 403, message="the form has expired")
    return forget(RedirectResponse("/ui/login", status_code=303))


@router.get("/fleet", response_class=HTMLResponse)
@html_errors
def fleet_page(request: Request, db: DB) -> Response:
    caller = page_caller(request)
    return _render(request, "fleet.html", caller, page="fleet", phones=pages.fleet(db))


@router.get("/fleet/rows", response_class=HTMLResponse)
@html_errors
def fleet_rows(request: Request, db: DB) -> Response:
    caller = page_caller(request)
    return _render(request, "_fleet_rows.html", caller, phones=pages.fleet(db))


@router.get("/jobs", response_class=HTMLResponse)
@html_errors
def jobs_page(
    request: Request, db: DB, state: str = "", kind: str = "", limit: int = 50
) -> Response:
    caller = page_caller(request)
    found = pages.jobs(db, state or None, kind or None, limit)
    return _render(
        request,
        "jobs.html",
        caller,
        page="jobs",
        jobs=found,
        state=state,
        kind=kind,
        limit=limit,
        states=[s.value for s in pages.JobState],
        kinds=[k.value for k in pages.JobKind],
        query=request.url.query,
    )


@router.get("/jobs/rows", response_class=HTMLResponse)
@html_errors
def jobs_rows(
    request: Request, db: DB, state: str = "", kind: str = "", limit: int = 50
) -> Response:
    caller = page_caller(request)
    found = pages.jobs(db, state or None, kind or None, limit)
    return _render(request, "_jobs_rows.html", caller, jobs=found)


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
@html_errors
def job_page(request: Request, job_id: str, db: DB) -> Response:
    caller = page_caller(request)
    return _render(request, "job.html", caller, page="jobs", view=pages.job_page(db, job_id))


@router.get("/jobs/{job_id}/live", response_class=HTMLResponse)
@html_errors
def job_live(request: Request, job_id: str, db: DB) -> Response:
    caller = page_caller(request)
    view = pages.job_page(db, job_id)
    response = _render(request, "_job_live.html", caller, view=view)
    if view.final:
        response.headers["X-Hexfleet-Final"] = "1"  # dashboard.js stops polling
    return response


@router.post("/jobs/{job_id}/cancel")
@html_errors
def cancel_job(
    request: Request, job_id: str, db: DB, csrf: Annotated[str, Form()] = ""
) -> Response:
    page_caller(request, Role.SUBMITTER)
    if not csrf_ok(request, csrf):
        raise InvalidRequest("the form's CSRF value is missing or wrong; reload the page")
    job = cancel(db, job_id, request.app.state.dispatcher)
    return RedirectResponse(f"/ui/jobs/{job.id}", status_code=303)


@router.get("/images/{image_id}")
@html_errors
def image(request: Request, image_id: int, db: DB) -> Response:
    page_caller(request)
    found = db.get(Image, image_id)
    if found is None:
        raise NotFound(f"image {image_id} does not exist")
    return Response(
        found.png,
        media_type="image/png",
        # An image never changes once stored: the browser keeps it across page refreshes.
        headers={"ETag": found.sha256, "Cache-Control": "private, max-age=86400, immutable"},
    )


@router.get("/benchmarks", response_class=HTMLResponse)
@html_errors
def benchmarks_page(request: Request, db: DB, model: str = "", component: str = "") -> Response:
    caller = page_caller(request)
    view = pages.benchmarks(db, model or None, component or None)
    return _render(request, "benchmarks.html", caller, page="benchmarks", view=view)


@router.get("/validation", response_class=HTMLResponse)
@html_errors
def validations_page(request: Request, db: DB) -> Response:
    caller = page_caller(request)
    found = pages.validations(db)
    return _render(request, "validations.html", caller, page="validation", jobs=found)


@router.get("/validation/{job_id}", response_class=HTMLResponse)
@html_errors
def validation_page(request: Request, job_id: str, db: DB) -> Response:
    caller = page_caller(request)
    view = pages.validation(db, job_id)
    return _render(request, "validation.html", caller, page="validation", view=view)


def mount(app: FastAPI) -> None:
    """Add the dashboard to the API's app: pages, static files and the login flow's signals."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if request.url.path.endswith(("/rows", "/live")) or request.method != "GET":
            return Response(exc.reason, status_code=401, media_type="text/plain")
        return _render(
            request, "login.html", None, 401, next=safe_next(exc.next_path), reason=exc.reason
        )

    @app.exception_handler(TokenInQuery)
    async def _token(request: Request, exc: TokenInQuery) -> Response:
        return login_redirect(request, exc.token, exc.clean_url)

    @app.exception_handler(SubmitterRequired)
    async def _forbidden(request: Request, _exc: SubmitterRequired) -> Response:
        caller = identify(request.app.state.settings, request.cookies.get("hexfleet_token"))
        return _render(request, "error.html", caller, 403, message="this needs a submitting token")
