"""What the farm itself costs: submit → result-in-database latency, fleet throughput and device
utilization, and the orchestrator's scheduling and ingest capacity.

Run: `.venv/bin/python bench/farm_overhead.py` (10–15 minutes on 2 busy cores; `--help` for
sizes, e.g. `--jobs 5 --phones 4 --repeat 2 --slow-repeat 2 --capacity-runs 200` for a quick
look, `--only` for some sections). It builds whole farms on this machine — a private adb server,
virtual phones, `hexfleet serve`, `hexfleet agent` — once on the embedded defaults (SQLite + the
filesystem broker) and once on Redis + PostgreSQL, and prints:

1. latency of a minimal run (one generate run on one phone; p50/p90 over sequential jobs),
   embedded vs Redis + PostgreSQL, split into API, queueing, agent and ingest;
2. fleet throughput on Redis + PostgreSQL with 16 phones: trivial runs (runs/s end to end) and
   2 s runs (device utilization = Σ runner busy time, the stand-in process lifetime, / (phones ×
   wall time of the batch)), fan-out (repeat=R per phone) and pooled (count=R×16 on `any`);
3. where a phone's time goes: the agent's own per-run path timed call by call (adb, HTTP,
   broker);
4. orchestrator capacity on Redis: runs scheduled per second (one job of `count=N` runs on a
   capability queue, timed through the API incl. dispatch) and results ingested per second (N
   `RunResult` messages published on the `ingest` queue, timed until all are in PostgreSQL with
   the real ingest worker running), with CPU per run.

The phones run a contract-faithful stand-in runner (bench/farm_runner.c, built as
`hexfleet-runner` and registered as the x86_64 runner bundle: reads spec.json v2, sleeps, writes
a valid result.json v2), pushed and run by the agent as the real runner is, so the figures
measure the farm, not the model. The CPU use
of each part of the farm is read from /proc for every phase. Everything started is stopped, the
Redis database (11) flushed and the PostgreSQL database dropped, also on failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import os
import signal
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))

from farm_rig import CpuMeter, Rig, farm, services, wait_until  # noqa: E402

from hexfleet.broker import (  # noqa: E402
    INGEST_HEARTBEAT_TASK,
    INGEST_QUEUE,
    INGEST_RESULT_TASK,
    make_celery,
    soc_queue,
)
from hexfleet.messages import (  # noqa: E402
    DeviceFacts,
    DeviceHealth,
    Heartbeat,
    RunResult,
    RunTask,
)
from hexfleet.orchestrator.db.schema import Job, Model, Run  # noqa: E402
from hexfleet.states import FINAL_RUN_STATES  # noqa: E402

FINAL = tuple(FINAL_RUN_STATES)
GOAL_RUNS_PER_S = 50.0
GOAL_UTILIZATION = 0.95
PHONES_GROUP = "virtual phones + their stand-in runners"
CAPACITY_SOC = "BENCHCAP"
CAPACITY_SERIAL = "bench-capacity-phone"
LATENCY_WARMUP = 2
LOST_AFTER_S = 30.0
# The host tokenizes the prompt (contract v2): it must be in the tiny model's vocabulary.
PROMPT = "a red circle on the left in a blue background"


def job_body(selector: str = "all", steps: int = 1, **extra: Any) -> dict[str, Any]:
    """A trivial generate job: one prompt, `steps` steps (the stand-in prints one progress line
    per step), the registered tiny model (its files are pushed once, then cache hits)."""
    return {
        "kind": "generate",
        "model": "tiny-sd",
        "precision": "fp32",
        "selector": selector,
        "params": {"prompts": [PROMPT], "steps": steps, "runtime": "cpu"},
        **extra,
    }


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:7.0f} ms"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def cpu_groups(rig: Rig) -> dict[str, Any]:
    def ingest() -> list[int]:
        return rig.pids("serve")[1:]

    return {
        "api (hexfleet serve)": lambda: rig.pids("serve")[:1],
        "ingest worker": ingest,
        "agent + phone workers": lambda: rig.pids("agent"),
        PHONES_GROUP: rig.phone_pids,
        "redis-server": lambda: processes_named("redis-server"),
        "postgres (all backends)": lambda: processes_named("postgres"),
    }


def processes_named(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == name:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def runner_seconds(timings: dict[str, Any]) -> float:
    """How long the runner kept the phone busy: the stand-in's process lifetime (its own
    start-up included; a native runner's start-up is part of its time too), else `total_s`."""
    return float(timings.get("process_s") or timings.get("total_s") or 0.0)


def finished_runs(rig: Rig, job_id: str) -> int:
    query = sa.select(sa.func.count()).where(Run.job_id == job_id, Run.state.in_(FINAL))
    return int(rig.query(query)[0][0])


# 1. latency ----------------------------------------------------------------------------------


@dataclass
class Latency:
    backend: str
    total: list[float]
    api: list[float]
    to_start: list[float]
    on_phone: list[float]
    runner: list[float]
    to_database: list[float]
    lost: int = 0
    decode_errors: int = 0


def wait_for_run(rig: Rig, run_id: str, timeout: float, every: float) -> Any:
    def final() -> Any:
        rows = rig.query(
            sa.select(Run.state, Run.started_at, Run.finished_at, Run.timings, Run.error).where(
                Run.id == run_id
            )
        )
        return rows[0] if rows and rows[0].state in FINAL else None

    return wait_until(final, timeout, f"run {run_id}", every=every)


def measure_latency(rig: Rig, jobs: int, warmup: int, pause: float) -> Latency:
    """`jobs` sequential one-run jobs on an idle farm (a pause between them); the first `warmup`
    ones (which push the model to the phone) are not counted."""
    result = Latency(rig.backend, [], [], [], [], [], [])
    for index in range(warmup + jobs):
        time.sleep(pause)
        wall0 = time.time()
        mark = time.perf_counter()
        job = rig.submit(job_body())
        api = time.perf_counter() - mark
        try:
            row = wait_for_run(rig, job["runs"][0]["id"], LOST_AFTER_S, every=0.005)
        except TimeoutError:
            result.lost += 1
            continue
        total = time.perf_counter() - mark
        if row.state != "succeeded":
            raise RuntimeError(f"a latency run ended {row.state}: {row.error}")
        if index < warmup:
            continue
        seen = wall0 + total
        result.total.append(total)
        result.api.append(api)
        result.to_start.append(row.started_at.timestamp() - wall0)
        result.on_phone.append((row.finished_at - row.started_at).total_seconds())
        result.runner.append(runner_seconds(row.timings))
        result.to_database.append(seen - row.finished_at.timestamp())
    # kombu's filesystem transport can hand a consumer a message file before its writer has
    # written it (celery/kombu#1551): the consumer dies on the empty JSON and the run is lost.
    result.decode_errors = rig.log_count("agent", "json.decoder.JSONDecodeError:")
    return result


def print_latency(results: list[Latency], pause: float) -> None:
    print("\n== 1. submit → result in database, one minimal run (stand-in runner, no inference)")
    print(f"   {len(results[0].total)} sequential one-run jobs on one phone, {pause:g} s idle "
          "between them; p50 / p90 per backend, and the ratio of the p50s")
    print(f"   {'':40}" + "".join(f"{r.backend:>26}" for r in results)
          + ("    embedded/Redis+PG" if len(results) == 2 else ""))
    rows = [
        ("submit → result in database", "total"),
        ("  POST /jobs (plan, store, send, reply)", "api"),
        ("  submit → agent starts the run", "to_start"),
        ("  agent: run on the phone (adb + runner)", "on_phone"),
        ("    of which the runner process", "runner"),
        ("  agent done → row in the database", "to_database"),
    ]
    for label, name in rows:
        line = f"   {label:<40}"
        p50s = []
        for result in results:
            values = getattr(result, name)
            p50s.append(percentile(values, 0.5))
            line += f"{p50s[-1] * 1000:9.0f} / {percentile(values, 0.9) * 1000:5.0f} ms".rjust(26)
        if len(p50s) == 2 and p50s[1] > 0:
            line += f"{p50s[0] / p50s[1]:20.2f}x"
        print(line)
    for result in results:
        if result.lost:
            print(f"   {result.backend}: {result.lost} run(s) never reached the database "
                  f"(given up after {LOST_AFTER_S:g} s); the agent log holds "
                  f"{result.decode_errors} JSONDecodeError(s) from the broker transport")


# 2. fleet throughput --------------------------------------------------------------------------


@dataclass
class Batch:
    label: str
    phones: int
    runs: int
    delay: float
    wall: float
    runner_busy: float
    span_busy: float
    first_start: float
    starts: tuple[float, float]
    ends: tuple[float, float]
    runs_per_phone: tuple[int, int]
    last_ingest: float
    gaps: list[float]
    overheads: list[float]
    steady_utilization: float
    cpu: CpuMeter

    @property
    def runs_per_s(self) -> float:
        return self.runs / self.wall

    @property
    def utilization(self) -> float:
        return self.runner_busy / (self.phones * self.wall)

    @property
    def span_utilization(self) -> float:
        return self.span_busy / (self.phones * self.wall)


def run_batch(rig: Rig, label: str, repeat: int, delay: float, steps: int,
              pooled: bool = False) -> Batch:
    """One job of `repeat` runs per phone, the stand-in sleeping `delay` s per run: fan-out (each
    phone's runs on its own queue), or `pooled` (count = repeat × phones on the `any` queue,
    where every phone takes the next run when it is free)."""
    rig.set_delay(delay)
    phones = len(rig.phones)
    meter = CpuMeter(cpu_groups(rig), frozenset({PHONES_GROUP}))
    meter.start()
    wall0 = time.time()
    mark = time.perf_counter()
    size = {"count": repeat * phones} if pooled else {"repeat": repeat}
    job = rig.submit(job_body(steps=steps, **size))
    expected = len(job["runs"])

    def done() -> bool:
        return finished_runs(rig, job["id"]) >= expected

    wait_until(done, 60 + expected * (delay + 2) / phones * 4, f"batch {label}", every=0.05)
    wall = time.perf_counter() - mark
    meter.stop()
    rows = rig.query(
        sa.select(
            Run.device_serial, Run.state, Run.started_at, Run.finished_at, Run.timings, Run.error
        )
        .where(Run.job_id == job["id"])
        .order_by(Run.started_at)
    )
    failed = [r for r in rows if r.state != "succeeded"]
    if failed:
        raise RuntimeError(f"{len(failed)} runs of {label} did not succeed: {failed[0].error}")
    by_phone: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_phone[row.device_serial].append(row)
    gaps, overheads = [], []
    steady_busy = steady_window = 0.0
    ends = [max(r.finished_at.timestamp() for r in runs) - wall0 for runs in by_phone.values()]
    starts = [min(r.started_at.timestamp() for r in runs) - wall0 for runs in by_phone.values()]
    for runs in by_phone.values():
        for before, after in zip(runs, runs[1:], strict=False):
            gaps.append((after.started_at - before.finished_at).total_seconds())
        steady_window += (runs[-1].finished_at - runs[0].started_at).total_seconds()
        steady_busy += sum(runner_seconds(r.timings) for r in runs)
    for row in rows:
        span = (row.finished_at - row.started_at).total_seconds()
        overheads.append(span - runner_seconds(row.timings))
    return Batch(
        label=label,
        phones=phones,
        runs=expected,
        delay=delay,
        wall=wall,
        runner_busy=sum(runner_seconds(r.timings) for r in rows),
        span_busy=sum((r.finished_at - r.started_at).total_seconds() for r in rows),
        first_start=min(r.started_at.timestamp() for r in rows) - wall0,
        starts=(min(starts), max(starts)),
        ends=(min(ends), max(ends)),
        runs_per_phone=(min(len(r) for r in by_phone.values()),
                        max(len(r) for r in by_phone.values())),
        last_ingest=wall0 + wall - max(r.finished_at.timestamp() for r in rows),
        gaps=gaps,
        overheads=overheads,
        steady_utilization=steady_busy / steady_window if steady_window else float("nan"),
        cpu=meter,
    )


def print_batch(batch: Batch) -> None:
    def row(label: str, value: str) -> None:
        print(f"   {label:<64}{value:>14}")

    def p50_p90(values: list[float]) -> str:
        return f"{percentile(values, 0.5) * 1000:.0f} / {percentile(values, 0.9) * 1000:.0f} ms"

    print(f"\n   -- {batch.label}: {batch.runs} runs on {batch.phones} phones, the stand-in "
          f"sleeping {batch.delay:g} s")
    row("wall time, submit → last result in the database", f"{batch.wall:.2f} s")
    row("throughput end to end", f"{batch.runs_per_s:.2f} runs/s")
    row("device utilization: Σ runner process time / (phones × wall)",
        f"{batch.utilization:.1%}")
    row("  phones' busy share: Σ agent run span / (phones × wall)", f"{batch.span_utilization:.1%}")
    row("  steady state: Σ runner / Σ per phone (first start → last end)",
        f"{batch.steady_utilization:.1%}")
    row("submit → first run starts", f"{batch.first_start * 1000:.0f} ms")
    row("phones' first runs start (first phone … last phone), after submit",
        f"{batch.starts[0]:.1f} … {batch.starts[1]:.1f} s")
    row("phones' last runs end (first phone … last phone), after submit",
        f"{batch.ends[0]:.1f} … {batch.ends[1]:.1f} s")
    row("runs per phone (fewest … most)", f"{batch.runs_per_phone[0]} … {batch.runs_per_phone[1]}")
    row("last run ends → everything in the database", f"{batch.last_ingest * 1000:.0f} ms")
    row("per run: agent overhead in its span (span − runner) p50/p90", p50_p90(batch.overheads))
    if batch.gaps:
        row("per run: a phone idle between two runs p50/p90", p50_p90(batch.gaps))
    print(f"   CPU during the batch ({batch.cpu.wall:.1f} s):")
    for line in batch.cpu.lines():
        print(f"     {line}")


# where a phone's time goes between runs ---------------------------------------------------------


@dataclass
class AgentProfile:
    runs: int
    per_run: float
    ops: dict[str, list[float]]


BACKGROUND = "(background) "


def _timed(ops: dict[str, list[float]], nesting: list[float], label: Any, call: Any) -> Any:
    """`call`, recording its own time under `label` (time in timed calls it makes, such as the
    cancel checks during a run, is recorded under theirs, not twice). Calls on the agent's
    background thread are recorded apart: the run does not wait for them."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        name = label(*args) if callable(label) else label
        if threading.current_thread() is not threading.main_thread():
            mark = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                ops[BACKGROUND + name].append(time.perf_counter() - mark)
        nesting.append(0.0)
        mark = time.perf_counter()
        try:
            return call(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - mark
            ops[name].append(elapsed - nesting.pop())
            if nesting:
                nesting[-1] += elapsed

    return wrapper


def profile_agent(rig: Rig, runs: int) -> AgentProfile:
    """The agent's own per-run code path (`PhoneWorker.run`: cancel check, busy heartbeat,
    execute, publish, heartbeat), called directly on one phone with every adb, HTTP and broker
    call timed; only Celery's fetch and acknowledgement are left out. The agent is stopped
    first; results go to the ingest queue for runs the database does not know (dropped)."""
    from hexfleet.device_agent.worker import PhoneWorker

    rig.stop_agent()
    rig.set_delay(0.0)
    settings = rig.settings.model_copy(update={"agent_name": "bench-host"})
    worker = PhoneWorker(settings, rig.phones[0].serial)
    ops: dict[str, list[float]] = defaultdict(list)
    timed = functools.partial(_timed, ops, [])
    phone = worker.phone
    phone.shell = timed(lambda *argv, **_: f"adb shell {argv[0]} {argv[1]}"
                         if argv[0] == "dumpsys" else f"adb shell {argv[0]}", phone.shell)
    phone.push_files = timed("adb push the job folder (spec, tokens, latents)", phone.push_files)
    phone.pull_with = timed("adb pull result.json (+ outputs: none here)", phone.pull_with)
    phone.cache_entries = timed("adb list the model cache", phone.cache_entries)
    phone.listing = timed("adb list the runner bundle's folder", phone.listing)
    phone.stream_script = timed("adb shell hexfleet-runner (stand-in)", phone.stream_script)
    worker.publish = timed(lambda task, body: f"publish {task.rsplit('.', 1)[-1]}",
                            worker.publish)
    watch = worker.executor.cancelled
    watch.http.get = timed("HTTP GET /runs/ID/state (cancel check, ≤ 1 per 2 s)", watch.http.get)
    worker.executor.cancelled = timed("cancel check (look-up)", watch)
    manifest = rig.query(
        sa.select(Model.manifest).where(Model.name == "tiny-sd", Model.variant == "fp32")
    )[0][0]
    assert rig.bundle is not None, "the rig registers its stand-in bundle when it starts"
    bodies = [
        RunTask(
            run_id=str(uuid.uuid4()), job_id=str(uuid.uuid4()), attempt=1, kind="generate",
            model="tiny-sd/bench/fp32", manifest=manifest,
            params={"kind": "generate", "prompts": [PROMPT], "steps": 1, "runtime": "cpu"},
            deadline_s=60, bundles={"x86_64": rig.bundle},
        ).model_dump_json()
        for _ in range(runs + 1)
    ]
    worker.run(bodies[0])  # the first run after a start lists the cache and the bundle's folder
    ops.clear()
    mark = time.perf_counter()
    for body in bodies[1:]:
        if worker.run(body) != "succeeded":
            raise RuntimeError("a profiled run did not succeed")
    per_run = (time.perf_counter() - mark) / runs
    worker.errands.drain()
    worker.chores.drain()
    worker.executor.pusher.host_cache.http.close()
    return AgentProfile(runs, per_run, dict(ops))


def print_agent_profile(result: AgentProfile) -> None:
    print(f"   wall time per run (without Celery fetch/ack)  {ms(result.per_run)}")
    print(f"   {'operation':<50}{'calls/run':>10}{'p50 each':>12}{'ms/run':>10}{'share':>8}")
    waited = {k: v for k, v in result.ops.items() if not k.startswith(BACKGROUND)}
    background = {k: v for k, v in result.ops.items() if k.startswith(BACKGROUND)}
    for name, values in sorted(waited.items(), key=lambda kv: -sum(kv[1])):
        per_run = sum(values) / result.runs
        print(f"   {name:<50}{len(values) / result.runs:>10.2f}"
              f"{percentile(values, 0.5) * 1000:>10.1f}ms{per_run * 1000:>8.1f}ms"
              f"{per_run / result.per_run:>8.0%}")
    counted = sum(sum(v) for v in waited.values()) / result.runs
    print(f"   {'everything else (Python in the agent)':<50}{'':>10}{'':>12}"
          f"{(result.per_run - counted) * 1000:>8.1f}ms{1 - counted / result.per_run:>8.0%}")
    if background:
        print("   on the agent's background thread (the run does not wait for these):")
        for name, values in sorted(background.items(), key=lambda kv: -sum(kv[1])):
            print(f"   {name:<50}{len(values) / result.runs:>10.2f}"
                  f"{percentile(values, 0.5) * 1000:>10.1f}ms"
                  f"{sum(values) / result.runs * 1000:>8.1f}ms")


# 3. orchestrator capacity ---------------------------------------------------------------------


@dataclass
class Capacity:
    runs: int
    submit_s: float
    queued: int
    publish_s: float
    ingest_s: float
    submit_cpu: CpuMeter
    ingest_cpu: CpuMeter

    @property
    def scheduled_per_s(self) -> float:
        return self.runs / self.submit_s

    @property
    def ingested_per_s(self) -> float:
        return self.runs / self.ingest_s


def queued_messages(url: str, queue: str) -> int:
    """Messages waiting in a queue on Redis (kombu keeps one list per priority step)."""
    client = redis.Redis.from_url(url)
    try:
        keys = [k for k in client.scan_iter(match=f"{queue}*") if client.type(k) == b"list"]
        return sum(int(client.llen(k)) for k in keys)
    finally:
        client.close()


def measure_capacity(rig: Rig, runs: int) -> Capacity:
    """Phones stopped; a synthetic phone of its own SoC reports in through the ingest queue, so
    the capability queue `soc.BENCHCAP` has no consumer and only the orchestrator works."""
    rig.stop_agent()
    app = make_celery(rig.settings, name="bench-publisher")
    now = dt.datetime.now(dt.UTC)
    beat = Heartbeat(
        host="bench-host",
        facts=DeviceFacts(serial=CAPACITY_SERIAL, soc=CAPACITY_SOC, htp_arch=73, is_virtual=True),
        health=DeviceHealth(battery_level=90, max_temp_c=35.0),
        state="idle",
        sent_at=now,
    )
    app.send_task(INGEST_HEARTBEAT_TASK, args=[beat.model_dump_json()], queue=INGEST_QUEUE)
    wait_until(lambda: CAPACITY_SERIAL in rig.online(), 30, "the synthetic phone")
    time.sleep(1.0)  # let the stopped agent's last heartbeats drain from the ingest queue

    submit_cpu = CpuMeter(cpu_groups(rig), frozenset({PHONES_GROUP}))
    submit_cpu.start()
    mark = time.perf_counter()
    job = rig.submit(job_body(selector=f"soc={CAPACITY_SOC}", count=runs))
    submit_s = time.perf_counter() - mark
    submit_cpu.stop()
    queued = queued_messages(rig.settings.resolved_broker_url, soc_queue(CAPACITY_SOC))

    started = dt.datetime.now(dt.UTC)
    bodies = [
        RunResult(
            run_id=run["id"],
            attempt=run["attempt"],
            serial=CAPACITY_SERIAL,
            host="bench-host",
            outcome="succeeded",
            simulated=True,
            timings={"total_s": 0.001, "stand_in": True},
            metrics={"steps": 1},
            started_at=started,
            finished_at=started + dt.timedelta(milliseconds=1),
        ).model_dump_json()
        for run in job["runs"]
    ]
    ingest_cpu = CpuMeter(cpu_groups(rig), frozenset({PHONES_GROUP}))
    ingest_cpu.start()
    mark = time.perf_counter()
    with app.connection_for_write() as connection:
        for body in bodies:
            app.send_task(
                INGEST_RESULT_TASK, args=[body], queue=INGEST_QUEUE, connection=connection
            )
    publish_s = time.perf_counter() - mark

    def all_in() -> bool:
        return finished_runs(rig, job["id"]) >= runs

    wait_until(all_in, 60 + runs, "every result in the database", every=0.05)
    ingest_s = time.perf_counter() - mark
    ingest_cpu.stop()
    state = rig.query(sa.select(Job.state).where(Job.id == job["id"]))[0].state
    if state != "succeeded":
        raise RuntimeError(f"the capacity job ended {state}")
    return Capacity(runs, submit_s, queued, publish_s, ingest_s, submit_cpu, ingest_cpu)


def print_capacity(result: Capacity) -> None:
    print(f"\n== 4. orchestrator capacity on Redis + PostgreSQL ({result.runs} runs; phones "
          "stopped, a synthetic phone of its own SoC, so nothing consumes the queue)")
    api_cpu = result.submit_cpu.used["api (hexfleet serve)"] / result.runs
    print(f"   scheduled: POST /jobs count={result.runs} selector soc={CAPACITY_SOC} (plan, store, "
          f"dispatch, reply) {result.submit_s:.2f} s = {result.scheduled_per_s:.1f} runs/s; "
          f"{result.queued} tasks in Redis")
    print(f"     API CPU per run {api_cpu * 1000:.2f} ms (= {1 / api_cpu:.0f} runs/s on a core "
          "of its own)")
    for line in result.submit_cpu.lines():
        print(f"     {line}")
    ingest_cpu = result.ingest_cpu.used["ingest worker"] / result.runs
    print(f"   ingested: {result.runs} RunResult messages published on '{INGEST_QUEUE}' in "
          f"{result.publish_s:.2f} s; all in PostgreSQL after {result.ingest_s:.2f} s "
          f"= {result.ingested_per_s:.1f} runs/s")
    print(f"     ingest worker CPU per result {ingest_cpu * 1000:.2f} ms (= {1 / ingest_cpu:.0f} "
          "results/s on a core of its own)")
    for line in result.ingest_cpu.lines():
        print(f"     {line}")


# main -----------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20, help="latency jobs per backend")
    parser.add_argument("--pause", type=float, default=0.5, help="idle seconds between them")
    parser.add_argument("--phones", type=int, default=16, help="phones for throughput")
    parser.add_argument("--repeat", type=int, default=10, help="trivial runs per phone")
    parser.add_argument("--slow-repeat", type=int, default=10, help="2 s runs per phone")
    parser.add_argument("--run-seconds", type=float, default=2.0, help="the slow runs' length")
    parser.add_argument("--capacity-runs", type=int, default=2000)
    parser.add_argument("--profile-runs", type=int, default=20,
                        help="runs of the agent's per-run path, profiled")
    parser.add_argument(
        "--only", default="latency,throughput,profile,capacity",
        help="comma-separated sections: latency, throughput, profile, capacity",
    )
    parser.add_argument("--keep", action="store_true", help="keep the farms' files and logs")
    return parser.parse_args(argv)


def warm_up(rig: Rig) -> None:
    """One run on every phone: each worker is consuming, each phone holds the model files."""
    job = rig.submit(job_body())
    wait_until(lambda: finished_runs(rig, job["id"]) >= len(job["runs"]), 300,
               "the warm-up runs", every=0.2)


def throughput(rig: Rig, args: argparse.Namespace) -> list[Batch]:
    rig.add_phones(args.phones - len(rig.phones))
    rig.wait_online()
    warm_up(rig)
    print(f"\n== 2. fleet throughput on Redis + PostgreSQL, {len(rig.phones)} virtual phones "
          "(one fan-out job per batch)")
    batches = [run_batch(rig, f"trivial runs, fan-out (repeat={args.repeat} on every phone)",
                         args.repeat, 0.0, steps=1)]
    print_batch(batches[-1])
    slow = f"{args.run_seconds:g} s runs"
    batches.append(run_batch(rig, f"{slow}, fan-out (repeat={args.slow_repeat} on every phone)",
                             args.slow_repeat, args.run_seconds, steps=20))
    print_batch(batches[-1])
    batches.append(run_batch(
        rig, f"{slow}, pooled (count={args.slow_repeat * len(rig.phones)} on the 'any' queue)",
        args.slow_repeat, args.run_seconds, steps=20, pooled=True,
    ))
    print_batch(batches[-1])
    return batches


def profile(rig: Rig, runs: int) -> None:
    print("\n== 3. where a phone's time goes: the agent's per-run path (PhoneWorker.run) called "
          f"directly, {runs} trivial runs on one phone")
    print_agent_profile(profile_agent(rig, runs))


def print_goals(batches: list[Batch], capacity: Capacity | None) -> None:
    print("\n== goals (issue 6)")
    if capacity is not None:
        for what, rate in (("scheduled", capacity.scheduled_per_s),
                           ("ingested", capacity.ingested_per_s)):
            print(f"   ≥ {GOAL_RUNS_PER_S:g} runs/s {what} on Redis: {rate:8.1f} runs/s — "
                  f"{verdict(rate >= GOAL_RUNS_PER_S)}")
    for batch in batches:
        if batch.delay > 0:
            how = batch.label.split(", ")[1].split(" (")[0]
            print(f"   ≥ {GOAL_UTILIZATION:.0%} device utilization, {batch.delay:g} s runs, {how}: "
                  f"{batch.utilization:6.1%} — {verdict(batch.utilization >= GOAL_UTILIZATION)}")


def main(argv: list[str]) -> int:
    args = parse(argv)
    # A plain `kill` unwinds like Ctrl-C, so every farm, database and Redis key is cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sections = set(args.only.split(","))
    print("hexfleet farm overhead — virtual phones over a private adb server and a stand-in "
          "runner (bench/farm_runner.c as the x86_64 bundle: spec.json v2 in, valid result.json "
          "out, no inference), "
          "so the figures measure the farm, not the model.")
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start "
          "(shared: every CPU figure below says how much the farm itself used)")
    latencies: list[Latency] = []
    batches: list[Batch] = []
    capacity: Capacity | None = None
    if "latency" in sections:
        with farm({}, phones=1, keep=args.keep) as rig:
            latencies.append(measure_latency(rig, args.jobs, LATENCY_WARMUP, args.pause))
    with services() as overrides, farm(overrides, phones=1, keep=args.keep) as rig:
        if "latency" in sections:
            latencies.append(measure_latency(rig, args.jobs, LATENCY_WARMUP, args.pause))
            print_latency(latencies, args.pause)
        if "throughput" in sections:
            batches = throughput(rig, args)
        if "profile" in sections:
            profile(rig, args.profile_runs)
        if "capacity" in sections:
            capacity = measure_capacity(rig, args.capacity_runs)
            print_capacity(capacity)
    print_goals(batches, capacity)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
