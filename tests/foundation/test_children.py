"""A child started with `die_with_parent` ends when its parent is SIGKILLed (no orphan left to
drive a phone or consume a queue beside the workers a restarted parent starts)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

from waiting import wait_until

PARENT = textwrap.dedent(
    """
    import signal, subprocess, sys, time
    from hexfleet.children import die_with_parent
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)"],
        start_new_session=True,
        preexec_fn=die_with_parent(signal.SIGKILL),
    )
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"  # a zombie is dead, only not reaped
    except FileNotFoundError:
        return False


def test_a_child_dies_with_its_sigkilled_parent() -> None:
    parent = subprocess.Popen([sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert alive(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        wait_until(lambda: not alive(child), 10, "the orphan to die")
    finally:
        parent.kill()
