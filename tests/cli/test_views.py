"""The CLI's tables as printed to a file or a pipe (no terminal): they fit 80 columns and a wide
COLUMNS, leave out no identifier, show no column that is blank for every row, and label every
timing simulated or device. The data comes from the API's own views of stored jobs."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

import pytest
from cli_support import FAILED_SERIAL, SERIALS, Stored, manifests, validation_report
from rich.cells import cell_len

from hexfleet.cli import validation_views, views

WIDTHS = [80, 200]
Tables = dict[str, Callable[[Stored], Any]]
TABLES: Tables = {
    "devices": lambda s: views.devices_table(s.devices),
    "jobs": lambda s: views.jobs_table(s.jobs),
    "runs": lambda s: views.runs_table(s.generate),
    "bench": lambda s: views.bench_table(s.bench),
    "compare": lambda s: views.compare_table(s.comparison),
    "models": lambda _: views.models_table(manifests()),
    "validation": lambda _: validation_views.verdict_table(validation_report()),
    "agreement": lambda _: validation_views.agreement_table(validation_report()),
}


def printed(table: Any, monkeypatch: pytest.MonkeyPatch, columns: int | None) -> str:
    """What the CLI writes when its stdout is a file: through views.console_for, as app.py does."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", str(columns))
    views.console_for().print(table)
    return out.getvalue()


def cells(text: str) -> tuple[list[str], list[list[str]]]:
    """The header cells and the body rows' cells of the one table in `text`."""
    lines = text.splitlines()
    header = next(line for line in lines if line.startswith("┃"))
    rows = [line.strip("│").split("│") for line in lines if line.startswith("│")]
    return [h.strip() for h in header.strip("┃").split("┃")], [[c.strip() for c in r] for r in rows]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", sorted(TABLES))
def test_tables_fit_the_width_and_have_no_blank_column(
    stored: Stored, name: str, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = printed(TABLES[name](stored), monkeypatch, width)
    too_wide = [line for line in text.splitlines() if cell_len(line) > width]
    assert not too_wide, "\n".join(too_wide)
    headers, rows = cells(text)
    assert all(headers), headers
    for index, header in enumerate(headers):
        assert any(row[index] not in ("", "-") for row in rows), f"{header} is blank: {text}"
    assert "…" not in text  # nothing truncated


def test_a_redirected_stdout_is_80_columns_without_columns(
    stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = printed(views.bench_table(stored.bench), monkeypatch, None)
    assert max(cell_len(line) for line in text.splitlines()) <= 80
    assert views.fixed_width({}) == 80 and views.fixed_width({"COLUMNS": "132"}) == 132
    assert views.fixed_width({"COLUMNS": "wide"}) == 80


@pytest.mark.parametrize("width", WIDTHS)
def test_serials_states_and_ids_are_whole(
    stored: Stored, width: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    devices = printed(views.devices_table(stored.devices), monkeypatch, width)
    jobs = printed(views.jobs_table(stored.jobs), monkeypatch, width)
    runs = printed(views.runs_table(stored.generate), monkeypatch, width)
    bench = printed(views.bench_table(stored.bench), monkeypatch, width)
    compared = printed(views.compare_table(stored.comparison), monkeypatch, width)
    for text in (devices, runs, bench):
        for serial in SERIALS:
            assert serial in text
    # The failed phone has no timings in either job, so it has nothing to compare.
    assert all(serial in compared for serial in SERIALS if serial != FAILED_SERIAL)
    for device in stored.devices:
        assert f"│ {device['serial']} │ {device['state']} " in devices
    for job in stored.jobs:
        assert f"│ {job['id']} │ {job['state']} " in jobs
    for run in stored.generate["runs"]:
        assert f"│ {run['state']} " in runs
    assert stored.generate["id"] in runs
    # A failed run keeps its state and its reason (wrapped, never cut) in the benchmark table.
    failed = [line for line in bench.splitlines() if FAILED_SERIAL in line]
    assert len(failed) == 1 and "failed:" in failed[0]
    assert "1002" in bench and "unet.onnx" in bench


def test_a_narrow_width_drops_the_least_important_columns_and_says_which(
    stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    narrow = printed(views.bench_table(stored.bench), monkeypatch, 80)
    wide = printed(views.bench_table(stored.bench), monkeypatch, 250)
    assert "not shown at 80 columns:" in narrow and "NPU" in narrow.split("not shown")[1]
    assert "not shown" not in wide
    narrow_headers, _ = cells(narrow)
    wide_headers, _ = cells(wide)
    assert narrow_headers[:3] == ["phone", "median ms", "throttled"]
    assert set(narrow_headers) < set(wide_headers)


def test_bench_compare_and_runs_tables_show_statistics_labelled_simulated(
    stored: Stored, monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = printed(views.bench_table(stored.bench), monkeypatch, 250)
    assert "simulated timings: QNN HTP simulator" in bench
    for column in ("median ms", "p99 ms", "CV", "trend", "throttled", "timing"):
        assert column in bench
    stats = stored.bench["benchmark"][0]["latency"]
    assert f"{stats['median']:.1f} [{stats['ci_low']:.1f}, {stats['ci_high']:.1f}]" in bench
    assert "95% bootstrap CI" in bench

    device = printed(views.bench_table(stored.real_bench), monkeypatch, 250)
    assert "simulated" not in device and "device" in device

    compared = printed(views.compare_table(stored.comparison), monkeypatch, 250)
    assert "simulated timings" in compared and "regression" in compared
    assert "iterations_ms" in compared and "p < 0.01" in compared

    runs = printed(views.runs_table(stored.generate), monkeypatch, 250)
    assert "simulated" in runs


def test_an_empty_list_prints_its_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    text = printed(views.jobs_table([]), monkeypatch, 80)
    assert "0 jobs" in text and "id" in text and "state" in text


def test_cells_are_text_not_markup(monkeypatch: pytest.MonkeyPatch) -> None:
    table = views.FittedTable([views.Column("serial", 0), views.Column("error", 1, wrap=True)])
    table.add_row("[bold]phone[/]", "exit 1: [red] not found")
    text = printed(table, monkeypatch, 80)
    assert "[bold]phone[/]" in text and "exit 1: [red] not found" in text
