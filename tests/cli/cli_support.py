"""Jobs, runs and phones stored in a real database and read back through the API's own views, as
the CLI receives them: a four-phone farm like `make demo`'s, with one failed run."""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

from hexfleet.manifest import ROLES, Component, FileRef, Manifest, TensorInfo, TokenizerSpec
from hexfleet.orchestrator.api.views import ComparisonView, DeviceView, JobView
from hexfleet.orchestrator.compare import compare
from hexfleet.orchestrator.db.schema import Device, Host, Job, Run
from hexfleet.orchestrator.validation.report import PhoneVerdict, ValidationReport
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


def _file(name: str, size: int) -> FileRef:
    return FileRef(name=name, sha256=hashlib.sha256(name.encode()).hexdigest(), size=size)


def manifests() -> list[Manifest]:
    """Three variants of an imported SD 1.5 export as the local store lists them."""
    component = Component(
        file=_file("unet.onnx", 1_000_000),
        extra_files=[_file("unet.onnx.data", 3_400_000_000)],
        inputs=[TensorInfo(name="sample", shape=[1, 4, 64, 64], dtype="float32")],
        outputs=[TensorInfo(name="out_sample", shape=[1, 4, 64, 64], dtype="float32")],
    )
    base = Manifest(
        name="sd15",
        version="1",
        components={role: component for role in ROLES},
        tokenizer=TokenizerSpec(
            kind="clip-bpe",
            files=[_file("vocab.json", 1_000), _file("merges.txt", 500)],
            max_length=77,
        ),
        image_size=512,
        latent_channels=4,
        latent_size=64,
        latent_scale=0.18215,
        scheduler={},
        source="imported from /data/exports/stable-diffusion-v1-5 (optimum layout)",
    )
    return [
        base,
        base.model_copy(update={"precision": "w8a16", "parent": base.ref}),
        base.model_copy(update={"precision": "w8a16", "htp_arch": "73", "parent": base.ref}),
    ]


def validation_report() -> ValidationReport:
    """A finished image validation of four phones, the last one failing, as the API returns it."""
    phones = []
    for serial in SERIALS:
        bad = serial == FAILED_SERIAL
        phones.append(
            PhoneVerdict(
                serial=serial,
                passed=not bad,
                reason="PSNR 14.2 dB below 25.0 dB; SSIM 0.61 below 0.90" if bad else "",
                scores={
                    "psnr_db": 14.2 if bad else 47.5,
                    "ssim": 0.61 if bad else 0.993,
                    "seconds": 2.41,
                    "simulated": True,
                    "outlier": bad,
                },
            )
        )
    matrix = {
        a: {b: {"psnr_db": 45.0, "agree": FAILED_SERIAL not in (a, b)} for b in SERIALS if b != a}
        for a in SERIALS
    }
    return ValidationReport(
        job_id=str(uuid.UUID(int=7)),
        state="succeeded",
        complete=True,
        model="sd15/1",
        precision="w8a16",
        mode="images",
        reference="host-fp32",
        thresholds={"min_psnr_db": 25.0, "min_ssim": 0.9},
        phones=phones,
        matrix=matrix,
        outliers=[FAILED_SERIAL],
        consensus="3 of 4 phones agree",
        prompts=["a red circle"],
        simulated=True,
    )
