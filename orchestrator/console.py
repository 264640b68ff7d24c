"""What the CLI shows: rich tables of phones, jobs, runs and benchmarks, and the live job watch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.client import ApiClient

FINAL_JOB_STATES = {"succeeded", "failed", "cancelled"}


def _fmt(value: object, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def devices_table(devices: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(devices)} phones")
    for column in ("serial", "host", "SoC", "arch", "model", "state", "battery", "temp", "run"):
        table.add_column(column)
    for d in devices:
        state = d["state"] + (
            " (throttled)" if d["throttled"] and d["state"] != "throttled" else ""
        )
        table.add_row(
            d["serial"],
            d["host"],
            d["soc"],
            _fmt(d["htp_arch"] and f"v{d['htp_arch']}"),
            d["model"] + (" [virtual]" if d["is_virtual"] else ""),
            state,
            _fmt(d["battery_level"], "%"),
            _fmt(d["temperature_c"], " °C"),
            (d["current_run_id"] or "-")[:8],
        )
    return table


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{len(jobs)} jobs")
    for column in ("id", "kind", "state", "selector", "priority", "by", "created"):
        table.add_column(column)
    for j in jobs:
        table.add_row(
            j["id"],
            j["kind"],
            j["state"],
            j["selector"],
            str(j["priority"]),
            j["submitted_by"],
            j["created_at"][:19],
        )
    return table


def runs_table(job: dict[str, Any]) -> Table:
    simulated = any(r.get("simulated") for r in job["runs"])
    title = f"job {job['id'][:8]} ({job['kind']}, {job['state']})"
    if simulated:
        title += " — timings simulated (QNN HTP simulator, not a device timing)"
    table = Table(title=title)
    for column in ("run", "phone", "attempt", "state", "progress", "total", "error"):
        table.add_column(column)
    for r in job["runs"]:
        progress = r["progress"]
        total = r["timings"].get("total_s")
        table.add_row(
            r["id"][:8],
            r["device_serial"] or r["queue"],
            str(r["attempt"]),
            r["state"],
            f"{progress.get('step', 0)}/{progress.get('total', '?')}" if progress else "-",
            _fmt(total, " s", 2),
            (r["error"] or "")[:60],
        )
    return table


def bench_table(job: dict[str, Any]) -> Table:
    """Per phone: load, first inference, p50/p90/p99, NPU share, throttled."""
    simulated = any(r.get("simulated") for r in job["runs"])
    table = Table(
        title="benchmark" + (" (simulated timings: QNN HTP simulator)" if simulated else "")
    )
    for column in (
        "phone",
        "SoC",
        "load ms",
        "first ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "NPU",
        "throttled",
    ):
        table.add_column(column, no_wrap=column == "phone")
    for r in job["runs"]:
        t, m = r["timings"], r["metrics"]
        if r["state"] != "succeeded":
            table.add_row(r["device_serial"] or "-", "", r["state"], (r["error"] or "")[:50])
            continue
        table.add_row(
            r["device_serial"] or "-",
            str(m.get("soc", "")),
            *(
                _fmt(t.get(k), digits=0)
                for k in ("load_ms", "first_ms", "p50_ms", "p90_ms", "p99_ms")
            ),
            _fmt(m["npu_share"] * 100, "%", 0) if m.get("npu_share") is not None else "-",
            "yes" if m.get("throttled") else "no",
        )
    return table


def watch(
    client: ApiClient, job_id: str, console: Console, poll_s: float = 0.5, timeout_s: float = 3600
) -> dict[str, Any]:
    """Follow a job until it ends, one progress bar per run; returns the final job."""
    deadline = time.monotonic() + timeout_s
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        bars: dict[str, int] = {}
        while True:
            job = client.get(f"/api/v1/jobs/{job_id}")
            for run in job["runs"]:
                label = f"{run['device_serial'] or run['queue']} #{run['slot']}.{run['attempt']}"
                if run["id"] not in bars:
                    bars[run["id"]] = progress.add_task(label, total=None, state=run["state"])
                step = run["progress"].get("step", 0)
                total = run["progress"].get("total") or None
                done = run["state"] in ("succeeded", "failed", "lost", "cancelled")
                if done and total is None:
                    total, step = 1, 1
                progress.update(
                    bars[run["id"]],
                    description=label,
                    completed=step,
                    total=total,
                    state=run["state"],
                )
            if job["state"] in FINAL_JOB_STATES:
                return job
            if time.monotonic() > deadline:
                return job
            time.sleep(poll_s)


def save_results(client: ApiClient, job: dict[str, Any], out: Path) -> list[Path]:
    """Images under OUT/<phone>/, plus OUT/<job>.json with every run's timings and metrics."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for run in job["runs"]:
        folder = out / (run["device_serial"] or "unassigned")
        for image in run["images"]:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"run{run['slot']}-a{run['attempt']}-{image['index']}.png"
            path.write_bytes(client.download(image["url"]))
            written.append(path)
    summary = out / f"{job['id']}.json"
    summary.write_text(json.dumps(job, indent=1))
    written.append(summary)
    return written
