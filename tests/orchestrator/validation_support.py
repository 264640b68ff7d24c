"""Phones for validation tests without a farm: each sent task's job folder written on the host as
the agent writes it, run by the native runner in a virtual phone's sandbox (a faulty one with the
runner's faulty-NPU failpoint), results through the ingest worker's own write (which stores a
validation's verdicts when its last run ends)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from runner_bundle import build_runner, register_bundle
from sqlalchemy.orm import Session

from hexfleet.device_agent.execution import write_job
from hexfleet.device_agent.phone import runner_dir
from hexfleet.manifest import Manifest
from hexfleet.messages import ImageOut, RunResult, RunTask
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.worker import ingest_result_and_report
from hexfleet.runner_env import ComputeSettings
from hexfleet.runner_spec import CACHE_DIR, JOBS_DIR, RunnerResultV2
from hexfleet.virtual_phone.executables import sandbox_command


class RecordingDispatcher:
    """Keeps the tasks the orchestrator sends (the broker is tested elsewhere)."""

    def __init__(self) -> None:
        self.sent: list[tuple[RunTask, str]] = []

    def send(self, task: RunTask, queue: str, priority: int) -> None:
        self.sent.append((task, queue))

    def revoke(self, run_ids: Sequence[str]) -> None:
        pass


def phone_results(
    dispatcher: RecordingDispatcher,
    store: ModelStore,
    root: Path,
    faulty: dict[str, float] | None = None,
) -> list[RunResult]:
    """Run every sent task with the native runner on a virtual phone's folder: the results the
    phones' agent would send."""
    build = build_runner()
    bundle = register_bundle(store, build)
    results = []
    for task, queue in dispatcher.sent:
        serial = queue.removeprefix("device.")
        phone = root / serial
        cache = phone / CACHE_DIR.lstrip("/")
        runners = runner_dir(bundle.sha256)
        if not cache.exists():
            cache.mkdir(parents=True)  # the phone's own copy: a link would leave its filesystem
            for blob in store.blobs.iterdir():
                os.link(blob, cache / blob.name)
            (phone / runners.lstrip("/")).mkdir(parents=True)
            for ref in bundle.files:
                shutil.copy2(store.blobs / ref.sha256, phone / runners.lstrip("/") / ref.name)
            os.chmod(phone / runners.lstrip("/") / "hexfleet-runner", 0o755)
        job = write_job(task, Manifest.model_validate(task.manifest), bundle, store, None)
        device_job = f"{JOBS_DIR}/{task.run_id}"
        job_dir = phone / device_job.lstrip("/")
        job_dir.mkdir(parents=True)
        for name, data in job.files.items():
            (job_dir / name).write_bytes(data)
        compute = ComputeSettings(mode="cpu", faulty_npu=(faulty or {}).get(serial, 0.0))
        done = subprocess.run(
            sandbox_command(
                phone, "x86_64", f"{runners}/hexfleet-runner", [f"{device_job}/spec.json"],
                device_job, root / f".{serial}-state",
            ),
            env={"LD_LIBRARY_PATH": runners, **compute.to_env()},
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        result = RunnerResultV2.model_validate_json((job_dir / "result.json").read_text())
        plan = job.spec.params.images if job.spec.params.kind == "generate" else []
        now = dt.datetime.now(dt.UTC)
        results.append(
            RunResult(
                run_id=task.run_id,
                attempt=task.attempt,
                serial=serial,
                host="host-a",
                outcome="succeeded",
                simulated=result.simulated,
                timings=result.timings,
                metrics=result.metrics,
                images=[
                    ImageOut(
                        index=o.index,
                        prompt=job.prompts[plan[o.index].prompt_row - 1],
                        seed=plan[o.index].seed,
                        png=(job_dir / o.name).read_bytes(),
                    )
                    for o in result.outputs
                    if o.kind == "image"
                ],
                tensors={
                    o.prompt or o.name: (job_dir / o.name).read_bytes()
                    for o in result.outputs
                    if o.kind == "tensor"
                },
                started_at=now,
                finished_at=now,
            )
        )
    dispatcher.sent.clear()
    return results


def play_phones(
    session: Session,
    dispatcher: RecordingDispatcher,
    store: ModelStore,
    root: Path,
    faulty: dict[str, float] | None = None,
) -> None:
    """Run every sent task on its phone, then ingest the results as the ingest worker does."""
    for result in phone_results(dispatcher, store, root, faulty):
        ingest_result_and_report(session, result, dispatcher, store)
    session.commit()
