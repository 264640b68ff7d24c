"""The agent host's artifact cache: model files fetched once from the orchestrator, by sha256.

Files live at `<data_dir>/agent-cache/<sha256>`, written to a temporary name and renamed only
after their hash checked out, so a half-downloaded or corrupt file is never used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from pathlib import Path

import httpx

from hexfleet.errors import ArtifactMismatch, NotFound, ServiceUnavailable
from hexfleet.manifest import FileRef
from hexfleet.models.store import sha256_file

log = logging.getLogger(__name__)


# Pauses between tries while the orchestrator does not answer (the last one repeats).
OUTAGE_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


class HostCache:
    """`outage_wait_s`: how long a fetch waits for an orchestrator that does not answer (a
    `hexfleet serve` restarting), trying again with backoff, before it gives up with
    ServiceUnavailable. Without it, every run a phone took while the API restarted failed."""

    def __init__(
        self, root: Path, api_url: str, token: str | None, outage_wait_s: float = 0.0
    ) -> None:
        self.root = root
        self.outage_wait_s = outage_wait_s
        self.root.mkdir(parents=True, exist_ok=True)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=api_url.rstrip("/"), headers=headers, timeout=60)
        self._verified: set[str] = set()

    def close(self) -> None:
        self.http.close()

    def path(self, ref: FileRef) -> Path:
        """The local file for `ref`, fetched from the orchestrator if this host lacks it.

        A file already here is hashed once per process before it is trusted; one that does not
        hash to its name is fetched again.
        """
        target = self.root / ref.sha256
        if target.is_file() and target.stat().st_size == ref.size:
            if ref.sha256 in self._verified or sha256_file(target) == ref.sha256:
                self._verified.add(ref.sha256)
                return target
        self._fetch(ref, target)
        self._verified.add(ref.sha256)
        return target

    def file_paths(self, refs: list[FileRef]) -> dict[str, Path]:
        """Verified local paths of `refs` by file name, fetched as needed (a tokenizer's files)."""
        return {ref.name: self.path(ref) for ref in refs}

    def forget(self, ref: FileRef) -> None:
        """Drop this host's copy of `ref` (the next `path` fetches it again)."""
        self._verified.discard(ref.sha256)
        (self.root / ref.sha256).unlink(missing_ok=True)

    def _fetch(self, ref: FileRef, target: Path) -> None:
        give_up = time.monotonic() + self.outage_wait_s
        tries = 0
        while True:
            try:
                self._fetch_once(ref, target)
                return
            except ServiceUnavailable as exc:
                pause = OUTAGE_BACKOFF_S[min(tries, len(OUTAGE_BACKOFF_S) - 1)]
                tries += 1
                if time.monotonic() + pause > give_up:
                    raise
                log.warning("%s (%s): try %d in %.1f s", exc, ref.name, tries + 1, pause)
                time.sleep(pause)

    def _fetch_once(self, ref: FileRef, target: Path) -> None:
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=self.root, prefix=".fetch-", delete=False) as tmp:
            try:
                with self.http.stream("GET", f"/api/v1/artifacts/{ref.sha256}") as response:
                    if response.status_code == 404:
                        raise NotFound(f"the orchestrator has no artifact {ref.sha256[:12]}")
                    if response.status_code >= 400:  # 503 while serve's parts restart
                        raise ServiceUnavailable(
                            f"fetching {ref.name} failed: HTTP {response.status_code}"
                        )
                    for chunk in response.iter_bytes(1 << 20):
                        digest.update(chunk)
                        tmp.write(chunk)
            except httpx.TransportError as exc:
                os.unlink(tmp.name)
                raise ServiceUnavailable(f"the orchestrator does not answer: {exc}") from exc
            except BaseException:
                os.unlink(tmp.name)
                raise
        if digest.hexdigest() != ref.sha256:
            os.unlink(tmp.name)
            raise ArtifactMismatch(f"{ref.name}: downloaded bytes hash to {digest.hexdigest()}")
        os.replace(tmp.name, target)
