"""Jobs, runs and phones stored in a real database and read back through the API's own views, as
the CLI receives them: a four-phone farm like `make demo`'s, with one failed run."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from hexfleet.orchestrator.api.views import ComparisonView, DeviceView, JobView
from hexfleet.orchestrator.compare import compare
from hexfleet.orchestrator.db.schema import Device, Host, Job, Run
from hexfleet.states import JobState, RunState

SERIALS = [f"127.0.0.1:{18500 + i}" for i in range(4)]  # the demo's virtual phones
SOCS = ["SM8450", "SM8550", "SM8650", "SM8750"]
FAILED_SERIAL = SERIALS[3]
FAILURE = "runner failed: QNN HTP graph finalize error 1002 on unet.onnx"


@dataclass(frozen=True)
class Stored:
    """What the API returns for the stored farm, as JSON dicts."""

    devices: list[dict[str, Any]]
    jobs: list[dict[str, Any]]
    generate: dict[str, Any]
    bench: dict[str, Any]
    real_bench: dict[str, Any]
    comparison: dict[str, Any]


def _run(job: Job, slot: int, serial: str, **fields: Any) -> Run:
    return Run(
        id=str(uuid.uuid4()),
        job=job,
        slot=slot,
        queue=f"device.{serial}",
        device_serial=serial,
        deadline_s=600,
        **fields,
    )


def _bench_job(session: Session, median: float, simulated: bool, seed: int) -> Job:
    """A benchmark on the four phones; the last one failed (no timings)."""
    rng = np.random.default_rng(seed)
    job = Job(
        id=str(uuid.uuid4()),
        kind="benchmark",
        state=JobState.SUCCEEDED,
        selector="all",
        spec={"kind": "benchmark", "model": "tiny-sd", "params": {"component": "unet"}},
    )
    session.add(job)
    for slot, (serial, soc) in enumerate(zip(SERIALS, SOCS, strict=True)):
        if serial == FAILED_SERIAL:
            session.add(_run(job, slot, serial, state=RunState.FAILED, error=FAILURE))
            continue
        values = [float(v) for v in median * np.exp(rng.normal(0.0, 0.02, 30))]
        session.add(
            _run(
                job,
                slot,
                serial,
                state=RunState.SUCCEEDED,
                simulated=simulated,
                timings={
                    "load_ms": 50.0,
                    "first_ms": values[0] * 1.5,
                    "iterations_ms": values,
                    "p50_ms": float(np.median(values)),
                },
                result={"metrics": {"soc": soc, "npu_share": 1.0}},
            )
        )
    session.commit()
    return job


def _generate_job(session: Session) -> Job:
    job = Job(
        id=str(uuid.uuid4()),
        kind="generate",
        state=JobState.FAILED,
        selector="soc=SM8550|htp_arch>=75",
        submitted_by="ci",
        spec={"kind": "generate", "model": "tiny-sd", "params": {"prompts": ["a red circle"]}},
    )
    session.add(job)
    for slot, serial in enumerate(SERIALS):
        failed = serial == FAILED_SERIAL
        session.add(
            _run(
                job,
                slot,
                serial,
                state=RunState.FAILED if failed else RunState.SUCCEEDED,
                simulated=True,
                progress={"step": 4 if failed else 10, "total": 10},
                timings={} if failed else {"total_s": 12.5 + slot},
                error=FAILURE if failed else None,
            )
        )
    session.commit()
    return job


def _devices(session: Session) -> list[Device]:
    host = Host(id="ci-host.example.internal")
    session.add(host)
    now = dt.datetime.now(dt.UTC)
    devices = [
        Device(
            serial=serial,
            host=host,
            soc=soc,
            htp_arch=69 + 4 * i,
            model=f"Virtual {soc}",
            android_release="14",
            is_virtual=True,
            battery_level=90 - i,
            temperature_c=31.5 + i,
            current_run_id=str(uuid.uuid4()) if i == 0 else None,
            last_seen=now,
        )
        for i, (serial, soc) in enumerate(zip(SERIALS, SOCS, strict=True))
    ]
    session.add_all(devices)
    session.commit()
    return devices


def store_farm(session: Session) -> Stored:
    """Phones, a generate job and two benchmark jobs (virtual and real timings), as API views."""
    devices = _devices(session)
    generate = _generate_job(session)
    virtual = _bench_job(session, 100.0, simulated=True, seed=5)
    real = _bench_job(session, 120.0, simulated=False, seed=6)
    comparison = ComparisonView.of(compare(session, virtual.id, real.id))
    return Stored(
        devices=[DeviceView.of(d).model_dump(mode="json") for d in devices],
        jobs=[JobView.of(j).model_dump(mode="json") for j in (real, virtual, generate)],
        generate=JobView.of(generate, with_runs=True).model_dump(mode="json"),
        bench=JobView.of(virtual, with_runs=True).model_dump(mode="json"),
        real_bench=JobView.of(real, with_runs=True).model_dump(mode="json"),
        comparison=comparison.model_dump(mode="json"),
    )
