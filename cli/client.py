"""The CLI's side of the API: a small typed HTTP client that turns failures into hexfleet errors."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx

from hexfleet.errors import (
    HexfleetError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
)
from hexfleet.settings import Settings

ERRORS: dict[int, type[HexfleetError]] = {
    400: InvalidRequest,
    401: InvalidRequest,
    403: InvalidRequest,
    404: NotFound,
    409: InvalidRequest,
    413: InvalidRequest,
    422: InvalidRequest,
}


def check_job_id(value: str) -> str:
    """A job id is a UUID; anything else is a one-line error before it becomes part of a URL."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequest(
            f"{value[:80]!r} is not a job id (a UUID, as `hexfleet jobs` lists them)"
        ) from None


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200] or response.reason_phrase
    detail = body.get("detail", body) if isinstance(body, dict) else body
    if isinstance(detail, list):  # FastAPI's validation errors
        parts = []
        for item in detail:
            where = ".".join(str(p) for p in item.get("loc", [])[1:])
            parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
        return "; ".join(parts)
    return str(detail)


class ApiClient:
    def __init__(self, base_url: str, token: str | None, timeout: float = 30.0) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiClient:
        return cls(settings.api_url, settings.client_token())

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.InvalidURL as exc:
            raise InvalidRequest(f"not a valid API path: {path[:80]!r} ({exc})") from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(
                f"the hexfleet API at {self.base_url} does not answer ({exc}); "
                "is `hexfleet serve` or `hexfleet up` running?"
            ) from exc
        if response.status_code >= 400:
            kind = ERRORS.get(response.status_code, ServiceUnavailable)
            if response.status_code == 401:
                raise kind("the API needs a token: set HEXFLEET_API_TOKEN")
            raise kind(_reason(response))
        return response

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean).json()

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body).json()

    def upload(self, sha256: str, path: Path) -> None:
        """PUT a file into the orchestrator's store by its sha256 (streamed from disk)."""
        with path.open("rb") as handle:
            self.request(
                "PUT", f"/api/v1/artifacts/{sha256}", content=handle,
                headers={"Content-Length": str(path.stat().st_size)},
            )

    def download(self, path: str) -> bytes:
        return self.request("GET", path).content
