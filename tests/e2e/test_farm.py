"""The farm end to end on embedded defaults: CLI → API → broker → agent → virtual phones (through
the real adb server) → runner → ingest → database → CLI.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from farm_support import Farm, job_body
from PIL import Image
from waiting import wait_until

from hexfleet.models.store import ModelStore
from hexfleet.virtual_phone.faults import FaultCommand

PROMPT = "a red circle on the left in a blue background"


def test_generate_on_every_phone_through_the_cli(farm: Farm, tmp_path: Path) -> None:
    out = tmp_path / "images"
    result = farm.cli(
        "generate",
        PROMPT,
        "--devices",
        "all",
        "--precision",
        "fp32",
        "--runtime",
        "cpu",
        "--steps",
        "3",
        "--seed",
        "7",
        "--out",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stderr + farm.logs()
    job = json.loads(result.stdout)
    assert job["state"] == "succeeded"
    serials = sorted(r["device_serial"] for r in job["runs"])
    assert serials == sorted(p.serial for p in farm.phones)
    for run in job["runs"]:
        assert run["simulated"] is True
        assert len(run["timings"]["unet_steps_s"]) == 3
        assert run["progress"]["step"] == run["progress"]["total"] == 3
        png = next((out / run["device_serial"]).glob("*.png"))
        assert Image.open(png).size == (16, 16)
    assert (out / f"{job['id']}.json").is_file()
    first, second = (next((out / s).glob("*.png")).read_bytes() for s in serials)
    assert first == second, "same model, seed and runtime: the same image on every phone"


def test_second_run_pushes_nothing_and_benchmark_reports_statistics(farm: Farm) -> None:
    job = farm.post("/api/v1/jobs", job_body(selector="soc=SM8550"))
    done = farm.wait_for_job(job["id"])
    assert done["state"] == "succeeded"
    assert done["runs"][0]["metrics"]["pushed_bytes"] == 0
    # the three components (the tokenizer stays on the host) and the bundle's runner and onnxruntime
    assert done["runs"][0]["metrics"]["cached_files"] == 5
    assert done["runs"][0]["runner"]["abi"] == "x86_64"

    bench = farm.cli(
        "bench",
        "tiny-sd",
        "--devices",
        "soc=SM8650",
        "--precision",
        "fp32",
        "--runtime",
        "cpu",
        "--iterations",
        "5",
        "--warmup",
        "1",
        "--json",
    )
    assert bench.returncode == 0, bench.stderr
    (run,) = json.loads(bench.stdout)["runs"]
    timings, metrics = run["timings"], run["metrics"]
    assert len(timings["iterations_ms"]) == 5
    assert timings["p50_ms"] <= timings["p99_ms"]
    assert metrics["temp_before_c"] is not None and metrics["temp_after_c"] is not None
    assert metrics["throttled"] is False
    assert "npu_share" in metrics


BENCH = ("bench", "tiny-sd", "--precision", "fp32", "--runtime", "cpu", "--warmup", "2")


def test_two_benchmark_jobs_compared_a_slowed_phone_is_a_regression(farm: Farm) -> None:
    base = farm.cli(*BENCH, "--iterations", "30", "--repeat", "2", "--json")
    assert base.returncode == 0, base.stderr
    base_job = json.loads(base.stdout)
    stats = {s["serial"]: s for s in base_job["benchmark"]}
    assert sorted(stats) == sorted(p.serial for p in farm.phones)
    for s in stats.values():
        assert s["runs"] == 2 and s["latency"]["n"] == 60 and s["simulated"] is True
        assert s["latency"]["ci_low"] <= s["latency"]["median"] <= s["latency"]["ci_high"]
        assert s["thermal"]["trip_c"] == 85.0
    for run in base_job["runs"]:
        assert len(run["metrics"]["temp_trace_c"]) == 30, "one temperature per timed iteration"
        assert run["timings"]["thermal_wait_s"] >= 0, "the gate's wait is in the run's timings"

    slowed = farm.phones[0]
    # 4x: the change must beat the spread between the base job's two runs on a loaded host.
    farm.fleet.call(slowed.apply(FaultCommand(kind="slow_npu", value=3.0)))
    try:
        slow = farm.cli(*BENCH, "--iterations", "30", "--json")
    finally:
        farm.fleet.call(slowed.apply(FaultCommand(kind="slow_npu", value=0.0)))
    assert slow.returncode == 0, slow.stderr
    slow_id = json.loads(slow.stdout)["id"]

    compared = farm.cli("compare", base_job["id"], slow_id, "--json")
    assert compared.returncode == 1, "a flagged regression fails the command (for CI scripts)"
    body = json.loads(compared.stdout)
    latency = {c["serial"]: c for c in body["changes"] if c["metric"] == "iterations_ms"}
    assert sorted(latency) == sorted(stats)
    assert latency[slowed.serial]["verdict"] == "regression"
    assert latency[slowed.serial]["change"] > 1.0 and latency[slowed.serial]["p_value"] < 0.01
    assert latency[slowed.serial]["run_spread"] is not None, "the base job ran twice per phone"
    assert body["simulated"] is True and all(c["simulated"] for c in body["changes"])
    assert body["setup_differences"] == ["repeat: 2 → 1"]

    table = farm.cli("compare", base_job["id"], slow_id, "--no-fail")
    assert table.returncode == 0, table.stderr
    assert "simulated timings" in table.stdout and "regression" in table.stdout
    for bad in (("not-a-job",), (slow_id, "--threshold", "-0.5")):
        refused = farm.cli("compare", base_job["id"], *bad)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr


def test_infer_returns_the_output_tensor(farm: Farm) -> None:
    latent = np.zeros((1, 4, 8, 8), dtype=np.float32)
    buffer = io.BytesIO()
    np.save(buffer, latent)
    import base64

    body = job_body(
        kind="infer",
        selector="soc=SM8650",
        params={
            "component": "vae_decoder",
            "runtime": "cpu",
            "tensors": {"latent_sample": base64.b64encode(buffer.getvalue()).decode()},
        },
    )
    done = farm.wait_for_job(farm.post("/api/v1/jobs", body)["id"])
    assert done["state"] == "succeeded", done["runs"][0]["error"]


def test_hostile_prompts_never_reach_a_shell(farm: Farm) -> None:
    hostile = "a red circle; touch /data/local/tmp/pwned $(touch /data/local/tmp/pwned2) 'x\"\n`id`"
    job = farm.post(
        "/api/v1/jobs",
        job_body(
            selector="soc=SM8550", params={"prompts": [hostile], "steps": 2, "runtime": "cpu"}
        ),
    )
    done = farm.wait_for_job(job["id"])
    assert done["state"] == "failed"
    assert "vocabulary" in done["runs"][0]["error"]
    root = farm.phones[0].config.root
    assert not list(root.rglob("pwned*"))
    assert (
        not list(Path("/data/local/tmp").glob("pwned*"))
        if Path("/data/local/tmp").exists()
        else True
    )


def test_a_corrupt_cached_file_is_detected_and_repaired(farm: Farm) -> None:
    manifest = ModelStore.from_settings(farm.settings).load("tiny-sd")
    unet = manifest.components["unet"].file
    phone = farm.phones[1]
    cached = phone.config.root / "data/local/tmp/hexfleet/cache" / unet.sha256
    wait_until(cached.is_file, 30, "the unet in the phone's cache")
    data = bytearray(cached.read_bytes())
    data[len(data) // 2] ^= 0xFF
    cached.chmod(0o644)
    cached.write_bytes(bytes(data))
    job = farm.post("/api/v1/jobs", job_body(selector=f"serial={phone.serial}"))
    done = farm.wait_for_job(job["id"])
    assert done["state"] == "succeeded", done["runs"][0]["error"]
    assert done["runs"][0]["metrics"]["pushed_bytes"] == unet.size
    assert cached.read_bytes() != bytes(data)


def test_a_phone_lost_mid_run_completes_elsewhere(farm: Farm) -> None:
    long_run = job_body(
        selector="model~SM-S9",
        count=1,
        params={"prompts": [PROMPT], "steps": 150, "images_per_prompt": 8, "runtime": "cpu"},
    )
    job = farm.post("/api/v1/jobs", long_run)

    def running_on() -> str | None:
        run = farm.api(f"/api/v1/jobs/{job['id']}")["runs"][0]
        return run["device_serial"] if run["state"] == "running" and run["progress"] else None

    serial = wait_until(running_on, 60, "the run to start")
    victim = next(p for p in farm.phones if p.serial == serial)
    farm.fleet.stop_phone(victim)
    done = farm.wait_for_job(job["id"], timeout=180)
    try:
        assert done["state"] == "succeeded", [r["error"] for r in done["runs"]]
        attempts = sorted(done["runs"], key=lambda r: r["attempt"])
        assert [r["state"] for r in attempts] == ["lost", "succeeded"]
        assert attempts[1]["device_serial"] != serial
    finally:
        farm.fleet.restart_phone(victim)
        farm.connect(victim)
        wait_until(lambda: serial in farm.online_in_api(), 60, "the phone back online")


def test_cancel_stops_the_run_on_the_phone(farm: Farm) -> None:
    phone = farm.phones[0]
    long_run = job_body(
        selector=f"serial={phone.serial}",
        # As long as a run can be (16 x 8 images of 150 steps: a minute or more), so that it is
        # still running when the CLI, a new process, gets to cancel it.
        params={"prompts": [PROMPT] * 16, "steps": 150, "images_per_prompt": 8, "runtime": "cpu"},
    )
    job = farm.post("/api/v1/jobs", long_run)
    wait_until(
        lambda: farm.api(f"/api/v1/jobs/{job['id']}")["runs"][0]["progress"],
        60,
        "the run to make progress",
    )
    cancelled = farm.cli("cancel", job["id"])
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    runner = "/hexfleet-runner "  # runners/<bundle sha256>/hexfleet-runner <job>/spec.json

    def runner_gone() -> bool:
        rows = phone.processes.rows()
        return not any(runner in row.args for row in rows)

    wait_until(runner_gone, 30, "the runner to be stopped on the phone")
    assert farm.api(f"/api/v1/jobs/{job['id']}")["state"] == "cancelled"
