"""The farm's nouns for what a job is and where things stand: job kinds, job, run and phone states.

One definition each, imported by the agent, the orchestrator and the CLI alike; the database
stores their values as strings. Which states are final is written here and nowhere else.
"""

from __future__ import annotations

import enum
from typing import Literal


class JobKind(enum.StrEnum):
    GENERATE = "generate"
    BENCHMARK = "benchmark"
    INFER = "infer"
    VALIDATE = "validate"


# What a phone executes: a validate job's runs are infer (or generate) runs.
RunKind = Literal[JobKind.GENERATE, JobKind.BENCHMARK, JobKind.INFER]


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class RunState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    LOST = "lost"
    CANCELLED = "cancelled"


FINAL_RUN_STATES = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.LOST, RunState.CANCELLED}
)

# How an attempt ended, as its agent reports it.
RunOutcome = Literal[RunState.SUCCEEDED, RunState.FAILED, RunState.LOST, RunState.CANCELLED]


class PhoneState(enum.StrEnum):
    """What a phone is doing: its agent reports it in heartbeats; the orchestrator shows a phone
    whose heartbeats stopped as offline (hexfleet.orchestrator.presence)."""

    IDLE = "idle"
    BUSY = "busy"
    THROTTLED = "throttled"
    OFFLINE = "offline"
