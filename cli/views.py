"""What the CLI shows: tables of phones, jobs, runs and benchmarks, and the live job watch.

Tables fit the width they are printed at: a terminal's, or 80 columns (COLUMNS if set) in a file
or a pipe. Columns empty in every row are left out, the least important go first when the width
is short, and identifiers (serials, job ids, states) are never cut: they are never wrapped either.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from hexfleet.cli.client import ApiClient
from hexfleet.manifest import Manifest
from hexfleet.states import FINAL_JOB_STATES, FINAL_RUN_STATES

FILE_WIDTH = 80  # a file or a pipe has no width of its own; logs are read in 80 columns
WRAP_MIN = 16  # a wrapped column is never narrower: short words stay whole, long ones fold
EMPTY_CELLS = ("", "-")


def fixed_width(environ: Mapping[str, str]) -> int:
    """The width for output that is not a terminal: COLUMNS when a sensible number, else 80."""
    columns = environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) >= 20 else FILE_WIDTH


def console_for(stderr: bool = False) -> Console:
    """A console on stdout (or stderr): the terminal's width, or a fixed one when redirected.

    Left to itself rich asks the *other* streams for a terminal size when this one is a file, so
    `hexfleet demo > log` from a wide terminal would write lines as wide as that terminal.
    """
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return Console(stderr=stderr)
    return Console(stderr=stderr, width=fixed_width(os.environ))


@dataclass(frozen=True)
class Column:
    """A table column: `rank` 0 is always shown, higher ranks are dropped first when too narrow.

    `wrap` marks free text (errors, verdicts, reasons) that may take several lines; every other
    column is as wide as its widest cell, so serials, ids and states are never cut.
    """

    header: str
    rank: int = 1
    wrap: bool = False


def _lines_width(text: str) -> int:
    return max((cell_len(line) for line in text.splitlines()), default=0)


def _longest_word(text: str) -> int:
    return max((cell_len(word) for word in text.split()), default=0)


class FittedTable:
    """Rows of text rendered as a rich table with the columns that fit the console's width."""

    def __init__(
        self, columns: Sequence[Column], title: str | None = None, caption: str | None = None
    ) -> None:
        self.columns = list(columns)
        self.title = title
        self.caption = caption
        self.rows: list[tuple[list[str], str | None]] = []

    def add_row(self, *cells: str, style: str | None = None) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append((list(cells), style))

    def _natural(self, index: int) -> int:
        cells = [self.columns[index].header, *(row[index] for row, _ in self.rows)]
        return max(_lines_width(cell) for cell in cells)

    def _minimum(self, index: int) -> int:
        natural = self._natural(index)
        column = self.columns[index]
        if not column.wrap:
            return natural
        return min(natural, max(WRAP_MIN, _longest_word(column.header)))

    def filled(self) -> list[int]:
        """Indexes of the columns with something in some row (all of them when there is no row)."""
        return [
            i
            for i in range(len(self.columns))
            if not self.rows or any(row[i] not in EMPTY_CELLS for row, _ in self.rows)
        ]

    def shown(self, width: int) -> tuple[list[int], list[int]]:
        """Indexes of the columns shown at `width`, and their widths (without padding)."""
        candidates = self.filled()
        minimum = {i: self._minimum(i) for i in candidates}

        def needed(indexes: list[int]) -> int:
            # Each column: one space of padding either side and a border on its right; plus
            # the table's left border.
            return sum(minimum[i] + 3 for i in indexes) + 1

        while needed(candidates) > width:
            droppable = [i for i in candidates if self.columns[i].rank > 0]
            if not droppable:
                break  # too narrow even for the identifiers: rich squeezes what it must
            # The highest rank goes first; among equals, the rightmost.
            candidates.remove(max(droppable, key=lambda i: (self.columns[i].rank, i)))
        # A narrow column dropped on the way may fit again once a wide one is gone.
        dropped = sorted(set(self.filled()) - set(candidates), key=lambda i: self.columns[i].rank)
        for index in dropped:
            if needed([*candidates, index]) <= width:
                candidates = sorted([*candidates, index])
        widths = [minimum[i] for i in candidates]
        spare = width - needed(candidates)
        for position, index in enumerate(candidates):
            grow = min(max(spare, 0), self._natural(index) - widths[position])
            widths[position] += grow
            spare -= grow
        return candidates, widths

    def table(self, width: int) -> Table:
        """The rich table for `width` columns; the caption names the columns left out."""
        indexes, widths = self.shown(width)
        hidden = [self.columns[i].header for i in self.filled() if i not in indexes]
        notes = [self.caption] if self.caption else []
        if hidden:
            notes.append(f"not shown at {width} columns: {', '.join(hidden)} (--json has all)")
        caption = "\n".join(notes) or None
        # As wide as the title (up to the width), so that a long title is not wrapped to a narrow
        # table's width; rich shares the difference out among the columns.
        table = Table(
            title=self.title, caption=caption, min_width=min(width, cell_len(self.title or ""))
        )
        for index, column_width in zip(indexes, widths, strict=True):
            column = self.columns[index]
            table.add_column(
                column.header, width=column_width, no_wrap=not column.wrap, overflow="fold"
            )
        for cells, style in self.rows:
            # Text, not markup: a serial, a reason or a prompt may hold "[...]" of its own.
            table.add_row(*(Text(cells[i]) for i in indexes), style=style)
        return table

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.table(options.max_width)


def _fmt(value: object, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def models_table(manifests: Sequence[Manifest]) -> FittedTable:
    """The local store's model variants: name/version, precision, size, target and origin."""
    columns = [
        Column("model", 0),
        Column("precision", 0),
        Column("size", 1),
        Column("htp arch", 2),
        Column("image", 2),
        Column("steps", 3),
        Column("from", 4, wrap=True),
    ]
    table = FittedTable(columns, title=f"{len(manifests)} models")
    for m in manifests:
        table.add_row(
            f"{m.name}/{m.version}",
            m.precision,
            f"{m.total_size() / 1e6:.1f} MB",
            f"v{m.htp_arch}" if m.htp_arch else "-",
            f"{m.image_size}px",
            str(m.default_steps),
            m.parent or m.source.split(" (")[0],
        )
    return table


def devices_table(devices: list[dict[str, Any]]) -> FittedTable:
    columns = [
        Column("serial", 0),
        Column("state", 0),
        Column("SoC", 1),
        Column("model", 2, wrap=True),
        Column("arch", 3),
        Column("battery", 3),
        Column("temp", 3),
        Column("host", 4),
        Column("run", 5),
    ]
    table = FittedTable(columns, title=f"{len(devices)} phones")
    for d in devices:
        state = d["state"] + (
            " (throttled)" if d["throttled"] and d["state"] != "throttled" else ""
        )
        table.add_row(
            d["serial"],
            state,
            d["soc"],
            d["model"] + (" [virtual]" if d["is_virtual"] else ""),
            _fmt(d["htp_arch"] and f"v{d['htp_arch']}"),
            _fmt(d["battery_level"], "%"),
            _fmt(d["temperature_c"], " °C"),
            d["host"],
            d["current_run_id"] or "-",
        )
    return table


def jobs_table(jobs: list[dict[str, Any]]) -> FittedTable:
    columns = [
        Column("id", 0),
        Column("state", 0),
        Column("kind", 1),
        Column("created", 2),
        Column("selector", 3, wrap=True),
        Column("by", 4),
        Column("priority", 5),
    ]
    table = FittedTable(columns, title=f"{len(jobs)} jobs")
    for j in jobs:
        table.add_row(
            j["id"],
            j["state"],
            j["kind"],
            j["created_at"][:19].replace("T", " "),
            j["selector"],
            j["submitted_by"],
            str(j["priority"]),
        )
    return table


SIMULATED_NOTE = "simulated timings: QNN HTP simulator on a host, not a device timing"


def _timing_label(simulated: bool | None) -> str:
    """Which clock a timing comes from: a virtual phone's is simulated, a real phone's is not."""
    return "-" if simulated is None else ("simulated" if simulated else "device")


def runs_table(job: dict[str, Any]) -> FittedTable:
    """One row per run: `#slot.attempt` as in the live watch; the run's full id when wide."""
    simulated = any(r.get("simulated") for r in job["runs"])
    title = f"job {job['id']} ({job['kind']}, {job['state']})"
    if simulated:
        title += f" — {SIMULATED_NOTE}"
    columns = [
        Column("phone", 0),
        Column("run", 1),
        Column("state", 0),
        Column("error", 1, wrap=True),
        Column("progress", 2),
        Column("total", 2),
        Column("timing", 3),
        Column("run id", 5),
    ]
    table = FittedTable(columns, title=title)
    for r in job["runs"]:
        progress = r["progress"]
        total = r["timings"].get("total_s")
        table.add_row(
            r["device_serial"] or r["queue"],
            f"#{r['slot']}.{r['attempt']}",
            r["state"],
            # An attempt the orchestrator ended says why (it was retried or failed for it).
            _first_line(r["error"] or r.get("reason") or ""),
            f"{progress.get('step', 0)}/{progress.get('total', '?')}" if progress else "-",
            _fmt(total, " s", 2),
            _timing_label(r.get("simulated")) if r["timings"] else "-",
            r["id"],
        )
    return table


def _first_line(error: str | None) -> str:
    """An error's first line: the one-line reason; the rest (a traceback) is in --json."""
    return (error or "").strip().split("\n", 1)[0]


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


def bench_table(job: dict[str, Any]) -> FittedTable:
    """Per phone: load, first inference, median with its CI, p90/p99, CV, drift, throttling.

    A run that did not succeed is a row of its own with its state and error.
    """
    stats = job.get("benchmark") or []
    simulated = any(s["simulated"] for s in stats) or any(r.get("simulated") for r in job["runs"])
    confidence = stats[0]["latency"]["confidence"] if stats else 0.95
    columns = [
        Column("phone", 0),
        Column("median ms", 0),
        Column("throttled", 1, wrap=True),
        Column("error", 1, wrap=True),
        Column("p99 ms", 2),
        Column("CV", 2),
        Column("SoC", 2),
        Column("p90 ms", 3),
        Column("trend", 3),
        Column("timing", 3),
        Column("first ms", 4),
        Column("runs", 4),
        Column("temp °C", 4),
        Column("load ms", 5),
        Column("NPU", 5),
    ]
    table = FittedTable(
        columns,
        title="benchmark" + (f" — {SIMULATED_NOTE}" if simulated else ""),
        caption=(
            f"median [{confidence:.0%} bootstrap CI] of every timed iteration; "
            "trend: change over the run (p-value shown when significant)"
        ),
    )
    for s in stats:
        lat = s["latency"]
        table.add_row(
            s["serial"],
            f"{lat['median']:.1f} [{lat['ci_low']:.1f}, {lat['ci_high']:.1f}]",
            ("yes: " + "; ".join(s["reasons"])) if s["throttled"] else "no",
            "",
            _fmt(lat["p99"]),
            f"{lat['cv']:.1%}",
            s["soc"],
            _fmt(lat["p90"]),
            _trend(lat),
            _timing_label(s["simulated"]),
            _fmt(s["first_ms"], digits=0),
            str(s["runs"]),
            _temps(s["thermal"]),
            _fmt(s["load_ms"], digits=0),
            _fmt(s["npu_share"] * 100, "%", 0) if s["npu_share"] is not None else "-",
        )
    for r in job["runs"]:
        if r["state"] != "succeeded":
            error = _first_line(r["error"])
            table.add_row(
                r["device_serial"] or r["queue"],
                "-",
                "-",
                f"{r['state']}: {error}" if error else r["state"],
                *["-"] * (len(columns) - 4),
            )
    return table


def _change(c: dict[str, Any]) -> str:
    if c["verdict"] == "too few samples":
        return f"{c['change']:+.1%}"
    return f"{c['change']:+.1%} [{c['ci_low']:+.1%}, {c['ci_high']:+.1%}]"


def _verdict(c: dict[str, Any]) -> str:
    if c["verdict"] == "within run spread":
        return f"within run spread ({c['run_spread']:.1%})"
    return str(c["verdict"])


def compare_table(comparison: dict[str, Any]) -> FittedTable:
    """Per phone × metric: medians, the change with its CI, the p-value and the verdict."""
    title = f"job {comparison['job_b']} vs {comparison['job_a']}"
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
    columns = [
        Column("phone", 0),
        Column("metric", 0),
        Column("change [CI]", 0),
        Column("verdict", 0, wrap=True),
        Column("p", 2),
        Column("median a", 3),
        Column("median b", 3),
        Column("SoC", 3),
        Column("n a/b", 4),
        Column("timing", 4),
    ]
    table = FittedTable(columns, title=title, caption="\n".join(notes))
    styles = {"regression": "bold red", "improvement": "green"}
    for c in comparison["changes"]:
        unit = f" {c['unit']}" if c["unit"] else ""
        table.add_row(
            c["serial"],
            c["metric"],
            _change(c),
            _verdict(c),
            "-" if c["p_value"] is None else f"{c['p_value']:.2g}",
            f"{c['median_a']:.4g}{unit}",
            f"{c['median_b']:.4g}{unit}",
            c["soc"],
            f"{c['n_a']}/{c['n_b']}",
            _timing_label(c["simulated"]),
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
