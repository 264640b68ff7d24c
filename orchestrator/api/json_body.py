"""Strict JSON request bodies: NaN, Infinity, numbers that overflow to infinity and bytes that are
not UTF-8 are refused.

Python's json module accepts them, but they are not JSON (RFC 8259), PostgreSQL's JSON columns
refuse them, and a deadline or threshold of NaN passes every `<` check. Routes of the app use
`StrictJSONRoute`, so such a body is a 422 before any handler sees it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute


class _NotFinite(ValueError):
    pass


def _refuse_constant(token: str) -> float:
    raise _NotFinite(f"{token} is not a JSON number (NaN and infinities are refused)")


def _finite_float(token: str) -> float:
    value = float(token)
    if not math.isfinite(value):
        raise _NotFinite(f"{token[:40]} overflows to infinity (numbers must be finite)")
    return value


def loads_finite(text: str | bytes) -> Any:
    """`json.loads`, but NaN, Infinity and overflowing numbers raise json.JSONDecodeError."""
    if isinstance(text, bytes):
        try:  # JSON is UTF-8 (RFC 8259); other bytes are malformed JSON, not an unknown error
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            doc = text.decode("utf-8", "replace")
            raise json.JSONDecodeError(f"not UTF-8: {err.reason}", doc, err.start) from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except _NotFinite as err:
        raise json.JSONDecodeError(str(err), text, 0) from None


class StrictJSONRequest(Request):
    """A request whose `.json()` is `loads_finite` (what FastAPI parses bodies with)."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads_finite(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An APIRoute whose handler sees a StrictJSONRequest (FastAPI's custom-request pattern)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict
