"""Fault injection for a virtual phone: a broken, slow or stalled link, a crashing runner, bad NPU.

`LinkFaults` is consulted by the transport for every message; `FaultCommand` is the typed message
that sets a fault from another process (`hexfleet virtual-devices fault ...`).
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field

MB = 1_000_000

FaultKind = Literal[
    "bandwidth",
    "drop_after_bytes",
    "drop_at",
    "stall",
    "offline",
    "online",
    "crash_runner",
    "faulty_npu",
    "slow_npu",
    "clear",
]


class FaultCommand(BaseModel):
    """One fault to apply to a running phone; `value`'s unit depends on `kind`.

    bandwidth: MB/s (None lifts the limit) · drop_after_bytes: bytes · drop_at: seconds from now ·
    stall: seconds (None = until cleared) · offline: seconds (None = until `online`) · online ·
    crash_runner: seconds after the next program starts · faulty_npu: noise magnitude (0 heals) ·
    slow_npu: extra time per inference as a fraction (0.05: 5 % slower; 0 heals) ·
    clear: lift every link fault.
    """

    version: Literal[1] = 1
    kind: FaultKind
    value: float | None = Field(default=None, ge=0)


class TokenBucket:
    """Limits a byte flow to `rate` bytes per second, allowing a burst of `burst` bytes."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._last = time.monotonic()

    def delay_for(self, nbytes: int) -> float:
        """Take `nbytes` (going into debt if needed) and return how long to wait before sending."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= nbytes
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate


@dataclass(frozen=True)
class RunnerCrash:
    """Kill the next program(s) the phone runs `after_s` seconds after they start."""

    after_s: float = 0.0
    signum: int = signal.SIGSEGV
    times: int = 1


class LinkFaults:
    """The faults of one phone. Safe to set from any thread; the transport reads them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bandwidth: tuple[TokenBucket, TokenBucket] | None = None
        self._drop_budget: int | None = None
        self._drop_at: float | None = None
        self._stalled_until: float | None = None
        self._runner_crash: RunnerCrash | None = None
        self.faulty_npu = 0.0
        self.slow_npu = 0.0

    def limit_bandwidth(self, megabytes_per_s: float | None) -> None:
        """Throttle each direction of the link to this many MB/s (None lifts the limit)."""
        with self._lock:
            if megabytes_per_s is None or megabytes_per_s <= 0:
                self._bandwidth = None
                return
            rate = megabytes_per_s * MB
            burst = max(64 * 1024, rate / 100)
            self._bandwidth = (TokenBucket(rate, burst), TokenBucket(rate, burst))

    @property
    def bandwidth_mb_s(self) -> float | None:
        """The current limit in MB/s, None when unlimited."""
        bandwidth = self._bandwidth
        return None if bandwidth is None else bandwidth[0].rate / MB

    def drop_after_bytes(self, nbytes: int) -> None:
        """Cut every connection once `nbytes` more bytes have crossed the link."""
        with self._lock:
            self._drop_budget = max(0, int(nbytes))

    def drop_armed(self) -> bool:
        """Whether a drop set by `drop_after_bytes` is still waiting for its bytes."""
        with self._lock:
            return self._drop_budget is not None

    def drop_in(self, seconds: float) -> None:
        """Cut every connection `seconds` from now."""
        with self._lock:
            self._drop_at = time.monotonic() + seconds

    def stall(self, seconds: float | None = None) -> None:
        """Stop moving bytes (the TCP connection stays open) for `seconds`, or until cleared."""
        with self._lock:
            self._stalled_until = float("inf") if seconds is None else time.monotonic() + seconds

    def crash_runner(
        self, after_s: float = 0.0, signum: int = signal.SIGSEGV, times: int = 1
    ) -> None:
        """Make the next `times` programs (runner, onnx tool) die of `signum` after `after_s`."""
        with self._lock:
            self._runner_crash = RunnerCrash(after_s, signum, times)

    def clear_link(self) -> None:
        """Lift bandwidth limits, drops and stalls."""
        with self._lock:
            self._bandwidth = None
            self._drop_budget = None
            self._drop_at = None
            self._stalled_until = None

    def take_runner_crash(self) -> RunnerCrash | None:
        """The crash to inflict on the program starting now, if one is armed."""
        with self._lock:
            crash = self._runner_crash
            if crash is None:
                return None
            remaining = crash.times - 1
            self._runner_crash = (
                RunnerCrash(crash.after_s, crash.signum, remaining) if remaining > 0 else None
            )
            return crash

    def drop_due(self) -> bool:
        """Whether a timed drop has come due (clears it)."""
        with self._lock:
            if self._drop_at is not None and time.monotonic() >= self._drop_at:
                self._drop_at = None
                return True
            return False

    async def wait_unstalled(self) -> None:
        """Return once the link is not stalled (polling: a stall is a test's rare event)."""
        while True:
            with self._lock:
                until = self._stalled_until
                if until is not None and time.monotonic() >= until:
                    self._stalled_until = until = None
            if until is None:
                return
            await asyncio.sleep(0.02)

    async def pass_bytes(self, nbytes: int, *, outgoing: bool) -> int:
        """Account for `nbytes` crossing the link; wait out stalls and bandwidth limits.

        Returns how many of them may cross before the connection must be dropped (nbytes when
        no drop is due).
        """
        await self.wait_unstalled()
        with self._lock:
            delay = 0.0
            if self._bandwidth is not None:
                delay = self._bandwidth[0 if outgoing else 1].delay_for(nbytes)
            allowed = nbytes
            if self._drop_budget is not None:
                allowed = min(nbytes, self._drop_budget)
                self._drop_budget -= allowed
                if allowed < nbytes:
                    self._drop_budget = None
        if delay > 0:
            await asyncio.sleep(delay)
        return allowed
