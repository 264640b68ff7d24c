"""The thermal gate on a virtual phone heated by its own compute (fast thermal time constants):
throttling seen in health, a bounded wait while hot, a benchmark held back until the phone cooled,
and a repeated benchmark held back until the phone is back near the idle its first one started at.
"""

from __future__ import annotations

from agent_support import LONG_RUN, RunnerWatch, Runs, finished, in_background, make_task
from waiting import wait_until

from hexfleet.bundle import RunnerBundle
from hexfleet.device_agent.execution import THERMAL_POLL_S, Executor, ThermalGate
from hexfleet.device_agent.host_cache import HostCache
from hexfleet.device_agent.phone import Phone as AgentPhone
from hexfleet.device_agent.push import ArtifactPusher
from hexfleet.manifest import Manifest
from hexfleet.virtual_phone.phone import VirtualPhone

LIMIT_C = 45.0


def test_a_hot_phone_throttles_and_a_benchmark_waits_until_it_cooled(
    runs: Runs,
    agent_phone: AgentPhone,
    host_cache: HostCache,
    phone: VirtualPhone,
    manifest: Manifest,
    bundle: RunnerBundle,
) -> None:
    assert not agent_phone.health().throttled
    watch = RunnerWatch(phone)
    heater = make_task(manifest, bundle, **LONG_RUN)
    heating, heated = in_background(runs.executor, heater)
    wait_until(lambda: agent_phone.health().throttled, 60, "thermal status 3 (severe)")

    start = ThermalGate(LIMIT_C, max_wait_s=1.0).wait(agent_phone)
    assert start.temp_c is not None and start.temp_c >= LIMIT_C and not start.ready
    assert 1.0 <= start.waited_s < 1.0 + 2 * THERMAL_POLL_S, "the wait is bounded by max_wait_s"

    bench_executor = Executor(
        agent_phone,
        ArtifactPusher(agent_phone, host_cache),
        host="test-host",
        htp_arch=int(phone.profile.htp_arch),
        on_progress=lambda _progress: None,
        cancelled=lambda _run_id: False,
        thermal=ThermalGate(LIMIT_C, max_wait_s=60.0),
        abi=phone.config.abi,
    )
    bench = make_task(manifest, bundle, kind="benchmark", component="unet", warmup=0, iterations=3)
    benching, benched = in_background(bench_executor, bench)
    wait_until(lambda: bench_executor.last_push is not None, 30, "the benchmark at the gate")
    assert len(watch.started) == 1, "the benchmark's runner started on a hot phone"
    runs.cancel.set()
    assert finished(heating, heated, 10).outcome == "cancelled"
    result = finished(benching, benched, 60)

    assert result.outcome == "succeeded", result.error
    assert result.metrics["temp_before_c"] < LIMIT_C
    assert result.metrics["thermal_wait_s"] > 0
    # On fast thermals the benchmark's own second of compute may heat the phone up again.
    assert isinstance(result.metrics["throttled"], bool)
    assert result.metrics["temp_after_c"] is not None
    (heater_pid, bench_pid) = sorted(watch.started)
    assert watch.started[bench_pid] >= watch.ended[heater_pid], "ran before the phone cooled"
    wait_until(lambda: not agent_phone.health().throttled, 30, "the idle phone to cool again")


def test_a_repeated_benchmark_waits_until_the_phone_is_back_near_its_idle_temperature(
    runs: Runs,
    agent_phone: AgentPhone,
    host_cache: HostCache,
    phone: VirtualPhone,
    manifest: Manifest,
    bundle: RunnerBundle,
) -> None:
    # The limit never binds here (the phone peaks near 97 °C): only the cool-down holds runs back.
    gate = ThermalGate(limit_c=99.0, max_wait_s=0.0, cooldown_margin_c=3.0, cooldown_wait_s=30.0)
    bench_executor = Executor(
        agent_phone,
        ArtifactPusher(agent_phone, host_cache),
        host="test-host",
        htp_arch=int(phone.profile.htp_arch),
        on_progress=lambda _progress: None,
        cancelled=lambda _run_id: False,
        thermal=gate,
        abi=phone.config.abi,
    )
    bench = make_task(
        manifest,
        bundle,
        kind="benchmark",
        component="unet",
        warmup=0,
        iterations=3,
        max_start_temp_c=99,
    )
    first = bench_executor.execute(bench)
    assert first.outcome == "succeeded", first.error
    assert first.metrics["start_target_c"] == 99.0, "no idle known yet: only the limit"
    idle = gate.idle_c
    assert idle is not None and idle == first.metrics["temp_before_c"]

    heating, heated = in_background(runs.executor, make_task(manifest, bundle, **LONG_RUN))
    wait_until(lambda: (agent_phone.health().max_temp_c or 0) > idle + 20, 60, "a hot phone")
    runs.cancel.set()
    assert finished(heating, heated, 10).outcome == "cancelled"

    second = bench_executor.execute(make_task(manifest, bundle, **bench.params))
    assert second.outcome == "succeeded", second.error
    assert second.metrics["start_target_c"] == idle + 3.0
    assert second.metrics["started_cool"] is True
    assert second.metrics["temp_before_c"] <= idle + 3.0
    assert second.timings["thermal_wait_s"] > 0, "the wait is in the run's timings"
    assert second.timings["thermal_wait_s"] == second.metrics["thermal_wait_s"]
    assert len(second.metrics["temp_trace_c"]) == 3
