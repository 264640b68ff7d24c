"""Progress lines on stdout: `@progress {"stage": ..., "step": n, "total": N}`, one per event.

The agent parses lines that start with `@progress ` and forwards them; any other output is log.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TextIO

PREFIX = "@progress "

# In-process progress of a long step: on_stage(stage, done, total), e.g. ("calibration", 3, 8).
StageCallback = Callable[[str, int, int], None]


def report(stage: str, step: int, total: int, stream: TextIO | None = None) -> None:
    line = json.dumps({"stage": stage, "step": step, "total": total}, separators=(",", ":"))
    print(PREFIX + line, file=stream or sys.stdout, flush=True)


def parse(line: str) -> dict[str, object] | None:
    """The event on a progress line, or None for any other line (or a malformed one)."""
    if not line.startswith(PREFIX):
        return None
    try:
        event = json.loads(line[len(PREFIX) :])
    except ValueError:
        return None
    if not isinstance(event, dict) or not {"stage", "step", "total"} <= event.keys():
        return None
    return event
