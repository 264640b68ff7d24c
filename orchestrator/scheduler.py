"""Which run goes to which queue: expanding a job over the fleet into runs and routing them.

Two modes. *Fan-out* (the default) gives every matching phone `repeat` runs, each on that phone's
own queue `device.<serial>`. *Any N* (`count=N`) creates N runs that any matching phone may take:
when the selector is exactly one capability (all / soc= / htp_arch=) they go to that capability's
queue (`any`, `soc.<SoC>`, `arch.<N>`), where the first free phone takes them; otherwise they are
spread over the matching phones' own queues, least-loaded first (the load: each phone's runs
still queued or running, asked of the caller only then). A selector that matches no online phone
is refused at submit time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from hexfleet.broker import ANY_QUEUE, arch_queue, device_queue, soc_queue
from hexfleet.errors import Conflict, InvalidRequest
from hexfleet.orchestrator.selectors import Selector

RETRY_LIMIT = 2


@dataclass(frozen=True)
class PlannedRun:
    slot: int
    queue: str
    serial: str | None


def capability_queue(selector: Selector) -> str | None:
    """The one capability queue equivalent to `selector`, if there is one."""
    if selector.is_all:
        return ANY_QUEUE
    if len(selector.groups) != 1 or len(selector.groups[0]) != 1:
        return None
    term = selector.groups[0][0]
    if term.op != "=":
        return None
    if term.field == "soc":
        return soc_queue(term.value)
    if term.field == "htp_arch" and float(term.value).is_integer():
        return arch_queue(int(float(term.value)))
    if term.field == "serial":
        return device_queue(term.value)
    return None


def plan_runs(
    selector: Selector,
    devices: Sequence[Mapping[str, object]],
    *,
    repeat: int = 1,
    count: int | None = None,
    load: Callable[[], Mapping[str, int]] | None = None,
) -> list[PlannedRun]:
    """Expand a job over the online `devices` (fact mappings with at least `serial`).

    `load()` gives each phone's pending runs; it is called only when any-N runs are spread over
    the phones' own queues (no capability queue fits the selector), so other jobs never pay
    for the query behind it."""
    if repeat < 1 or (count is not None and count < 1):
        raise InvalidRequest("repeat and count must be at least 1")
    matching = sorted(selector.select(devices), key=lambda d: str(d["serial"]))
    if not matching:
        raise Conflict(f"no online phone matches the selector {str(selector)!r}")
    if count is None:
        # Round by round (every phone's first run, then every phone's second...): dispatched
        # in slot order, so the last phone's first run is not queued behind everyone's repeats.
        serials = [str(d["serial"]) for _ in range(repeat) for d in matching]
        return [PlannedRun(i, device_queue(s), s) for i, s in enumerate(serials)]
    shared = capability_queue(selector)
    if shared is not None:
        return [PlannedRun(i, shared, None) for i in range(count)]
    pending = dict.fromkeys((str(d["serial"]) for d in matching), 0)
    for serial, busy in (load() if load else {}).items():
        if serial in pending:
            pending[serial] = busy
    planned = []
    for slot in range(count):
        serial = min(pending, key=lambda s: (pending[s], s))
        pending[serial] += 1
        planned.append(PlannedRun(slot, device_queue(serial), serial))
    return planned


def retry_queue(
    selector: Selector,
    devices: Sequence[Mapping[str, object]],
    lost_serials: set[str],
    load: Mapping[str, int] | None = None,
) -> tuple[str, str] | None:
    """(queue, serial) for a lost run's next attempt: another matching phone, never a lost one;
    the least loaded (`load`: each phone's runs still queued or running), then by serial. (Always
    the first serial piled every retry of a storm onto one phone, whose next fault lost them
    all again.)"""
    candidates = [d for d in selector.select(devices) if str(d["serial"]) not in lost_serials]
    if not candidates:
        return None
    pending = load or {}
    serial = min(
        (str(d["serial"]) for d in candidates), key=lambda s: (pending.get(s, 0), s)
    )
    return device_queue(serial), serial
