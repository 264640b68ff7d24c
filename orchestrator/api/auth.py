"""Bearer-token roles: a *viewer* reads, a *submitter* also submits, cancels and uploads.

Tokens come from settings (`HEXFLEET_VIEWER_TOKENS`, `HEXFLEET_SUBMIT_TOKENS`, JSON lists). No
request that changes state is accepted without a submitting token; reads need at least a viewer's.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hexfleet.settings import Settings


class Role(enum.IntEnum):
    VIEWER = 1
    SUBMITTER = 2


@dataclass(frozen=True)
class Caller:
    role: Role
    name: str


_bearer = HTTPBearer(auto_error=False)


def _matches(token: str, candidates: list[str]) -> bool:
    return any(hmac.compare_digest(token.encode(), c.encode()) for c in candidates)


def identify(settings: Settings, token: str | None) -> Caller | None:
    """Who holds `token`, or None for an unknown token."""
    if not token:
        return None
    submitters = [t.get_secret_value() for t in settings.submit_tokens]
    viewers = [t.get_secret_value() for t in settings.viewer_tokens]
    if _matches(token, submitters):
        return Caller(Role.SUBMITTER, f"submitter-{submitters.index(token) + 1}")
    if _matches(token, viewers):
        return Caller(Role.VIEWER, f"viewer-{viewers.index(token) + 1}")
    return None


def require(role: Role):  # noqa: ANN201 - a FastAPI dependency factory
    """A dependency that admits callers holding at least `role`."""

    def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    ) -> Caller:
        settings: Settings = request.app.state.settings
        caller = identify(settings, credentials.credentials if credentials else None)
        if caller is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                detail="a valid bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if caller.role < role:
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="this needs a submitting token")
        return caller

    return dependency
