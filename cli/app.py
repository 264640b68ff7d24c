"""The `hexfleet` command: composes every package's command group into one typer app.

Errors that derive from HexfleetError become one line on stderr and the error's exit code;
never a traceback for a user's mistake. Read commands take `--json` for scripts.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hexfleet import __version__
from hexfleet.cli import views
from hexfleet.cli.agent_commands import agent_app
from hexfleet.cli.client import ApiClient, check_job_id
from hexfleet.cli.model_commands import models_app
from hexfleet.cli.runner_commands import runners_app
from hexfleet.cli.virtual_device_commands import virtual_devices_app
from hexfleet.errors import (
    DeviceError,
    HexfleetError,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
)
from hexfleet.settings import Settings

app = typer.Typer(
    name="hexfleet",
    help="Run generative-AI jobs on a fleet of Snapdragon phones (real or virtual).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(models_app, name="models")
app.add_typer(runners_app, name="runners")
app.add_typer(virtual_devices_app, name="virtual-devices")
app.add_typer(agent_app, name="agent")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
# click's UsageError as typer raises it (newer typers vendor click): a bad option or argument.
UsageError: type[Exception] = typer.BadParameter.__mro__[1]
Devices = Annotated[str, typer.Option("--devices", "-d", help="Device selector, e.g. soc=SM8550")]


def _client() -> ApiClient:
    return ApiClient.from_settings(Settings())


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=1, default=str))


@app.command()
def version() -> None:
    """Print hexfleet's version."""
    typer.echo(f"hexfleet {__version__}")


@app.command()
def devices(as_json: JsonFlag = False) -> None:
    """List the fleet's phones with SoC, Hexagon arch, state, battery and temperature."""
    with _client() as client:
        found = client.get("/api/v1/devices")
    if as_json:
        _print_json(found)
    else:
        views.console_for().print(views.devices_table(found))


@app.command()
def jobs(
    state: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List jobs, newest first."""
    with _client() as client:
        found = client.get("/api/v1/jobs", state=state, limit=limit)
    if as_json:
        _print_json(found)
    else:
        views.console_for().print(views.jobs_table(found))


@app.command()
def job(job_id: str, as_json: JsonFlag = False) -> None:
    """Show one job with its runs, their state, progress and timings."""
    with _client() as client:
        found = client.get(f"/api/v1/jobs/{check_job_id(job_id)}")
    if as_json:
        _print_json(found)
    else:
        views.console_for().print(views.runs_table(found))
        if found.get("benchmark"):
            views.console_for().print(views.bench_table(found))


@app.command()
def cancel(job_id: str) -> None:
    """Cancel a job: queued runs are revoked, running ones stopped on their phone."""
    with _client() as client:
        found = client.post(f"/api/v1/jobs/{check_job_id(job_id)}/cancel")
    typer.echo(f"job {found['id']} {found['state']}")


@app.command()
def results(
    job_id: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for images and timings.")],
) -> None:
    """Download a job's images and a JSON of its timings into a folder."""
    with _client() as client:
        found = client.get(f"/api/v1/jobs/{check_job_id(job_id)}")
        written = views.save_results(client, found, out)
    typer.echo(f"{len(written)} files in {out}")


def _submit_and_follow(body: dict[str, Any], wait: bool, as_json: bool) -> tuple[Any, ApiClient]:
    client = _client()
    created = client.post("/api/v1/jobs", body)
    if not wait:
        return created, client
    console = views.console_for(stderr=as_json)
    console.print(f"job {created['id']}: {len(created['runs'])} runs")
    return views.watch(client, created["id"], console), client


def _finish(final: dict[str, Any]) -> None:
    """A job that ended badly is a one-line error with the first failed run's reason."""
    if final["state"] == "succeeded":
        return
    if final["state"] not in views.FINAL_JOB_STATES:
        raise ServiceUnavailable(f"job {final['id']} is still {final['state']}; gave up waiting")
    failed = [r for r in final["runs"] if r["state"] != "succeeded" and r["error"]]
    reason = failed[0]["error"] if failed else "no run succeeded"
    raise DeviceError(f"job {final['id']} {final['state']}: {reason}")


@app.command()
def generate(
    prompt: Annotated[list[str], typer.Argument(help="One or more prompts.")],
    devices: Devices = "all",
    model: Annotated[str, typer.Option(help="Model name.")] = "tiny-sd",
    precision: Annotated[str, typer.Option(help="fp32, w8a8 or w8a16.")] = "w8a16",
    steps: Annotated[int | None, typer.Option(min=1, max=150)] = None,
    guidance: Annotated[float | None, typer.Option(min=0, max=30)] = None,
    scheduler: Annotated[str | None, typer.Option(help="ddim, euler or dpm++2m.")] = None,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    images: Annotated[int, typer.Option("--images", help="Images per prompt.", min=1, max=8)] = 1,
    repeat: Annotated[int, typer.Option(help="Runs per phone.", min=1)] = 1,
    runtime: Annotated[str, typer.Option(help="htp (NPU) or cpu.")] = "htp",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Save images here.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Generate images from prompts on the selected phones, with live progress per phone."""
    body = {
        "kind": "generate",
        "model": model,
        "precision": precision,
        "selector": devices,
        "repeat": repeat,
        "params": {
            "prompts": prompt,
            "seed": seed,
            "steps": steps,
            "guidance": guidance,
            "scheduler": scheduler,
            "images_per_prompt": images,
            "runtime": runtime,
        },
    }
    final, client = _submit_and_follow(body, wait, as_json)
    with client:
        if out is not None and wait:
            written = views.save_results(client, final, out)
            views.console_for(stderr=as_json).print(f"{len(written)} files in {out}")
    if as_json:
        _print_json(final)
    elif wait:
        views.console_for().print(views.runs_table(final))
    _finish(final)


@app.command()
def bench(
    model: Annotated[str, typer.Argument(help="Model name.")],
    devices: Devices = "all",
    precision: Annotated[str, typer.Option(help="fp32, w8a8 or w8a16.")] = "w8a16",
    component: Annotated[str, typer.Option(help="text_encoder, unet or vae_decoder.")] = "unet",
    iterations: Annotated[int, typer.Option(min=1, max=10000)] = 10,
    warmup: Annotated[int, typer.Option(min=0, max=100)] = 2,
    runtime: Annotated[str, typer.Option(help="htp (NPU) or cpu.")] = "htp",
    repeat: Annotated[
        int, typer.Option(min=1, max=1000, help="Runs per phone, each after a cool-down.")
    ] = 1,
    as_json: JsonFlag = False,
) -> None:
    """Benchmark one model component on the selected phones: statistics per phone."""
    body = {
        "kind": "benchmark",
        "model": model,
        "precision": precision,
        "selector": devices,
        "repeat": repeat,
        "params": {
            "component": component,
            "iterations": iterations,
            "warmup": warmup,
            "runtime": runtime,
        },
    }
    final, client = _submit_and_follow(body, True, as_json)
    client.close()
    if as_json:
        _print_json(final)
    else:
        views.console_for().print(views.bench_table(final))
    _finish(final)


@app.command()
def compare(
    job_a: Annotated[str, typer.Argument(help="The baseline job's id.")],
    job_b: Annotated[str, typer.Argument(help="The job compared with it.")],
    threshold: Annotated[
        float, typer.Option(help="Smallest relative change that counts (0.03: 3 %).")
    ] = 0.03,
    fail: Annotated[
        bool, typer.Option("--fail/--no-fail", help="Exit 1 when a regression is flagged.")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Compare two jobs' timings per phone: change in median, CI, Mann–Whitney p, verdict.

    A regression is a slowdown larger than --threshold with p < 0.01. Exit status: 0 none,
    1 at least one regression (unless --no-fail), 2 and above the usual errors.
    """
    with _client() as client:
        found = client.get("/api/v1/compare", a=job_a, b=job_b, threshold=threshold)
    if as_json:
        _print_json(found)
    else:
        views.console_for().print(views.compare_table(found))
    if fail and found["regressions"]:
        typer.echo(f"{found['regressions']} regression(s) flagged", err=True)
        raise typer.Exit(1)


def _read_prompts(path: Path) -> list[str]:
    """One prompt per non-empty line; the API checks each (length, characters, vocabulary)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise NotFound(f"prompts file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidRequest(f"cannot read prompts file {path}: {exc}") from exc
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise InvalidRequest(f"prompts file {path} has no prompt")
    return prompts


@app.command()
def validate(
    model: Annotated[str, typer.Argument(help="Model name.")],
    devices: Devices = "all",
    precision: Annotated[str, typer.Option(help="fp32, w8a8 or w8a16.")] = "w8a16",
    reference: Annotated[
        str, typer.Option(help="cpu-fp32 (FP32 on this orchestrator's CPU) or serial=SERIAL.")
    ] = "cpu-fp32",
    prompts: Annotated[
        Path | None, typer.Option(help="File of prompts, one a line (default: held-out ones).")
    ] = None,
    prompt_count: Annotated[int, typer.Option(min=1, max=16, help="Held-out prompts.")] = 8,
    inputs: Annotated[
        int | None, typer.Option(min=1, max=64, help="Compare N tensors of --component instead.")
    ] = None,
    component: Annotated[str, typer.Option(help="text_encoder, unet or vae_decoder.")] = "unet",
    seed: Annotated[int, typer.Option(min=0)] = 0,
    steps: Annotated[int | None, typer.Option(min=1, max=150)] = None,
    runtime: Annotated[str, typer.Option(help="htp (NPU) or cpu.")] = "htp",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the report.")] = Path(
        "validation-output"
    ),
    html: Annotated[Path | None, typer.Option(help="HTML report path (default: in --out).")] = (
        None
    ),
    wait: Annotated[bool, typer.Option(help="Follow the job and report.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Run the same inputs on every selected phone and compare each with the reference.

    Exit code 0 when every phone passes, 1 when any fails (the report is written either way).
    """
    # Imported here: the comparison's modules load numpy, PIL and ONNX Runtime's quantizer.
    from hexfleet.cli.validation_views import agreement_table, verdict_table
    from hexfleet.orchestrator.validation.report import ValidationReport

    if prompts is not None and inputs is not None:
        raise InvalidRequest("give --prompts (images) or --inputs (tensors), not both")
    body: dict[str, Any] = {
        "model": model,
        "precision": precision,
        "selector": devices,
        "reference": reference,
        "prompt_count": prompt_count,
        "component": component,
        "seed": seed,
        "steps": steps,
        "runtime": runtime,
    }
    if prompts is not None:
        body["prompts"] = _read_prompts(prompts)
    if inputs is not None:
        body["inputs"] = inputs
    console = views.console_for(stderr=as_json)
    with _client() as client:
        created = client.post("/api/v1/validations", body)
        if not wait:
            if as_json:
                _print_json(created)
            else:
                typer.echo(f"validation job {created['id']}")
            return
        console.print(f"validation job {created['id']}: {len(created['runs'])} runs")
        views.watch(client, created["id"], console)
        found = client.get(f"/api/v1/jobs/{created['id']}/validation")
        if not found["complete"]:
            raise ServiceUnavailable(
                f"validation job {created['id']} is still {found['state']}; gave up waiting"
            )
        target = html or out / f"validation-{created['id']}.html"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(client.download(f"/api/v1/jobs/{created['id']}/validation.html"))
    report = ValidationReport.from_dict(found)
    if as_json:
        _print_json(found)
    else:
        console.print(verdict_table(report))
        matrix = agreement_table(report)
        if matrix is not None:
            console.print(matrix)
    console.print(f"report: {target}")
    if not report.passed:
        failed = ", ".join(f"{p.serial} ({p.reason})" for p in report.failed)
        typer.echo(
            f"error: validation failed on {len(report.failed)} of {len(report.phones)} phones: "
            f"{failed}",
            err=True,
        )
        raise typer.Exit(1)


@app.command()
def serve(
    role: Annotated[
        str, typer.Option(help="all, api (HTTP only) or ingest (worker only).")
    ] = "all",
) -> None:
    """Run the orchestrator: API on HEXFLEET_API_URL and the ingest worker, until Ctrl-C."""
    from hexfleet.orchestrator.server import serve as run_server

    if role not in ("all", "api", "ingest"):
        raise InvalidRequest(f"--role must be all, api or ingest, not {role!r}")
    run_server(Settings(), role)  # type: ignore[arg-type]


@app.command()
def up(
    phones: Annotated[str, typer.Option(help="SoCs of the virtual phones, cycled.")] = (
        "sm8450,sm8550,sm8650,sm8750"
    ),
    count: Annotated[int | None, typer.Option(min=1, max=64, help="How many phones.")] = None,
    compute: Annotated[str, typer.Option(help="htp (QNN HTP simulator) or cpu.")] = "htp",
    base_port: Annotated[int, typer.Option(min=1024, max=65000, help="First phone's port.")] = (
        18500
    ),
) -> None:
    """Bring the whole farm up on this machine: virtual phones, agent, API, ingest (no servers)."""
    from hexfleet.cli import farm

    settings = Settings()
    state = farm.up(settings, phones, count, compute, base_port, progress=typer.echo)
    typer.echo(
        f"farm up: {len(state.phone_serials)} phones; API {state.api_url}; "
        f"logs in {farm.logs_dir(settings)}; `hexfleet down` stops it"
    )


@app.command()
def down() -> None:
    """Stop the farm started by `hexfleet up` (phones, agent, API, ingest)."""
    from hexfleet.cli import farm

    stopped = farm.down(Settings())
    typer.echo(f"stopped {len(stopped)} processes" if stopped else "nothing was running")


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the images go.")] = Path(
        "demo-output"
    ),
    prompt: Annotated[str, typer.Option(help="What to draw.")] = (
        "a red circle on the left in a blue background"
    ),
    keep: Annotated[bool, typer.Option(help="Leave the farm running afterwards.")] = False,
    steps: Annotated[int, typer.Option(min=1, max=150, help="Denoising steps.")] = 10,
    scheduler: Annotated[str, typer.Option(help="ddim, euler or dpm++2m.")] = "dpm++2m",
) -> None:
    """Up + generate on four virtual phones (w8a16 on the HTP simulator) + benchmark + down."""
    from hexfleet.cli import demo as demo_run

    demo_run.run(Settings(), out, prompt, keep=keep, steps=steps, scheduler=scheduler)


def error_line(exc: HexfleetError) -> str:
    """The one line a hexfleet error is shown as: control characters a user typed (a newline in
    a path, an escape sequence) are shown escaped, so they can neither split nor paint it."""
    text = "".join(
        c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(exc)
    )
    return f"error: {text}"


def user_error(exc: BaseException) -> HexfleetError | None:
    """The hexfleet error a failure is for the user: itself, or for an OS error on a path they
    named (too long, not allowed, a file where a folder should be) an InvalidRequest naming it.
    None: a bug, whose traceback is wanted."""
    if isinstance(exc, HexfleetError):
        return exc
    if isinstance(exc, UsageError):  # a bad option or argument: one line, as any other
        where = exc.ctx.command_path if exc.ctx else "hexfleet"  # type: ignore[attr-defined]
        return InvalidRequest(f"{exc.format_message()} (see {where} --help)")  # type: ignore[attr-defined]
    if isinstance(exc, OSError) and exc.filename is not None:
        name = str(exc.filename)
        shown = name if len(name) <= 120 else f"{name[:60]}...{name[-40:]} ({len(name)} chars)"
        return InvalidRequest(f"{exc.strerror or exc}: {shown}")
    return None


def main() -> None:
    """Console-script entry point: run the app, turning hexfleet errors into one-line messages."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    except (HexfleetError, OSError, UsageError) as exc:
        if isinstance(exc, UsageError) and not exc.format_message():  # type: ignore[attr-defined]
            sys.exit(2)  # a group without its command: its help is printed already
        error = user_error(exc)
        if error is None:
            raise
        typer.echo(error_line(error), err=True)
        sys.exit(error.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
