"""Executor on a virtual phone: a run with hostile prompts, the deadline, cancel, a runner crash, a
runner failure, a phone lost mid-run; the job folder is gone after each, the runner killed.
"""

from __future__ import annotations

import io
import re
import shlex
import time

import numpy as np
import pytest
from agent_support import (
    LONG_RUN,
    RunnerWatch,
    Runs,
    finished,
    in_background,
    jobs_left,
    make_task,
    shell_commands,
    synced,
    watch_phone,
)
from PIL import Image
from waiting import wait_until

from hexfleet.bundle import RunnerBundle
from hexfleet.device_agent.phone import SESSION_MARK, job_dir, runner_dir
from hexfleet.device_agent.phone import Phone as AgentPhone
from hexfleet.device_agent.push import ArtifactPusher
from hexfleet.manifest import Manifest
from hexfleet.messages import RunTask
from hexfleet.runner_spec import CACHE_DIR, JOBS_DIR, RUNNERS_DIR
from hexfleet.virtual_phone.fleet import ThreadedFleet
from hexfleet.virtual_phone.phone import VirtualPhone

# The tiny model knows a few words and ignores punctuation, so the shell syntax is the payload.
HOSTILE_PROMPTS = [
    "a red circle; a blue square",
    "$(a green triangle) `a purple cross`",
    "a \"yellow\" 'circle' && a white background",
    "a pink square\nat the top | in a gray background > the center",
]
USER_WORDS = ("circle", "square", "triangle", "cross", "yellow", "purple")
# Every word of every shell command the agent sends is a fixed word or a validated identifier.
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
FIXED_WORD = re.compile(
    "|".join(
        [
            r"mkdir|rm|touch|sha256sum|mv|ps|kill|dumpsys|df|/data|-[a-zA-Z0-9]+|PID,ARGS|[0-9]+|cd|&&",
            # A file verified piece by piece: dd, stat and a session's end marker.
            rf"dd|stat|%s|echo|{SESSION_MARK}|;|\||>|/dev/null|(bs|skip|count)=[0-9]+",
            rf"(if=)?{re.escape(CACHE_DIR)}/[0-9a-f]{{64}}(\.part)?",
            rf"{re.escape(JOBS_DIR)}/{UUID}(/spec\.json)?",
            rf"(if=)?{re.escape(RUNNERS_DIR)}/[0-9a-f]{{64}}/[A-Za-z0-9._+-]+",
            rf"LD_LIBRARY_PATH={re.escape(RUNNERS_DIR)}/[0-9a-f]{{64}}",
            rf"ADSP_LIBRARY_PATH={re.escape(RUNNERS_DIR)}/[0-9a-f]{{64}}"
            r";/system/lib/rfsa/adsp;/system/vendor/lib/rfsa/adsp;/dsp",
        ]
    )
)
KILLED_WITHIN_S = 3.0


def assert_runner_gone(watch: RunnerWatch, agent_phone: AgentPhone, task: RunTask) -> None:
    assert watch.started, "the runner never started"
    wait_until(lambda: not watch.running(), KILLED_WITHIN_S, "the runner to end on the phone")
    assert agent_phone.runner_pids(task.run_id) == [], "`ps` still lists the runner"


def test_hostile_prompts_travel_in_the_spec_and_never_reach_a_shell(
    runs: Runs,
    phone: VirtualPhone,
    manifest: Manifest,
    bundle: RunnerBundle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch_phone(caplog)
    task = make_task(manifest, bundle, prompts=HOSTILE_PROMPTS, steps=2)
    result = runs.executor.execute(task)

    assert result.outcome == "succeeded", result.error
    assert [image.prompt for image in result.images] == HOSTILE_PROMPTS
    assert all(Image.open(io.BytesIO(i.png)).size == (16, 16) for i in result.images)
    # The components' files (the tokenizer stays on the host) and the runner bundle.
    components = {
        f.sha256: f.size for c in manifest.components.values() for f in (c.file, *c.extra_files)
    }
    bundle_bytes = sum(ref.size for ref in bundle.files)
    assert result.metrics["pushed_bytes"] == sum(components.values()) + bundle_bytes
    assert result.runner is not None and result.runner.bundle_sha256 == bundle.sha256
    assert (result.runner.abi, result.runner.runner_version) == ("x86_64", bundle.runner_version)
    # The runner's first line (loading) goes out at once: it says the run started; the last
    # step always goes out, however short the run.
    assert (runs.progress[0].stage, runs.progress[0].step) == ("load", 0)
    assert runs.progress[-1].step == runs.progress[-1].total == 2 * len(HOSTILE_PROMPTS)
    commands = shell_commands(caplog)
    runner = f"{runner_dir(bundle.sha256)}/hexfleet-runner"
    assert any(runner in command for command in commands)
    for command in commands:
        words = shlex.shlex(command, posix=True, punctuation_chars=";|>&")
        words.whitespace_split = True
        assert all(FIXED_WORD.fullmatch(word) for word in words), command
    for seen in commands + [path for _request, path in synced(caplog)]:
        assert not any(word in seen for word in USER_WORDS), seen
    assert (phone.fs.root / runner.lstrip("/")).stat().st_mode & 0o777 == 0o755
    assert jobs_left(phone) == []


def test_the_deadline_fails_the_run_and_kills_the_runner(
    runs: Runs,
    pusher: ArtifactPusher,
    agent_phone: AgentPhone,
    phone: VirtualPhone,
    manifest: Manifest,
    bundle: RunnerBundle,
) -> None:
    pusher.ensure(manifest.files())  # so the deadline falls while the runner runs, not pushes
    watch = RunnerWatch(phone)
    task = make_task(manifest, bundle, deadline_s=4.0, **LONG_RUN)
    started = time.monotonic()
    result = runs.executor.execute(task)

    assert result.outcome == "failed"
    assert "deadline" in (result.error or "")
    assert time.monotonic() - started < task.deadline_s + KILLED_WITHIN_S
    assert_runner_gone(watch, agent_phone, task)
    assert jobs_left(phone) == []


def test_cancel_stops_the_run_and_kills_the_runner(
    runs: Runs,
    agent_phone: AgentPhone,
    phone: VirtualPhone,
    manifest: Manifest,
    bundle: RunnerBundle,
) -> None:
    watch = RunnerWatch(phone)
    task = make_task(manifest, bundle, **LONG_RUN)
    thread, results = in_background(runs.executor, task)
    wait_until(lambda: runs.progress, 60, "the runner's first progress line")
    runs.cancel.set()
    result = finished(thread, results, KILLED_WITHIN_S)

    assert result.outcome == "cancelled"
    assert_runner_gone(watch, agent_phone, task)
    assert jobs_left(phone) == []


def test_a_runner_crash_is_a_failed_run_with_its_signal_not_retried(
    runs: Runs,
    pusher: ArtifactPusher,
    phone: VirtualPhone,
    manifest: Manifest,
    bundle: RunnerBundle,
) -> None:
    pusher.ensure(manifest.files())
    watch = RunnerWatch(phone)
    phone.faults.crash_runner(after_s=0.3)
    result = runs.executor.execute(make_task(manifest, bundle, **LONG_RUN))

    assert result.outcome == "failed"
    assert "SIGSEGV" in (result.error or ""), result.error
    assert len(watch.started) == 1, "a crashed runner is not started again"
    assert jobs_left(phone) == []


def test_a_runner_failure_reports_its_stderr_line_and_inputs_keep_fixed_names(
    runs: Runs,
    phone: VirtualPhone,
    manifest: Manifest,
    bundle: RunnerBundle,
    caplog: pytest.LogCaptureFixture,
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1, 8), dtype=np.int64))
    tensor = buffer.getvalue()
    task = make_task(
        manifest,
        bundle,
        kind="infer",
        component="text_encoder",
        runtime="cpu",
        inputs=["../../escape", "../second"],
    ).model_copy(update={"inputs": {"../../escape": tensor, "../second": tensor}})
    watch = RunnerWatch(phone)
    watch_phone(caplog)
    result = runs.executor.execute(task)

    assert result.outcome == "failed"
    assert result.error == (
        "RunnerFailed: hexfleet-runner: ModelError: "
        "text_encoder (text_encoder.onnx) has no input '../../escape' (it has input_ids)"
    )
    assert len(watch.started) == 1
    folder = job_dir(task.run_id)
    sent = [path.partition(",")[0] for request, path in synced(caplog) if request == "SEND"]
    job_files = [path for path in sent if path.startswith(folder)]
    assert sorted(job_files) == [
        f"{folder}/{n}" for n in ("input-0.npy", "input-1.npy", "spec.json")
    ]
    assert jobs_left(phone) == []


def test_a_phone_lost_mid_run_is_reported_lost_within_seconds(
    runs: Runs, fleet: ThreadedFleet, phone: VirtualPhone, manifest: Manifest, bundle: RunnerBundle
) -> None:
    task = make_task(manifest, bundle, **LONG_RUN)
    thread, results = in_background(runs.executor, task)

    def denoising() -> bool:
        return any(p.stage == "unet" for p in runs.progress)

    wait_until(denoising, 60, "the first denoising step")
    fleet.stop_phone(phone)
    result = finished(thread, results, 5.0)

    assert result.outcome == "lost"
    assert phone.serial in (result.error or "")


def test_a_model_file_deleted_behind_the_agents_back_is_pushed_again_and_the_run_succeeds(
    runs: Runs,
    phone: VirtualPhone,
    agent_phone: AgentPhone,
    manifest: Manifest,
    bundle: RunnerBundle,
) -> None:
    """The pusher trusts its listing for a while; a run that fails because the phone lost a
    file since is retried once after listing and pushing again."""
    first = runs.executor.execute(make_task(manifest, bundle))
    assert first.outcome == "succeeded", first.error
    unet = manifest.components["unet"].file
    phone.fs.resolve(f"{CACHE_DIR}/{unet.sha256}").host.unlink()

    second = runs.executor.execute(make_task(manifest, bundle))
    assert second.outcome == "succeeded", second.error
    assert agent_phone.sha256(f"{CACHE_DIR}/{unet.sha256}") == unet.sha256
    assert runs.executor.last_push is not None and runs.executor.last_push.pushed_files == 1


def test_a_corrupt_cached_file_is_found_on_the_phone_pushed_again_and_the_run_succeeds(
    runs: Runs,
    phone: VirtualPhone,
    agent_phone: AgentPhone,
    manifest: Manifest,
    bundle: RunnerBundle,
) -> None:
    """The runner refuses a cached file that does not hash to its name (ArtifactMismatch); the
    agent hashes the manifest's files on the phone, pushes the bad one again and runs once more."""
    first = runs.executor.execute(make_task(manifest, bundle))
    assert first.outcome == "succeeded", first.error
    unet = manifest.components["unet"].file
    cached = phone.fs.resolve(f"{CACHE_DIR}/{unet.sha256}").host
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: the pusher's listing still counts it present
    cached.chmod(0o644)
    cached.write_bytes(bytes(data))

    second = runs.executor.execute(make_task(manifest, bundle))
    assert second.outcome == "succeeded", second.error
    assert second.metrics["pushed_bytes"] == unet.size, "only the corrupt file went again"
    assert agent_phone.sha256(f"{CACHE_DIR}/{unet.sha256}") == unet.sha256
