"""Browser sessions for the dashboard: the API's bearer token kept in an HttpOnly cookie, and CSRF.

Browsers cannot send a bearer header when navigating, so a page accepts `?token=` once (or the
login form), checks it like the API does (`hexfleet.orchestrator.api.auth.identify`), stores it in a
cookie and redirects to the same URL without it. Forms that change state carry a CSRF value
derived from the token (HMAC), which another site cannot know; the cookie is also SameSite=Strict.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import RedirectResponse, Response

from hexfleet.orchestrator.api.auth import Caller, Role, identify
from hexfleet.settings import Settings

COOKIE = "hexfleet_token"
COOKIE_PATH = "/ui"
COOKIE_MAX_AGE_S = 7 * 24 * 3600


class LoginRequired(Exception):  # noqa: N818 - a control-flow signal, not an error to report
    """No valid token came with a page request: show the login form."""

    def __init__(self, next_path: str, reason: str) -> None:
        super().__init__(reason)
        self.next_path = next_path
        self.reason = reason


class TokenInQuery(Exception):  # noqa: N818 - a control-flow signal
    """A valid `?token=`: remember it in the cookie and load the page again without it."""

    def __init__(self, token: str, clean_url: str) -> None:
        super().__init__("token in the query string")
        self.token = token
        self.clean_url = clean_url


class SubmitterRequired(Exception):  # noqa: N818 - a control-flow signal
    """A viewer asked for a change of state."""


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(COOKIE)


def page_caller(request: Request, role: Role = Role.VIEWER) -> Caller:
    """Who asks for this page; raises LoginRequired / TokenInQuery / SubmitterRequired."""
    settings: Settings = request.app.state.settings
    query_token = request.query_params.get("token")
    if query_token is not None:
        if identify(settings, query_token) is None:
            raise LoginRequired(_path_without_token(request), "that token is not valid")
        raise TokenInQuery(query_token, _path_without_token(request))
    caller = identify(settings, _token(request))
    if caller is None:
        raise LoginRequired(_path_with_query(request), "a viewer or submitter token is required")
    if caller.role < role:
        raise SubmitterRequired()
    return caller


def _path_with_query(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _path_without_token(request: Request) -> str:
    rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
    return request.url.path + (f"?{urlencode(rest)}" if rest else "")


def safe_next(path: str | None) -> str:
    """Where to go after logging in: only a path of the dashboard, never another site."""
    if path and path.startswith(f"{COOKIE_PATH}/") and "//" not in path and "\\" not in path:
        return path
    return f"{COOKIE_PATH}/fleet"


def remember(response: Response, request: Request, token: str) -> Response:
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE_S,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def login_redirect(request: Request, token: str, target: str) -> RedirectResponse:
    return remember(RedirectResponse(safe_next(target), status_code=303), request, token)  # type: ignore[return-value]


def forget(response: Response) -> Response:
    response.delete_cookie(COOKIE, path=COOKIE_PATH)
    return response


def csrf_value(request: Request) -> str:
    """The CSRF value forms must echo back: an HMAC of the caller's token, so no server state."""
    token = _token(request) or ""
    return hmac.new(token.encode(), b"hexfleet-dashboard-csrf", hashlib.sha256).hexdigest()


def csrf_ok(request: Request, value: str) -> bool:
    return bool(value) and hmac.compare_digest(value, csrf_value(request))
