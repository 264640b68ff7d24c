"""Artifacts by content on a phone: push a file only if the phone lacks it, verify, evict LRU.

The phone's cache is `/data/local/tmp/hexfleet/cache/<sha256>`. A push goes to `<sha256>.part`,
is checked on the phone, then renamed: a file larger than a piece (host_cache.PIECE_BYTES) is
hashed there piece by piece while the SEND still writes the rest (PieceCheck), so the check costs
little more than its last piece once the transfer ends; a smaller one with `sha256sum`. A file's
mtime is its last use (touched on every hit, in the background when the agent gives a
`background` runner: a run need not wait for it), and the least recently used files go first
when the cache would exceed its quota. With the phone's connections cheap (see phone.py), a hit
costs at most one listing and one `touch`; the sync push creates the cache folder.

The agent is the only writer of its phones' caches, so a listing is trusted for
`listing_trust_s` (a hit then costs no adb round trip before the run), and a file is touched only
when its last recorded use is older than `touch_after_s` (LRU needs minutes, not milliseconds;
the phone's clock is taken to be within a minute of the host's).
Anything the trusted listing lacks is listed again before pushing, and a run that fails after a
trusted listing makes the executor list again (`recheck`), in case the phone lost files behind
the agent's back.

Before pushing, the phone's free space on /data is read (`df -k /data`, a fixed command): files
the run does not need go, least recently used first, until the push fits with `reserve_bytes` to
spare; if it cannot fit, DeviceFull says so in one line before anything is removed or pushed. A
link dropped mid-push is waited out (the adb server reconnects) and the file pushed again; the
`.part` a failed attempt leaves is removed, and leftovers of a crashed agent go with the next push.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from hexfleet.device_agent.host_cache import PIECE_BYTES, HostCache
from hexfleet.device_agent.phone import SHA256, Phone, ShellSession, cache_path
from hexfleet.errors import ArtifactMismatch, DeviceFull, DeviceLost, InvalidRequest
from hexfleet.manifest import FileRef
from hexfleet.runner_spec import CACHE_DIR

log = logging.getLogger(__name__)

MB = 1_000_000
DEFAULT_QUOTA_BYTES = 8 << 30
PUSH_ATTEMPTS = 2  # pushes of a file whose bytes hash wrong on the phone
LINK_RETRIES = 2  # pushes again after a dropped link, per file
RECONNECT_S = 30.0  # how long a dropped phone may take to come back before DeviceLost
# Left free on /data after a push: a phone filled to the last byte breaks its own apps.
RESERVE_BYTES = 256 * MB
LISTING_TRUST_S = 30.0
TOUCH_AFTER_S = 60.0
PART = ".part"
# How long a PieceCheck waits before looking again at a `.part` whose next piece is not written.
PIECE_POLL_S = 0.05


@dataclass
class PushReport:
    pushed_files: int = 0
    pushed_bytes: int = 0
    cached_files: int = 0
    evicted: list[str] = field(default_factory=list)
    push_seconds: float = 0.0  # pushing and verifying
    verify_seconds: float = 0.0  # of which verifying on the phone once the transfer had ended
    verified_in_flight_bytes: int = 0  # bytes verified on the phone while still transferring
    link_retries: int = 0  # files pushed again after a dropped link
    seconds: float = 0.0
    listed: bool = True  # the phone's cache was listed (not taken from the trusted listing)


class ArtifactPusher:
    def __init__(
        self,
        phone: Phone,
        host_cache: HostCache,
        quota_bytes: int = DEFAULT_QUOTA_BYTES,
        background: Callable[[Callable[[], object]], object] | None = None,
        listing_trust_s: float = LISTING_TRUST_S,
        touch_after_s: float = TOUCH_AFTER_S,
        clock: Callable[[], float] = time.time,
        reserve_bytes: int = RESERVE_BYTES,
        reconnect_s: float = RECONNECT_S,
    ) -> None:
        self.phone = phone
        self.host_cache = host_cache
        self.quota_bytes = quota_bytes
        self.background = background or (lambda errand: errand())
        self.listing_trust_s = listing_trust_s
        self.touch_after_s = touch_after_s
        self.clock = clock
        self.reserve_bytes = reserve_bytes
        self.reconnect_s = reconnect_s
        # sha256 → (size, mtime) as last listed, pushed or touched; when it was listed.
        self._known: dict[str, tuple[int, float]] = {}
        self._listed_at = float("-inf")
        # `<sha256>.part` files the last listing found (a crashed push's): name → size.
        self._partials: dict[str, int] = {}

    def _listing(self, needed: dict[str, FileRef]) -> tuple[dict[str, tuple[int, float]], bool]:
        """The phone's cache: the trusted listing if it is fresh and has every needed file at
        its size, else a new listing (which is then trusted)."""
        fresh = self.clock() - self._listed_at < self.listing_trust_s
        if fresh and all(
            self._known.get(sha, (-1, 0))[0] == ref.size for sha, ref in needed.items()
        ):
            return dict(self._known), False
        listing = self.phone.listing(CACHE_DIR)
        self._known = {
            name: (size, float(mtime))
            for name, (size, mtime) in listing.items()
            if SHA256.fullmatch(name)
        }
        self._partials = {
            name: size
            for name, (size, _) in listing.items()
            if name.endswith(PART) and SHA256.fullmatch(name.removesuffix(PART))
        }
        self._listed_at = self.clock()
        return dict(self._known), True

    def invalidate(self) -> None:
        """List the phone's cache again next time."""
        self._listed_at = float("-inf")

    def recheck(self, refs: list[FileRef]) -> PushReport:
        """After a failed run whose files came from the trusted listing: list the cache again
        and push what is missing (a retry is worth it if anything was pushed)."""
        self.invalidate()
        return self.ensure(refs)

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
        present, report.listed = self._listing(needed)
        missing = [ref for sha, ref in needed.items() if present.get(sha, (-1, 0))[0] != ref.size]
        hits = [sha for sha in needed if sha not in {r.sha256 for r in missing}]
        report.cached_files = len(hits)
        if missing:
            report.evicted = self._make_room(present, needed, sum(r.size for r in missing))
            mark = time.perf_counter()
            for ref in missing:
                push_verified(
                    self.phone,
                    self.host_cache,
                    ref,
                    cache_path(ref.sha256),
                    report,
                    reconnect_s=self.reconnect_s,
                )
                self._known[ref.sha256] = (ref.size, self.clock())
                report.pushed_files += 1
                report.pushed_bytes += ref.size
            report.push_seconds = time.perf_counter() - mark
        now = self.clock()
        stale = [sha for sha in hits if now - present[sha][1] >= self.touch_after_s]
        if stale:
            for sha in stale:
                self._known[sha] = (present[sha][0], now)
            paths = [cache_path(sha) for sha in stale]
            self.background(lambda: self.phone.checked("touch", *paths))
        report.seconds = time.perf_counter() - started
        return report

    def forget(self, sha256: str) -> None:
        """Remove a cached file (found corrupt) so the next `ensure` pushes it again."""
        self._known.pop(sha256, None)
        self.phone.remove(cache_path(sha256))

    def _make_room(
        self, present: dict[str, tuple[int, float]], needed: dict[str, FileRef], incoming: int
    ) -> list[str]:
        """Evict cached files the run does not need, least recently used first, until the cache
        is within its quota and the phone's disk has room for `incoming` bytes; leftover
        `.part` files go too. DeviceFull, with nothing removed, when no eviction makes room."""
        used = sum(size for size, _ in present.values())
        free = self.phone.free_bytes()
        reclaimed = sum(self._partials.values())

        def fits() -> bool:
            disk = free is None or free + reclaimed - incoming >= self.reserve_bytes
            return disk and used + incoming <= self.quota_bytes

        evicted = []
        for sha, (size, _mtime) in sorted(present.items(), key=lambda item: item[1][1]):
            if fits():
                break
            if sha in needed:
                continue
            evicted.append(sha)
            used -= size
            reclaimed += size
        if free is not None and free + reclaimed - incoming < self.reserve_bytes:
            raise no_room(self.phone, incoming, free, self.reserve_bytes, reclaimed)
        doomed = [cache_path(sha) for sha in evicted]
        doomed += [f"{CACHE_DIR}/{name}" for name in self._partials]
        if doomed:
            for sha in evicted:
                self._known.pop(sha, None)
            self.phone.remove(*doomed)
            self._partials = {}
        return evicted


def no_room(phone: Phone, incoming: int, free: int, reserve: int, reclaimable: int) -> DeviceFull:
    """The one-line error of a phone whose /data cannot take a push."""
    evictable = f" (+{reclaimable / MB:.0f} MB hexfleet can evict)" if reclaimable else ""
    return DeviceFull(
        f"{phone.serial}: no room on the phone for {incoming / MB:.0f} MB: "
        f"{free / MB:.0f} MB free on /data{evictable}, and {reserve / MB:.0f} MB must stay free; "
        f"free some space on the phone"
    )


def push_verified(
    phone: Phone,
    host_cache: HostCache,
    ref: FileRef,
    final: str,
    report: PushReport,
    mode: int = 0o644,
    reconnect_s: float = RECONNECT_S,
) -> None:
    """Push to `<final>.part`, hash it on the phone (piece by piece during the transfer when it
    is larger than a piece), rename it.

    Bytes that hash wrong are pushed once more. A link dropped on the way is waited out (up to
    `reconnect_s`) and the file pushed again from its start, at most LINK_RETRIES times; the
    `.part` an attempt leaves is removed first. One file at a time, so a phone lost for good
    leaves at most one `.part` behind (the next push's listing finds and removes it)."""
    local = host_cache.path(ref)
    partial = f"{final}{PART}"
    drops = mismatches = 0
    while True:
        try:
            if _push_checked(phone, host_cache, ref, local, partial, mode, report):
                phone.rename(partial, final)
                return
            phone.remove(partial)
        except DeviceFull:
            with contextlib.suppress(DeviceLost):
                phone.remove(partial)
            raise
        except DeviceLost as exc:
            drops += 1
            if drops > LINK_RETRIES:
                raise
            log.warning("%s; pushing %s again (retry %d of %d)", exc, ref.name, drops, LINK_RETRIES)
            phone.wait_online(reconnect_s)
            phone.remove(partial)
            report.link_retries += 1
            continue
        mismatches += 1
        if mismatches == PUSH_ATTEMPTS:
            # The host's copy may be the corrupt one: fetch it again next time.
            host_cache.forget(ref)
            raise ArtifactMismatch(
                f"{phone.serial}: {ref.name} ({ref.sha256[:12]}) did not hash correctly "
                f"on the phone after {PUSH_ATTEMPTS} pushes"
            )


def _push_checked(
    phone: Phone,
    host_cache: HostCache,
    ref: FileRef,
    local: Path,
    partial: str,
    mode: int,
    report: PushReport,
) -> bool:
    """Push `local` to `partial`; whether the phone's copy hashes to `ref.sha256`."""
    if ref.size <= PIECE_BYTES:
        phone.push(local, partial, mode)
        mark = time.perf_counter()
        digest = phone.sha256(partial)
        report.verify_seconds += time.perf_counter() - mark
        return digest == ref.sha256
    # A `.part` an earlier try left must not pass for this one's first pieces.
    phone.remove(partial)
    with PieceCheck(phone, partial, ref.size, host_cache.pieces(ref)) as check:
        with check.following():
            phone.push(local, partial, mode)
        report.verified_in_flight_bytes += check.verified_bytes()
        mark = time.perf_counter()
        whole = check.finish()
        report.verify_seconds += time.perf_counter() - mark
    return whole


class PieceCheck:
    """Checks on the phone, piece by piece, a file that a SEND is still writing.

    adbd writes a SEND's bytes in order, so every piece that ends within the `.part`'s current
    size (`stat`) is final: it is hashed there (`dd ... | sha256sum`, piece_digests) and
    compared with the host's digest of that piece while later pieces are still on their way.
    When the SEND is done, `finish` checks the size and hashes the pieces left. The host's piece
    digests come from bytes that hashed to the file's name (HostCache.pieces), so every piece
    matching and the size matching is the phone's copy being the file. Its commands go through
    one shell session (opened on entering, closed on leaving): a few commands a second, each
    without an adb connection of its own."""

    def __init__(self, phone: Phone, path: str, size: int, pieces: list[str]) -> None:
        self.phone = phone
        self.path = path
        self.size = size
        self.pieces = pieces
        self.matched = 0  # pieces hashed on the phone and found right, from the first
        self.wrong = False  # a piece hashed wrong: the push is bad, no need to look further
        self._stop = threading.Event()
        self._sessions = contextlib.ExitStack()
        self._shell: ShellSession | None = None
        self._broken = False  # the follower's session failed: `finish` opens another

    def __enter__(self) -> PieceCheck:
        self._shell = self._sessions.enter_context(self.phone.session())
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._sessions.close()

    @property
    def shell(self) -> ShellSession:
        if self._shell is None or self._broken:
            self._shell = self._sessions.enter_context(self.phone.session())
            self._broken = False
        return self._shell

    def verified_bytes(self) -> int:
        return min(self.matched * PIECE_BYTES, self.size)

    @contextlib.contextmanager
    def following(self) -> Iterator[None]:
        """Hash pieces as they are written while the body runs (the SEND); stop after it."""
        thread = threading.Thread(target=self._follow, name=f"piece-check-{self.phone.serial}")
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join()

    def finish(self) -> bool:
        """After the SEND: whether the whole file is right (hashing the pieces still unchecked)."""
        if self.wrong:
            return False
        if self.matched < len(self.pieces):
            size = self._check(self.size)
        else:
            size = self.shell.file_size(self.path)
        return not self.wrong and self.matched == len(self.pieces) and size == self.size

    def _follow(self) -> None:
        """Hash the pieces written so far, then look again when the next one should be there
        (from the rate the file grew at), until stopped or done."""
        try:
            written, seen = self.shell.file_size(self.path) or 0, time.monotonic()
            rate = 0.0
            while not (self._stop.is_set() or self.wrong or self.matched == len(self.pieces)):
                size = self._check(written)
                if size is None:
                    wait = PIECE_POLL_S
                    if rate > 0:
                        wait = (self._end(self.matched) - written) / rate
                    self._stop.wait(min(max(wait, PIECE_POLL_S / 5), PIECE_POLL_S * 5))
                    size = self.shell.file_size(self.path) or 0
                now = time.monotonic()
                if size > written:
                    rate = (size - written) / max(now - seen, 1e-3)
                    written, seen = size, now
        except DeviceLost as exc:  # the SEND fails too, or `finish` hashes what is left
            log.debug("piece check of %s stopped: %s", self.path, exc)
            self._broken = True

    def _end(self, index: int) -> int:
        return min((index + 1) * PIECE_BYTES, self.size)

    def _check(self, written: int) -> int | None:
        """Hash the unchecked pieces that end within the first `written` bytes; the file's size
        after hashing them, None if no piece was ready (or the file is gone)."""
        ready = self.matched
        while ready < len(self.pieces) and self._end(ready) <= written:
            ready += 1
        if ready == self.matched:
            return None
        first = self.matched
        digests, size = self.shell.piece_digests(self.path, first, ready - first, PIECE_BYTES)
        for expected, digest in zip(self.pieces[first:ready], digests, strict=True):
            if digest != expected:
                self.wrong = True
                break
            self.matched += 1
        return size
