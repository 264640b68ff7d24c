"""Running one task on one phone: push what is missing, run the runner with a deadline, report.

The runner is the native program of the task's bundle for the phone's ABI (device_agent/bundles.py).
The host writes the job folder (contract v2, models/job_folder.py: token ids, latents, sampler
plan, inputs), so no prompt reaches the phone; the runner's command line is a fixed template.
The outcome is always a `RunResult`: succeeded, failed (the runner said why, or the deadline
passed), cancelled, or lost (the phone went away: the orchestrator retries elsewhere).
"""

from __future__ import annotations

import datetime as dt
import io
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import TypeAdapter

from hexfleet import progress
from hexfleet.bundle import RUNNER_FILE, RunnerBundle, RunnerInfo
from hexfleet.device_agent.bundles import (
    RunnerInstaller,
    pick_bundle,
    qnn_libraries,
    runner_command,
)
from hexfleet.device_agent.phone import Phone, cache_path, job_dir
from hexfleet.device_agent.push import ArtifactPusher, PushReport
from hexfleet.errors import (
    ArtifactMismatch,
    DeviceLost,
    HexfleetError,
    InvalidRequest,
    RunnerFailed,
)
from hexfleet.manifest import FileRef, Manifest
from hexfleet.messages import ImageOut, RunProgress, RunResult, RunTask
from hexfleet.models.job_folder import (
    FileSource,
    Placement,
    write_benchmark,
    write_generate,
    write_infer,
)
from hexfleet.runner_spec import (
    BenchmarkParams,
    GenerateParams,
    InferParams,
    Params,
    RunnerResultV2,
    RunnerSpecV2,
)
from hexfleet.settings import Settings
from hexfleet.states import RunOutcome, RunState

THERMAL_POLL_S = 1.0
PROGRESS_EVERY_S = 1.0
_PARAMS: TypeAdapter[object] = TypeAdapter(Params)


@dataclass(frozen=True)
class JobFolder:
    """A run's job folder as the host wrote it: the spec and every file by name."""

    spec: RunnerSpecV2
    files: dict[str, bytes]
    prompts: list[str]  # generate: image i's prompt is prompts[spec image i's prompt_row - 1]


def write_job(
    task: RunTask,
    manifest: Manifest,
    bundle: RunnerBundle,
    files: FileSource,
    htp_arch: str | None,
) -> JobFolder:
    """The job folder for `task` (contract v2), written on the host: token ids from the host's
    tokenizer (its files from `files`, the host cache), latents, sampler plan, inputs."""
    params = _PARAMS.validate_python(task.params)
    placement = Placement(htp_arch=htp_arch, qnn=qnn_libraries(bundle))
    with tempfile.TemporaryDirectory(prefix="hexfleet-job-") as tmp:
        folder = Path(tmp)
        prompts: list[str] = []
        if isinstance(params, GenerateParams):
            spec = write_generate(folder, files, manifest, params, task.run_id, placement=placement)
            prompts = list(params.prompts)
        elif isinstance(params, BenchmarkParams):
            spec = write_benchmark(folder, manifest, params, task.run_id, placement=placement)
        else:
            assert isinstance(params, InferParams)
            missing = [name for name in params.inputs if name not in task.inputs]
            if missing:
                raise InvalidRequest(f"the task carries no tensor for input {missing[0]!r}")
            tensors = [
                np.load(io.BytesIO(task.inputs[name]), allow_pickle=False) for name in params.inputs
            ]
            spec = write_infer(folder, manifest, params, tensors, task.run_id, placement=placement)
        written = {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
    return JobFolder(spec, written, prompts)


def component_files(spec: RunnerSpecV2) -> list[FileRef]:
    """The files the runner opens for this job, by content (not the tokenizer: it stays here)."""
    refs: dict[str, FileRef] = {}
    for component in spec.components.values():
        for ref in (component.file, *component.extra_files):
            refs.setdefault(ref.sha256, ref)
    return list(refs.values())


@dataclass(frozen=True)
class ThermalStart:
    """How a benchmark started: the hottest zone then, the wait, and what it waited for."""

    temp_c: float | None
    waited_s: float
    target_c: float  # start below the limit, and at or below this once the phone has an idle
    ready: bool  # False: the wait hit its bound first


@dataclass
class ThermalGate:
    """Benchmarks start only on a cool phone: below `limit_c`; and once a benchmark has run on
    this phone, back within `cooldown_margin_c` of the coolest temperature a benchmark started at
    here (its idle), so repeated runs start from the same thermal state. Waits are bounded:
    `max_wait_s` for the limit alone, `cooldown_wait_s` once a cool-down applies."""

    limit_c: float = 45.0
    max_wait_s: float = 120.0
    cooldown_margin_c: float = 3.0
    cooldown_wait_s: float = 300.0
    idle_c: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ThermalGate:
        return cls(
            limit_c=settings.agent_thermal_limit_c,
            max_wait_s=settings.agent_thermal_wait_s,
            cooldown_margin_c=settings.agent_cooldown_margin_c,
            cooldown_wait_s=settings.agent_cooldown_wait_s,
        )

    def wait(self, phone: Phone, limit_c: float | None = None) -> ThermalStart:
        limit = min(self.limit_c, limit_c) if limit_c else self.limit_c
        target, bound = limit, self.max_wait_s
        if self.idle_c is not None:
            target = min(limit, self.idle_c + self.cooldown_margin_c)
            bound = max(self.max_wait_s, self.cooldown_wait_s)
        started = time.monotonic()
        while True:
            temp = phone.health().max_temp_c
            ready = temp is None or (temp < limit and temp <= target)
            waited = time.monotonic() - started
            if ready or waited >= bound:
                break
            time.sleep(THERMAL_POLL_S)
        if temp is not None and temp < limit:
            self.idle_c = temp if self.idle_c is None else min(self.idle_c, temp)
        return ThermalStart(temp, waited, target, ready)


class CorruptCache(RunnerFailed):
    """The runner found a cached artifact whose bytes do not hash to its name (its
    ArtifactMismatch): the agent finds which on the phone, pushes it again and runs once more."""


RUNNER_LINE_PREFIX = "hexfleet-runner: "


def runner_failure(exit_code: int, stderr: str) -> RunnerFailed:
    """The runner's failure as an exception: its last stderr line, and the signal that killed it
    if one did. The line is `hexfleet-runner: <ErrorKind>: <message>` (runner/CONTRACT.md): the
    kind is read here, once, so callers decide by exception type."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    reason = lines[-1] if lines else ""
    if exit_code > 128:  # a shell reports a process killed by signal N as 128 + N
        try:
            name = signal.Signals(exit_code - 128).name
        except ValueError:
            name = f"signal {exit_code - 128}"
        killed = f"the runner was killed by {name}"
        return RunnerFailed(f"{killed}: {reason}" if reason else killed)
    kind, _, _ = reason.removeprefix(RUNNER_LINE_PREFIX).partition(": ")
    if reason.startswith(RUNNER_LINE_PREFIX) and kind == ArtifactMismatch.__name__:
        return CorruptCache(reason)
    return RunnerFailed(reason or f"the runner exited with {exit_code}")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Executor:
    """Runs tasks on one phone of ABI `abi` (its `ro.product.cpu.abi`)."""

    def __init__(
        self,
        phone: Phone,
        pusher: ArtifactPusher,
        host: str,
        htp_arch: int | None,
        on_progress: Callable[[RunProgress], None],
        cancelled: Callable[[str], bool],
        thermal: ThermalGate | None = None,
        background: Callable[[Callable[[], object]], object] | None = None,
        *,
        abi: str,
    ) -> None:
        self.phone = phone
        self.pusher = pusher
        self.installer = RunnerInstaller(phone, pusher.host_cache)
        self.host = host
        self.htp_arch = htp_arch
        self.abi = abi
        self.on_progress = on_progress
        self.cancelled = cancelled
        self.thermal = thermal or ThermalGate()
        # Where the job folder's removal runs: after the result, off the run's path if given.
        self.background = background or (lambda errand: errand())
        self.last_push: PushReport | None = None
        self._last_progress = 0.0

    def execute(self, task: RunTask) -> RunResult:
        """Run `task`; never raises for a phone or runner problem, it reports it."""
        started = _now()
        try:
            manifest = Manifest.model_validate(task.manifest)
            deadline = time.monotonic() + task.deadline_s
            return self._attempt(task, manifest, deadline, started)
        except DeviceLost as exc:
            return self._result(task, started, RunState.LOST, error=str(exc))
        except HexfleetError as exc:
            return self._result(
                task, started, RunState.FAILED, error=f"{type(exc).__name__}: {exc}"
            )
        except ValueError as exc:
            return self._result(task, started, RunState.FAILED, error=f"invalid task: {exc}")

    def _result(
        self,
        task: RunTask,
        started: dt.datetime,
        outcome: RunOutcome,
        *,
        error: str | None = None,
        simulated: bool = False,
        timings: dict[str, object] | None = None,
        metrics: dict[str, object] | None = None,
        images: list[ImageOut] | None = None,
        tensors: dict[str, bytes] | None = None,
        runner: RunnerInfo | None = None,
    ) -> RunResult:
        """The one place a RunResult is built: every outcome of `task` on this phone."""
        return RunResult(
            run_id=task.run_id,
            attempt=task.attempt,
            serial=self.phone.serial,
            host=self.host,
            outcome=outcome,
            simulated=simulated,
            timings=timings or {},
            metrics=metrics or {},
            images=images or [],
            tensors=tensors or {},
            error=error,
            runner=runner,
            started_at=started,
            finished_at=_now(),
        )

    def _attempt(
        self, task: RunTask, manifest: Manifest, deadline: float, started: dt.datetime
    ) -> RunResult:
        bundle = pick_bundle(task.bundles, self.abi)
        arch = str(self.htp_arch) if self.htp_arch else None
        job = write_job(task, manifest, bundle, self.pusher.host_cache, arch)
        refs = component_files(job.spec)
        push = self._push(refs, bundle)
        try:
            return self._run(task, bundle, job, deadline, started)
        except CorruptCache:
            # Which file the runner refused is asked of the phone itself (sha256sum), not read
            # from the runner's message: every file that does not hash to its name goes.
            corrupt = [r for r in refs if self.phone.sha256(cache_path(r.sha256)) != r.sha256]
            if not corrupt:
                raise
            for ref in corrupt:
                self.pusher.forget(ref.sha256)
            self._push(refs, bundle)
        except RunnerFailed:
            # The files' presence came from trusted listings: if the phone lost some behind the
            # agent's back, list again, push them and run once more.
            if push.listed:
                raise
            self.pusher.invalidate()
            again = self._push(refs, bundle, recheck=True)
            if not again.pushed_files:
                raise
        return self._run(task, bundle, job, deadline, started)

    def _push(self, refs: list[FileRef], bundle: RunnerBundle, recheck: bool = False) -> PushReport:
        """The model's files into the phone's cache and the bundle into its folder; one report."""
        models = self.pusher.ensure(refs)
        runner = self.installer.recheck(bundle) if recheck else self.installer.ensure(bundle)
        self.last_push = PushReport(
            pushed_files=models.pushed_files + runner.pushed_files,
            pushed_bytes=models.pushed_bytes + runner.pushed_bytes,
            cached_files=models.cached_files + runner.cached_files,
            evicted=models.evicted,
            push_seconds=models.push_seconds + runner.push_seconds,
            verify_seconds=models.verify_seconds + runner.verify_seconds,
            link_retries=models.link_retries + runner.link_retries,
            seconds=models.seconds + runner.seconds,
            listed=models.listed and runner.listed,
        )
        return self.last_push

    def _run(
        self,
        task: RunTask,
        bundle: RunnerBundle,
        job: JobFolder,
        deadline: float,
        started: dt.datetime,
    ) -> RunResult:
        folder = job_dir(task.run_id)
        self._last_progress = 0.0  # a run's first progress goes out at once: it says "started"
        metrics: dict[str, object] = {}
        if job.spec.params.kind == "benchmark":
            start = self.thermal.wait(self.phone, job.spec.params.max_start_temp_c)
            metrics.update(
                temp_before_c=start.temp_c,
                thermal_wait_s=start.waited_s,
                start_target_c=start.target_c,
                started_cool=start.ready,
            )
        try:
            self.phone.push_files({f"{folder}/{name}": data for name, data in job.files.items()})
            streamed = self.phone.stream_script(
                runner_command(bundle, task.run_id),
                RUNNER_FILE,
                on_line=lambda line: self._progress(task, line),
                deadline=deadline,
                should_stop=lambda: "cancelled" if self.cancelled(task.run_id) else "",
            )
            if streamed.exit_code is None:
                self.phone.kill(self.phone.runner_pids(task.run_id))
                if streamed.stopped == "cancelled":
                    return self._result(
                        task, started, RunState.CANCELLED, error="cancelled by the user"
                    )
                raise RunnerFailed(
                    f"the run exceeded its deadline of {task.deadline_s:g} s "
                    "and was killed on the phone"
                )
            if streamed.exit_code != 0:
                raise runner_failure(streamed.exit_code, streamed.stderr)
            results: list[RunnerResultV2] = []

            def outputs(raw: bytes) -> list[str]:
                results.append(RunnerResultV2.model_validate_json(raw))
                return [f"{folder}/{output.name}" for output in results[0].outputs]

            _, files = self.phone.pull_with(f"{folder}/result.json", outputs)
            return self._collect(task, started, bundle, job, results[0], files, metrics)
        finally:
            self.background(lambda: self._remove(folder))

    def _remove(self, folder: str) -> None:
        try:
            self.phone.remove(folder)
        except DeviceLost:
            pass  # the worker sweeps job folders when it starts again

    def _progress(self, task: RunTask, line: str) -> None:
        """Forward a progress line, at most every PROGRESS_EVERY_S, and always the last step
        (a run shorter than that would otherwise end showing its first stage)."""
        event = progress.parse(line)
        if event is None:
            return
        now = time.monotonic()
        last = event["step"] == event["total"]
        if not last and now - self._last_progress < PROGRESS_EVERY_S:
            return
        self._last_progress = now
        self.on_progress(
            RunProgress(
                run_id=task.run_id,
                attempt=task.attempt,
                serial=self.phone.serial,
                step=int(event["step"]),
                total=int(event["total"]),
                stage=str(event["stage"]),
            )
        )

    def _collect(
        self,
        task: RunTask,
        started: dt.datetime,
        bundle: RunnerBundle,
        job: JobFolder,
        result: RunnerResultV2,
        files: list[bytes],
        extra: dict[str, object],
    ) -> RunResult:
        images, tensors = [], {}
        plan = job.spec.params.images if job.spec.params.kind == "generate" else []
        for output, data in zip(result.outputs, files, strict=True):
            if output.kind == "image":
                # v2 images carry no prompt: image i is the plan's image i (CONTRACT.md).
                if not 0 <= output.index < len(plan):
                    raise RunnerFailed(f"the runner returned image {output.index} of {len(plan)}")
                image = plan[output.index]
                images.append(
                    ImageOut(
                        index=output.index,
                        prompt=job.prompts[image.prompt_row - 1],
                        seed=image.seed,
                        png=data,
                    )
                )
            else:
                tensors[output.prompt or output.name] = data
        metrics = {
            **result.metrics,
            **extra,
            "runtime": result.runtime,
            "htp_arch": result.htp_arch,
        }
        timings = dict(result.timings)
        if "temp_before_c" in extra:
            health = self.phone.health()
            before = extra["temp_before_c"]
            hot = isinstance(before, float) and before >= self.thermal.limit_c  # the gate gave up
            metrics.update(temp_after_c=health.max_temp_c, throttled=health.throttled or hot)
            # The gate's wait is part of what a benchmark cost, beside its own timings.
            timings["thermal_wait_s"] = extra["thermal_wait_s"]
        if self.last_push is not None:
            metrics.update(
                pushed_bytes=self.last_push.pushed_bytes,
                cached_files=self.last_push.cached_files,
                push_s=self.last_push.push_seconds,
            )
        return self._result(
            task,
            started,
            RunState.SUCCEEDED,
            simulated=result.simulated,
            timings=timings,
            metrics=metrics,
            images=images,
            tensors=tensors,
            runner=RunnerInfo(
                bundle_sha256=bundle.sha256,
                runner_version=bundle.runner_version,
                abi=self.abi,
            ),
        )
