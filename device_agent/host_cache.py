"""The agent host's artifact cache: model files fetched once from the orchestrator, by sha256.

Files live at `<data_dir>/agent-cache/<sha256>`, written to a temporary name and renamed only
after their hash checked out, so a half-downloaded or corrupt file is never used. The pass that
checks a file also hashes each PIECE_BYTES piece of it: a push verifies the phone's copy piece by
piece while the rest is still on its way (push.py), against digests of bytes known good.
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

log = logging.getLogger(__name__)


PIECE_BYTES = 16 * 1024 * 1024  # the phone reads a piece with dd, a whole number of its blocks
_READ_BYTES = 1024 * 1024

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
        # sha256 → the sha256 of each piece, for the files checked by this process.
        self._pieces: dict[str, list[str]] = {}

    def close(self) -> None:
        self.http.close()

    def path(self, ref: FileRef) -> Path:
        """The local file for `ref`, fetched from the orchestrator if this host lacks it.

        A file already here is hashed once per process before it is trusted; one that does not
        hash to its name is fetched again.
        """
        target = self.root / ref.sha256
        if target.is_file() and target.stat().st_size == ref.size:
            if ref.sha256 in self._pieces:
                return target
            whole, pieces = _hash_file(target)
            if whole == ref.sha256:
                self._pieces[ref.sha256] = pieces
                return target
        self._fetch(ref, target)
        return target

    def pieces(self, ref: FileRef) -> list[str]:
        """The sha256 of each PIECE_BYTES piece of `ref` (the last one may be shorter), from the
        bytes that hashed to `ref.sha256` on this host."""
        self.path(ref)
        return self._pieces[ref.sha256]

    def file_paths(self, refs: list[FileRef]) -> dict[str, Path]:
        """Verified local paths of `refs` by file name, fetched as needed (a tokenizer's files)."""
        return {ref.name: self.path(ref) for ref in refs}

    def forget(self, ref: FileRef) -> None:
        """Drop this host's copy of `ref` (the next `path` fetches it again)."""
        self._pieces.pop(ref.sha256, None)
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
        digest = PieceHashes()
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
        whole, pieces = digest.finish()
        if whole != ref.sha256:
            os.unlink(tmp.name)
            raise ArtifactMismatch(f"{ref.name}: downloaded bytes hash to {whole}")
        os.replace(tmp.name, target)
        self._pieces[ref.sha256] = pieces


class PieceHashes:
    """The sha256 of a byte stream as a whole and of each PIECE_BYTES piece, fed in order."""

    def __init__(self) -> None:
        self._whole = hashlib.sha256()
        self._piece = hashlib.sha256()
        self._filled = 0
        self._pieces: list[str] = []

    def update(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        self._whole.update(view)
        while view:
            take = min(len(view), PIECE_BYTES - self._filled)
            self._piece.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == PIECE_BYTES:
                self._pieces.append(self._piece.hexdigest())
                self._piece, self._filled = hashlib.sha256(), 0

    def finish(self) -> tuple[str, list[str]]:
        """(the whole's digest, the pieces' digests); an empty stream is one empty piece."""
        if self._filled or not self._pieces:
            self._pieces.append(self._piece.hexdigest())
        return self._whole.hexdigest(), self._pieces


def _hash_file(path: Path) -> tuple[str, list[str]]:
    hashes = PieceHashes()
    buffer = bytearray(_READ_BYTES)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as handle:
        while count := handle.readinto(buffer):
            hashes.update(view[:count])
    return hashes.finish()
