"""The fleet as people see it: each phone's state (idle, busy, throttled, offline) from its row.

The agent reports state in heartbeats; a phone whose last heartbeat is older than `STALE_AFTER_S`
is shown offline even if its row says otherwise (its agent died without saying goodbye).
"""

from __future__ import annotations

import datetime as dt

from hexfleet.orchestrator.db.schema import Device
from hexfleet.states import PhoneState

# Heartbeats come every 3 s (device_agent.worker.HEARTBEAT_S); ten missed ones mean it is gone.
STALE_AFTER_S = 30.0


def phone_state(device: Device, now: dt.datetime) -> PhoneState:
    """What a phone is doing, as the dashboard and /metrics report it."""
    if device.state == PhoneState.OFFLINE or heartbeat_age_s(device, now) > STALE_AFTER_S:
        return PhoneState.OFFLINE
    if device.state == PhoneState.THROTTLED or device.throttled:
        return PhoneState.THROTTLED
    if device.state == PhoneState.BUSY or device.current_run_id:
        return PhoneState.BUSY
    return PhoneState.IDLE


def heartbeat_age_s(device: Device, now: dt.datetime) -> float:
    """Seconds since the phone's last heartbeat (the agent's clock against ours)."""
    return max(0.0, (now - device.last_seen).total_seconds())
