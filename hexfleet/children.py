"""Child processes that do not outlive their parent: a phone worker without its agent, an ingest
worker without `hexfleet serve`.

A parent that is SIGKILLed (the OOM killer, `kill -9`, a crashed container runtime) cannot stop
its children; orphans would go on consuming queues beside the ones a restarted parent starts (two
workers driving one phone). Linux's parent-death signal ends them instead: `die_with_parent` is
a `preexec_fn` for `subprocess.Popen`. Elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

PR_SET_PDEATHSIG = 1


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A `preexec_fn` that has the child sent `signum` when the thread that started it ends
    (its process dying included), or None where the kernel cannot do that.

    Start such children from a thread that lives as long as the parent (the main thread, or a
    supervisor's), since the signal follows the creating thread."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        if libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) != 0:
            os._exit(71)  # EX_OSERR: better no child than one that may outlive its parent
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(0)

    return arm
