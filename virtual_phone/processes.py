"""A virtual phone's process table: the pids `ps` lists and `kill` may signal.

Pids are the phone's own numbers, never host pids, so `kill` can only reach processes this
phone started (its shell sessions and the programs they run).
"""

from __future__ import annotations

import itertools
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Long-lived system processes every Android phone shows in `ps -A`.
SYSTEM_PROCESSES = (
    (1, 0, "root", "init", "/system/bin/init second_stage"),
    (2, 0, "root", "kthreadd", "[kthreadd]"),
    (612, 1, "logd", "logd", "/system/bin/logd"),
    (701, 1, "root", "adbd", "/apex/com.android.adbd/bin/adbd --root_seclabel=u:r:su:s0"),
    (905, 1, "system", "surfaceflinger", "/system/bin/surfaceflinger"),
    (1180, 1, "system", "system_server", "system_server"),
    (1490, 1, "system", "vendor.qti.hardware.dsp", "/vendor/bin/cdsprpcd"),
)


@dataclass
class Process:
    """One entry of the table; `signal_fn` delivers a signal to whatever backs it."""

    pid: int
    ppid: int
    name: str
    args: str
    user: str = "shell"
    started: float = field(default_factory=time.time)
    signal_fn: Callable[[int], None] | None = None
    computes: bool = False


class ProcessTable:
    """Processes of one phone: system ones are fixed, shells and programs come and go."""

    def __init__(self, first_pid: int = 4000) -> None:
        self._pids = itertools.count(first_pid)
        self._live: dict[int, Process] = {}
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener()` whenever a process starts or ends (the health model's load)."""
        self._listeners.append(listener)

    def spawn(
        self,
        name: str,
        args: str,
        *,
        ppid: int = 701,
        signal_fn: Callable[[int], None] | None = None,
        computes: bool = False,
    ) -> Process:
        """Register a new process and return it (with its fresh pid)."""
        process = Process(
            pid=next(self._pids),
            ppid=ppid,
            name=name,
            args=args,
            signal_fn=signal_fn,
            computes=computes,
        )
        self._live[process.pid] = process
        self._notify()
        return process

    def exit(self, pid: int) -> None:
        """Remove a process that ended."""
        if self._live.pop(pid, None) is not None:
            self._notify()

    def get(self, pid: int) -> Process | None:
        return self._live.get(pid)

    def rows(self) -> list[Process]:
        """System processes then live ones, by pid."""
        system = [
            Process(pid=pid, ppid=ppid, name=name, args=args, user=user, started=0.0)
            for pid, ppid, user, name, args in SYSTEM_PROCESSES
        ]
        return system + sorted(self._live.values(), key=lambda p: p.pid)

    def computing(self) -> int:
        """How many live processes are running a model."""
        return sum(1 for process in self._live.values() if process.computes)

    def kill(self, pid: int, signum: int = signal.SIGTERM) -> bool:
        """Deliver `signum` to a live process; False if the pid is not one of ours."""
        process = self._live.get(pid)
        if process is None or process.signal_fn is None:
            return False
        process.signal_fn(signum)
        return True

    def kill_all(self) -> None:
        """SIGKILL every live process (the phone is going down)."""
        for process in list(self._live.values()):
            if process.signal_fn is not None:
                process.signal_fn(signal.SIGKILL)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()
