"""Artifacts by content on a phone: push a file only if the phone lacks it, verify, evict LRU.

The phone's cache is `/data/local/tmp/hexfleet/cache/<sha256>`. A push goes to `<sha256>.part`,
is checked with `sha256sum` on the phone, then renamed; a file's mtime is its last use (touched on
every hit, in the background when the agent gives a `background` runner: a run need not wait for
it), and the least recently used files go first when the cache would exceed its quota. With the
phone's connections cheap (see phone.py), a hit is one listing and one `touch`; the sync push
creates the cache folder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from device_agent.host_cache import HostCache
from device_agent.phone import Phone, cache_path
from hexfleet.errors import ArtifactMismatch, InvalidRequest
from models.manifest import FileRef

DEFAULT_QUOTA_BYTES = 8 << 30
PUSH_ATTEMPTS = 2


@dataclass
class PushReport:
    pushed_files: int = 0
    pushed_bytes: int = 0
    cached_files: int = 0
    evicted: list[str] = field(default_factory=list)
    push_seconds: float = 0.0
    seconds: float = 0.0


class ArtifactPusher:
    def __init__(
        self,
        phone: Phone,
        host_cache: HostCache,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        background: Callable[[Callable[[], object]], object] | None = None,
    ) -> None:
        self.phone = phone
        self.host_cache = host_cache
        self.quota_bytes = quota_bytes
        self.background = background or (lambda errand: errand())

    def ensure(self, refs: list[FileRef]) -> PushReport:
        """Make every file of `refs` present and verified in the phone's cache."""
        started = time.perf_counter()
        report = PushReport()
        needed = {ref.sha256: ref for ref in refs}
        if sum(ref.size for ref in needed.values()) > self.quota_bytes:
            raise InvalidRequest(
                f"the model needs {sum(r.size for r in needed.values())} bytes on the phone, "
                f"more than its cache quota of {self.quota_bytes}"
            )
        present = self.phone.cache_entries()
        missing = [ref for sha, ref in needed.items() if present.get(sha, (-1, 0))[0] != ref.size]
        hits = [sha for sha in needed if sha not in {r.sha256 for r in missing}]
        report.cached_files = len(hits)
        if missing:
            report.evicted = self._make_room(present, needed, sum(r.size for r in missing))
            mark = time.perf_counter()
            for ref in missing:
                self._push_verified(ref)
                report.pushed_files += 1
                report.pushed_bytes += ref.size
            report.push_seconds = time.perf_counter() - mark
        if hits:
            paths = [cache_path(sha) for sha in hits]
            self.background(lambda: self.phone.checked("touch", *paths))
        report.seconds = time.perf_counter() - started
        return report

    def forget(self, sha256: str) -> None:
        """Remove a cached file (found corrupt) so the next `ensure` pushes it again."""
        self.phone.remove(cache_path(sha256))

    def _make_room(
        self, present: dict[str, tuple[int, int]], needed: dict[str, FileRef], incoming: int
    ) -> list[str]:
        used = sum(size for size, _ in present.values())
        evicted = []
        for sha, (size, _mtime) in sorted(present.items(), key=lambda item: item[1][1]):
            if used + incoming <= self.quota_bytes:
                break
            if sha in needed:
                continue
            evicted.append(sha)
            used -= size
        if evicted:
            self.phone.remove(*(cache_path(sha) for sha in evicted))
        return evicted

    def _push_verified(self, ref: FileRef) -> None:
        """Push to `<sha256>.part`, hash it on the phone, rename it; one retry on a mismatch.

        One file at a time, so a phone lost mid-push leaves at most one `.part` behind."""
        local = self.host_cache.path(ref)
        final = cache_path(ref.sha256)
        partial = f"{final}.part"
        for attempt in range(1, PUSH_ATTEMPTS + 1):
            self.phone.push(local, partial)
            if self.phone.sha256(partial) == ref.sha256:
                self.phone.rename(partial, final)
                return
            self.phone.remove(partial)
            if attempt == PUSH_ATTEMPTS:
                # The host's copy may be the corrupt one: fetch it again next time.
                self.host_cache.forget(ref)
                raise ArtifactMismatch(
                    f"{self.phone.serial}: {ref.name} ({ref.sha256[:12]}) did not hash correctly "
                    f"on the phone after {PUSH_ATTEMPTS} pushes"
                )
