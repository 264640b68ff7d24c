"""Phones for validation tests without a farm: the runner's own job code on a virtual phone's
folder, in-process (a faulty one with the virtual phone's NPU fault), results through the ingest
worker's own write (which stores a validation's verdicts when its last run ends)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy.orm import Session

from hexfleet.messages import ImageOut, RunResult, RunTask
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.worker import ingest_result_and_report
from hexfleet.runner import generate, infer
from hexfleet.runner.device import Device
from hexfleet.runner_env import ComputeSettings
from hexfleet.runner_spec import CACHE_DIR, RunnerSpec


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
    """Run every sent task with the runner's job code on a virtual phone's folder: the results
    the phones' agent would send."""
    results = []
    for task, queue in dispatcher.sent:
        serial = queue.removeprefix("device.")
        phone = root / serial
        cache = phone / CACHE_DIR.lstrip("/")
        if not cache.exists():
            cache.mkdir(parents=True)  # the phone's own copy: a link would leave its filesystem
            for blob in store.blobs.iterdir():
                os.link(blob, cache / blob.name)
        device = Device(
            phone, True, ComputeSettings(mode="cpu", faulty_npu=(faulty or {}).get(serial, 0.0))
        )
        job_dir = phone / "jobs" / task.run_id
        job_dir.mkdir(parents=True)
        for index, data in enumerate(task.inputs.values()):
            (job_dir / f"input-{index}.npy").write_bytes(data)
        spec = RunnerSpec(run_id=task.run_id, manifest=task.manifest, params=task.params)
        result = (generate if task.kind == "generate" else infer).run(device, spec, job_dir)
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
                        prompt=o.prompt or "",
                        seed=o.seed or 0,
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
