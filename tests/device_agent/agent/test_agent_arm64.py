"""The arm64 path end to end: the runner cross-built for arm64-v8a (runner/build.sh --abi), pushed
by the real agent to an arm64 virtual phone as that ABI's bundle, run there under qemu-user on
the CPU EP; its image is the host pipeline's (the bound tests/runner uses)."""

from __future__ import annotations

import io
import time
from collections.abc import Callable

import numpy as np
import pytest
from agent_support import PROMPT, ModelServer, Runs, make_task
from host_tools import require_tool
from PIL import Image
from runner_bundle import build_runner, register_bundle
from virtual_phone_support import AdbServer

from hexfleet.bundle import RunnerBundle
from hexfleet.device_agent.execution import Executor, ThermalGate
from hexfleet.device_agent.host_cache import HostCache
from hexfleet.device_agent.phone import Phone as AgentPhone
from hexfleet.device_agent.push import ArtifactPusher
from hexfleet.manifest import Manifest
from hexfleet.models.pipeline import Pipeline
from hexfleet.virtual_phone.phone import VirtualPhone

MIN_PSNR_DB = 60.0  # tests/runner/test_native_cpu.py's bound where float order may differ


def psnr_db(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.fixture(scope="session")
def arm64_bundle(model_server: ModelServer) -> RunnerBundle:
    require_tool("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu")
    require_tool("qemu-aarch64", "qemu-user")
    require_tool("bwrap", "bubblewrap")
    return register_bundle(model_server.store, build_runner("arm64-v8a"), "arm64-v8a")


def test_an_arm64_phone_generates_the_host_pipelines_image_through_the_agent(
    adb_server: AdbServer,
    make_phone: Callable[..., VirtualPhone],
    model_server: ModelServer,
    host_cache: HostCache,
    bundle: RunnerBundle,
    arm64_bundle: RunnerBundle,
) -> None:
    phone = make_phone("sm8650", abi="arm64-v8a")
    agent_phone = AgentPhone(adb_server.connect(phone.serial))
    assert agent_phone.facts().abi == "arm64-v8a"
    executor = Executor(
        agent_phone,
        ArtifactPusher(agent_phone, host_cache),
        host="test-host",
        htp_arch=None,
        on_progress=lambda _progress: None,
        cancelled=lambda _run_id: False,
        thermal=ThermalGate(),
        abi=agent_phone.facts().abi,
    )
    task = make_task(model_server.manifest, bundle, deadline_s=300, steps=2, seed=3)
    # Both ABIs registered: the agent picks the phone's.
    task = task.model_copy(update={"bundles": {"x86_64": bundle, "arm64-v8a": arm64_bundle}})
    started = time.perf_counter()
    result = executor.execute(task)
    took = time.perf_counter() - started

    assert result.outcome == "succeeded", result.error
    assert result.runner is not None
    assert (result.runner.abi, result.runner.bundle_sha256) == ("arm64-v8a", arm64_bundle.sha256)
    assert result.simulated is True  # the CPU override of an emulated phone
    pipeline = Pipeline.from_manifest(model_server.manifest, model_server.store, "cpu", threads=1)
    expected = pipeline.generate(PROMPT, seed=3, steps=2).image
    image = np.asarray(Image.open(io.BytesIO(result.images[0].png)).convert("RGB"))
    assert result.images[0].prompt == PROMPT
    assert psnr_db(image, np.asarray(expected)) >= MIN_PSNR_DB
    print(f"arm64 generate through the agent: {took:.1f} s, timings {result.timings}")


def test_a_phone_whose_abi_has_no_bundle_fails_in_one_line(
    runs: Runs, manifest: Manifest, bundle: RunnerBundle
) -> None:
    task = make_task(manifest, bundle)
    arm64 = RunnerBundle.model_validate({**bundle.model_dump(), "abi": "arm64-v8a"})
    task = task.model_copy(update={"bundles": {"arm64-v8a": arm64}})
    result = runs.executor.execute(task)
    assert result.outcome == "failed"
    assert result.error is not None and "\n" not in result.error
    assert "x86_64" in result.error and "hexfleet runners register --abi x86_64" in result.error
