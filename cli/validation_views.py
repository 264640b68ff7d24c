"""What `hexfleet validate` prints: the verdict per phone and the agreement between phones.

Both are FittedTables (cli/views.py): they fit an 80-column terminal or log file, leave out
columns empty in every row, and never cut a serial. The HTML report is the server's
(orchestrator/validation/rendering.py); `--json` has everything.
"""

from __future__ import annotations

from hexfleet.cli.views import Column, FittedTable
from hexfleet.orchestrator.validation.report import ValidationReport, number, prompts_summary


def verdict_table(report: ValidationReport) -> FittedTable:
    """Per phone: verdict, scores against the reference, outlier, (simulated) time, reason."""
    images = report.mode == "images"
    state = "PASS" if report.passed else ("FAIL" if report.complete else report.state)
    notes = [report.consensus] if report.consensus else []
    if report.simulated:
        notes.append("timings simulated (virtual phones)")
    columns = [
        Column("phone", 0),
        Column("verdict", 0),
        Column("PSNR dB", 1),
        Column("SSIM" if images else "cosine", 2),
        Column("reason", 1, wrap=True),
        Column("prompts", 3),
        Column("outlier", 3),
        Column("time", 4),
    ]
    table = FittedTable(
        columns,
        title=f"validation of {report.model} ({report.precision}) against {report.reference}: "
        f"{state}",
        caption=" — ".join(notes) or None,
    )
    for phone in report.phones:
        s = phone.scores
        seconds = number(s.get("seconds"), 2, " s")
        if s.get("simulated") and seconds != "-":
            seconds += " (sim.)"
        table.add_row(
            phone.serial,
            "pass" if phone.passed else "FAIL",
            number(s.get("psnr_db")),
            number(s.get("ssim"), 3) if images else number(s.get("cosine"), 6),
            phone.reason,
            prompts_summary(s),
            "yes" if s.get("outlier") else "",
            seconds,
            style=None if phone.passed else "red",
        )
    return table


def agreement_table(report: ValidationReport) -> FittedTable | None:
    """Mean PSNR (dB) between every two phones; None with fewer than two compared phones.

    One row per pair (not a matrix): a farm of twenty phones still fits 80 columns.
    """
    serials = [p.serial for p in report.phones if report.matrix.get(p.serial)]
    if len(serials) < 2:
        return None
    table = FittedTable(
        [Column("phone", 0), Column("phone", 0), Column("PSNR dB", 0), Column("agree", 0)],
        title="agreement between phones (mean PSNR dB)",
    )
    for i, a in enumerate(serials):
        for b in serials[i + 1 :]:
            cell = report.matrix[a].get(b)
            if cell is None:
                continue
            agree = bool(cell.get("agree"))
            table.add_row(
                a,
                b,
                number(cell.get("psnr_db")),
                "yes" if agree else "no",
                style=None if agree else "red",
            )
    return table
