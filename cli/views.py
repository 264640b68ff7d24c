"""What the CLI shows: rich tables of phones, jobs, runs and benchmarks, and the live job watch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hexfleet.cli.client import ApiClient
from hexfleet.states import FINAL_JOB_STATES, FINAL_RUN_STATES


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


SIMULATED_NOTE = "simulated timings: QNN HTP simulator on a host, not a device timing"


def _timing_label(simulated: bool | None) -> str:
    """Which clock a timing comes from: a virtual phone's is simulated, a real phone's is not."""
    return "-" if simulated is None else ("simulated" if simulated else "device")


def runs_table(job: dict[str, Any]) -> Table:
    simulated = any(r.get("simulated") for r in job["runs"])
    title = f"job {job['id'][:8]} ({job['kind']}, {job['state']})"
    if simulated:
        title += f" — {SIMULATED_NOTE}"
    table = Table(title=title)
    for column in ("run", "phone", "attempt", "state", "progress", "total", "timing", "error"):
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
            _timing_label(r.get("simulated")) if r["timings"] else "-",
            # An attempt the orchestrator ended says why (it was retried or failed for it).
            (r["error"] or r.get("reason") or "")[:60],
        )
    return table


def _trend(latency: dict[str, Any]) -> str:
    trend = latency.get("trend")
    if not trend:
        return "-"
    text = f"{trend['relative']:+.1%}"
    return f"{text} (p={trend['p_value']:.2g})" if trend["significant"] else text


def _temps(thermal: dict[str, Any] | None) -> str:
    """The hottest zone at the first and last timed iteration (the phone's last run)."""
    if not thermal:
        return "-"
    return f"{thermal['start_c']:.0f}→{thermal['end_c']:.0f}"


def bench_table(job: dict[str, Any]) -> Table:
    """Per phone: load, first inference, median with its CI, p90/p99, CV, drift, throttling."""
    stats = job.get("benchmark") or []
    simulated = any(s["simulated"] for s in stats) or any(r.get("simulated") for r in job["runs"])
    confidence = stats[0]["latency"]["confidence"] if stats else 0.95
    table = Table(
        title="benchmark" + (f" — {SIMULATED_NOTE}" if simulated else ""),
        caption=(
            f"median [{confidence:.0%} bootstrap CI] of every timed iteration; "
            "trend: change over the run (p-value shown when significant)"
        ),
    )
    columns = ("phone", "SoC", "timing", "runs", "load ms", "first ms", "median ms")
    columns += ("p90 ms", "p99 ms", "CV", "trend", "temp °C", "NPU", "throttled")
    for column in columns:
        table.add_column(column, no_wrap=column in ("phone", "median ms"))
    for s in stats:
        lat = s["latency"]
        table.add_row(
            s["serial"],
            s["soc"],
            _timing_label(s["simulated"]),
            str(s["runs"]),
            _fmt(s["load_ms"], digits=0),
            _fmt(s["first_ms"], digits=0),
            f"{lat['median']:.1f} [{lat['ci_low']:.1f}, {lat['ci_high']:.1f}]",
            _fmt(lat["p90"]),
            _fmt(lat["p99"]),
            f"{lat['cv']:.1%}",
            _trend(lat),
            _temps(s["thermal"]),
            _fmt(s["npu_share"] * 100, "%", 0) if s["npu_share"] is not None else "-",
            ("yes: " + "; ".join(s["reasons"])) if s["throttled"] else "no",
        )
    for r in job["runs"]:
        if r["state"] != "succeeded":
            table.add_row(r["device_serial"] or "-", "", "-", r["state"], (r["error"] or "")[:50])
    return table


def _change(c: dict[str, Any]) -> str:
    if c["verdict"] == "too few samples":
        return f"{c['change']:+.1%}"
    return f"{c['change']:+.1%} [{c['ci_low']:+.1%}, {c['ci_high']:+.1%}]"


def _verdict(c: dict[str, Any]) -> str:
    if c["verdict"] == "within run spread":
        return f"within run spread ({c['run_spread']:.1%})"
    return str(c["verdict"])


def compare_table(comparison: dict[str, Any]) -> Table:
    """Per phone × metric: medians, the change with its CI, the p-value and the verdict."""
    title = f"job {comparison['job_b'][:8]} vs {comparison['job_a'][:8]}"
    if comparison["simulated"]:
        title += f" — {SIMULATED_NOTE}"
    notes = [
        f"regression = change > {comparison['threshold']:.1%} and Mann–Whitney p < "
        f"{comparison['alpha']:g} (and, with repeats, > the spread between a job's runs); "
        f"CI {comparison['confidence']:.0%} bootstrap"
    ]
    if comparison["setup_differences"]:
        notes.append("setup differs: " + "; ".join(comparison["setup_differences"]))
    if comparison["unpaired"]:
        notes.append("ran only one of the jobs: " + ", ".join(comparison["unpaired"]))
    table = Table(title=title, caption="\n".join(notes))
    for column in ("phone", "SoC", "metric", "timing", "n a/b", "median a", "median b"):
        table.add_column(column, no_wrap=column == "phone")
    for column in ("change [CI]", "p", "verdict"):
        table.add_column(column, no_wrap=True)
    styles = {"regression": "bold red", "improvement": "green"}
    for c in comparison["changes"]:
        unit = f" {c['unit']}" if c["unit"] else ""
        table.add_row(
            c["serial"],
            c["soc"],
            c["metric"],
            _timing_label(c["simulated"]),
            f"{c['n_a']}/{c['n_b']}",
            f"{c['median_a']:.4g}{unit}",
            f"{c['median_b']:.4g}{unit}",
            _change(c),
            "-" if c["p_value"] is None else f"{c['p_value']:.2g}",
            _verdict(c),
            style=styles.get(c["verdict"]),
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
                done = run["state"] in FINAL_RUN_STATES
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
