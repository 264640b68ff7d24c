"""A validation report rendered as one self-contained HTML file (the terminal's tables: cli/).

The HTML opens offline in any browser: inline CSS, images as data: URIs, no script. Every string
that came from a user or a phone (prompts, serials, reasons) is escaped.
"""

from __future__ import annotations

import base64
from html import escape

from hexfleet.orchestrator.validation.report import (
    PhoneVerdict,
    ValidationReport,
    number,
    prompts_summary,
)

CSS = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #1d1d1f; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 28px; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.pass { color: #0a7d29; font-weight: 600; } .fail { color: #b3261e; font-weight: 600; }
.note { color: #666; } .heat td { text-align: center; min-width: 72px; }
.images td { text-align: center; font-size: 12px; } .images td:first-child { text-align: left; }
.images img { width: 96px; height: 96px; image-rendering: pixelated; display: block;
  margin: 0 auto 4px; border: 3px solid transparent; }
.images img.bad { border-color: #b3261e; }
.outlier { background: #fde7e5; }
"""


def _verdict(passed: bool) -> str:
    return '<span class="pass">PASS</span>' if passed else '<span class="fail">FAIL</span>'


def _heat(psnr: float | None, threshold: float) -> str:
    """Red below the threshold, through yellow at it, to green 20 dB above it."""
    if psnr is None:
        return "#eee"
    share = max(0.0, min(1.0, (psnr - threshold + 10) / 30))
    return f"hsl({int(share * 120)}, 70%, 80%)"


def _phones_table(report: ValidationReport) -> str:
    images = report.mode == "images"
    head = ["phone", "verdict", "mean PSNR", "SSIM" if images else "worst cosine"]
    head += ["prompts right"] if images else ["worst error / range"]
    head += ["outlier", "time" + (" (simulated)" if report.simulated else ""), "reason"]
    rows = []
    for phone in report.phones:
        s = phone.scores
        second = number(s.get("ssim"), 3) if images else number(s.get("cosine"), 6)
        if images:
            third = prompts_summary(s)
        else:
            third = number(s.get("rel_error"), 4)
        seconds = number(s.get("seconds"), 2, " s")
        if s.get("simulated") and seconds != "-":
            seconds += " (simulated)"
        cells = [
            escape(phone.serial),
            _verdict(phone.passed),
            number(s.get("psnr_db"), 1, " dB"),
            second,
            third,
            "yes" if s.get("outlier") else "",
            seconds,
            escape(phone.reason),
        ]
        style = ' class="outlier"' if s.get("outlier") else ""
        rows.append(f"<tr{style}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "".join(f"<th>{escape(h)}</th>" for h in head)
    return f"<table><tr>{header}</tr>{''.join(rows)}</table>"


def _matrix(report: ValidationReport) -> str:
    serials = [p.serial for p in report.phones if report.matrix.get(p.serial)]
    if len(serials) < 2:
        return '<p class="note">Fewer than two phones produced outputs: no matrix.</p>'
    key = "min_psnr_db" if report.mode == "images" else "min_tensor_psnr_db"
    threshold = float(report.thresholds.get(key, 30.0))
    second = "ssim" if report.mode == "images" else "cosine"
    head = "".join(f"<th>{escape(s)}</th>" for s in serials)
    rows = []
    for a in serials:
        cells = []
        for b in serials:
            if a == b:
                cells.append('<td style="background:#ddd">-</td>')
                continue
            cell = report.matrix[a].get(b, {})
            psnr = cell.get("psnr_db")
            title = f"{second} {number(cell.get(second), 4)}; agree: {cell.get('agree')}"
            cells.append(
                f'<td style="background:{_heat(psnr, threshold)}" title="{escape(title)}">'
                f"{number(psnr, 1)}</td>"
            )
        rows.append(f"<tr><th>{escape(a)}</th>{''.join(cells)}</tr>")
    return (
        f'<table class="heat"><tr><th></th>{head}</tr>{"".join(rows)}</table>'
        f'<p class="note">Mean PSNR in dB between two phones\' outputs; yellow at the '
        f"threshold ({threshold:g} dB), green above, red below. {escape(report.consensus)}</p>"
    )


def _img(png: bytes | None, bad: bool = False) -> str:
    if png is None:
        return '<span class="note">none</span>'
    data = base64.b64encode(png).decode()
    css = ' class="bad"' if bad else ""
    return f'<img{css} src="data:image/png;base64,{data}" alt="">'


def _image_grid(report: ValidationReport, images: dict[str, dict[int, bytes]]) -> str:
    phones: list[PhoneVerdict] = report.phones
    head = "<th>prompt</th><th>reference</th>" + "".join(
        f"<th>{escape(p.serial)}</th>" for p in phones
    )
    rows = []
    for index, prompt in enumerate(report.prompts):
        cells = [f"<td>{escape(prompt)}</td>", f"<td>{_img(images['reference'].get(index))}</td>"]
        for phone in phones:
            output = next((o for o in phone.outputs if o.output == f"image-{index}"), None)
            caption = ""
            if output is not None and output.scores:
                caption = (
                    f"{number(output.scores.get('psnr_db'))} dB · SSIM "
                    f"{number(output.scores.get('ssim'), 3)}"
                )
            bad = output is not None and not output.passed
            png = images.get(phone.serial, {}).get(index)
            cells.append(f"<td>{_img(png, bad)}{escape(caption)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="images"><tr>{head}</tr>{"".join(rows)}</table>'


def _tensor_table(report: ValidationReport) -> str:
    names = sorted({o.output for p in report.phones for o in p.outputs})
    head = "<th>output</th>" + "".join(f"<th>{escape(p.serial)}</th>" for p in report.phones)
    rows = []
    for name in names:
        cells = [f"<td>{escape(name)}</td>"]
        for phone in report.phones:
            output = next((o for o in phone.outputs if o.output == name), None)
            if output is None or not output.scores:
                cells.append("<td>-</td>")
                continue
            s = output.scores
            text = (
                f"{number(s.get('psnr_db'))} dB · cos {number(s.get('cosine'), 6)} · "
                f"max err {number(s.get('max_abs_error'), 4)}"
            )
            cls = "pass" if output.passed else "fail"
            cells.append(f'<td class="{cls}">{escape(text)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def render_html(report: ValidationReport, images: dict[str, dict[int, bytes]]) -> str:
    """The whole report as one HTML document; `images` as from `report.report_images`."""
    limits = ", ".join(f"{escape(k)} {v:g}" for k, v in sorted(report.thresholds.items()))
    failed = [p.serial for p in report.failed]
    summary = (
        f"all {len(report.phones)} phones passed"
        if report.passed
        else f"{len(failed)} of {len(report.phones)} phones failed: {', '.join(failed)}"
    )
    if not report.complete:
        summary = f"not finished (job {report.state})"
    simulated = (
        '<p class="note">Timings come from virtual phones (QNN HTP simulator or CPU): they are '
        "<b>simulated</b>, not device timings.</p>"
        if report.simulated
        else ""
    )
    body = [
        f"<h1>Validation of {escape(report.model)} ({escape(report.precision)})</h1>",
        f"<p>Job {escape(report.job_id)} · reference <b>{escape(report.reference)}</b> · "
        f"{escape(report.mode)} · {_verdict(report.passed)} {escape(summary)}</p>",
        f'<p class="note">Thresholds: {limits}</p>',
        simulated,
        "<h2>Verdict per phone</h2>",
        _phones_table(report),
        "<h2>Agreement between phones</h2>",
        _matrix(report),
    ]
    if report.mode == "images":
        body += ["<h2>Images beside the reference</h2>", _image_grid(report, images)]
    else:
        body += ["<h2>Outputs</h2>", _tensor_table(report)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>hexfleet validation {escape(report.job_id[:8])}</title>"
        f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n"
    )
