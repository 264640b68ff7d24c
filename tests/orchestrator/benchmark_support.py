"""Benchmark jobs stored straight into a database, and synthetic timing series for statistics
tests: lognormal noise around a median plus rare slow outliers, as real iteration timings look.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from hexfleet.orchestrator.db.schema import Job, Run
from hexfleet.states import JobState, RunState


def timings(
    rng: np.random.Generator,
    n: int,
    median: float = 100.0,
    cv: float = 0.02,
    outliers: float = 0.02,
) -> np.ndarray:
    """`n` iteration times: lognormal spread `cv` around `median`; a share `outliers` 1.2-2x."""
    values = median * np.exp(rng.normal(0.0, cv, n))
    slow = rng.random(n) < outliers
    values[slow] *= rng.uniform(1.2, 2.0, int(slow.sum()))
    return values


def store_benchmark_job(
    session: Session,
    phones: dict[str, Sequence[Sequence[float]]],
    *,
    metrics: dict[str, Any] | None = None,
    simulated: bool = True,
    spec: dict[str, Any] | None = None,
    state: str = JobState.SUCCEEDED,
) -> Job:
    """A finished benchmark job: per phone serial, one succeeded run per iteration series."""
    job = Job(
        id=str(uuid.uuid4()),
        kind="benchmark",
        state=state,
        selector="all",
        spec=spec or {"kind": "benchmark", "model": "tiny-sd", "params": {"component": "unet"}},
    )
    session.add(job)
    slot = 0
    for serial, series_list in phones.items():
        for series in series_list:
            values = [float(v) for v in series]
            session.add(
                Run(
                    id=str(uuid.uuid4()),
                    job=job,
                    slot=slot,
                    queue=f"device.{serial}",
                    device_serial=serial,
                    state=RunState.SUCCEEDED,
                    deadline_s=600,
                    simulated=simulated,
                    timings={
                        "load_ms": 50.0,
                        "first_ms": values[0] * 1.5,
                        "iterations_ms": values,
                        "p50_ms": float(np.median(values)),
                    },
                    result={"metrics": {"soc": "SM8550", "npu_share": 1.0, **(metrics or {})}},
                )
            )
            slot += 1
    session.commit()
    return job
