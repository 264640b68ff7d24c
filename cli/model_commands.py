"""`hexfleet models ...`: list, train, quantize, compile, evaluate, import and sample models.

Settings are read here, once, and passed down; errors are hexfleet errors that the root CLI
prints as one line with their exit code.
"""

from __future__ import annotations

import json
import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from hexfleet.cli import views
from hexfleet.errors import InvalidRequest, NotFound
from hexfleet.manifest import PRECISIONS, Manifest, check_name
from hexfleet.models.runtime import HTP_ARCHS, RUNTIMES, Runtime, check_htp_arch
from hexfleet.models.schedulers import SCHEDULERS
from hexfleet.models.store import ModelStore
from hexfleet.progress import StageCallback
from hexfleet.settings import Settings

models_app = typer.Typer(
    help="Manage the model zoo: train, quantize, compile, evaluate, import.",
    no_args_is_help=True,
)

ModelName = Annotated[str, typer.Argument(help="Model name, e.g. tiny-sd.")]
Precision = Annotated[str, typer.Option(help=f"One of {', '.join(PRECISIONS)}.")]
Version = Annotated[str | None, typer.Option(help="Model version (default: the latest).")]
HtpArch = Annotated[str | None, typer.Option(help=f"Hexagon arch: {', '.join(HTP_ARCHS)}.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]
Threads = Annotated[int | None, typer.Option(help="CPU threads for ONNX Runtime.")]
LocalRuntime = Annotated[str, typer.Option(help="cpu or htp (QNN HTP simulator).")]
Steps = Annotated[int | None, typer.Option(min=1, max=150, help="Sampling steps.")]
Scheduler = Annotated[str | None, typer.Option(help=", ".join(SCHEDULERS))]
Guidance = Annotated[float | None, typer.Option(min=0, max=30, help="Guidance scale.")]


def _store() -> ModelStore:
    settings = Settings()
    settings.ensure_data_dir()
    store = ModelStore.from_settings(settings)
    from hexfleet.models.registration import sync_tiny_sd

    sync_tiny_sd(store)
    return store


def _load(
    store: ModelStore,
    name: str,
    version: str | None,
    precision: str,
    htp_arch: str | None = None,
) -> Manifest:
    if precision not in PRECISIONS:
        raise InvalidRequest(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return store.load(check_name("model name", name), version, precision, htp_arch)


def _for_run(
    store: ModelStore,
    name: str,
    version: str | None,
    precision: str,
    runtime: str,
    htp_arch: str | None,
) -> Manifest:
    """The variant to run: a context compiled for `htp_arch` if there is one, else the QDQ."""
    if runtime == "htp" and htp_arch is not None and precision != "fp32":
        try:
            return _load(store, name, version, precision, htp_arch)
        except NotFound:
            pass
    return _load(store, name, version, precision)


def _runtime(value: str) -> Runtime:
    if value not in RUNTIMES:
        raise InvalidRequest(f"runtime must be one of {', '.join(RUNTIMES)}, not {value!r}")
    return value  # type: ignore[return-value]


def _scheduler(value: str | None) -> str | None:
    if value is not None and value.lower() not in SCHEDULERS:
        raise InvalidRequest(f"unknown scheduler {value!r}; choose one of {', '.join(SCHEDULERS)}")
    return value


def _print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2))


def _progress(label: str) -> Progress:
    """A progress bar on stderr, only when stderr is a terminal."""
    console = Console(stderr=True)
    return Progress(
        TextColumn(label),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )


def _stage_bars(bar: Progress) -> StageCallback:
    """A progress callback drawing one bar per stage ("unet: check" and "unet: store" share the
    "unet" bar)."""
    tasks: dict[str, TaskID] = {}

    def on_stage(stage: str, done: int, total: int) -> None:
        key = stage.split(":")[0]
        if key not in tasks:
            tasks[key] = bar.add_task(stage, total=total)
        bar.update(tasks[key], description=stage, completed=done, total=total)

    return on_stage


@contextmanager
def _measured(step: str) -> Iterator[None]:
    """Print on stderr how long `step` took and this process's peak memory (resident set) once
    it finished: a step on a real-size model takes minutes and gigabytes."""
    start = time.perf_counter()
    yield
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    typer.echo(f"{step}: {seconds:.1f} s, peak memory (RSS) {peak / 2**30:.2f} GiB", err=True)


@models_app.command("list")
def list_models(as_json: JsonFlag = False) -> None:
    """Show every model variant in the local store."""
    manifests = _store().list()
    if as_json:
        _print_json(
            [
                {
                    "ref": m.ref,
                    "precision": m.precision,
                    "htp_arch": m.htp_arch,
                    "bytes": m.total_size(),
                    "image_size": m.image_size,
                    "parent": m.parent,
                    "source": m.source,
                }
                for m in manifests
            ]
        )
        return
    if not manifests:
        typer.echo("no models yet: hexfleet models train tiny-sd, or hexfleet models import PATH")
        return
    views.console_for().print(views.models_table(manifests))


@models_app.command()
def train(
    model: ModelName,
    minutes: Annotated[float, typer.Option(help="Wall-clock budget.")] = 55.0,
    seed: int = 0,
    threads: int = 2,
    resume: bool = False,
) -> None:
    """Train tiny-sd on this machine's CPU (needs the `train` extra: torch)."""
    if model != "tiny-sd":
        raise InvalidRequest(f"only tiny-sd is trained here, not {model!r}")
    # Before torch loads OpenMP: spinning threads made steps 3-10x slower on a shared machine.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        from hexfleet.models.tiny_sd import train as tiny_train
    except ImportError as err:
        raise InvalidRequest(
            f"training needs torch ({err.name} is missing): install the train extra, "
            "pip install -e '.[train]'"
        ) from err
    argv = ["--minutes", str(minutes), "--seed", str(seed), "--threads", str(threads)]
    tiny_train.main([*argv, "--resume"] if resume else argv)
    from hexfleet.models.registration import register_tiny_sd

    typer.echo(f"registered {register_tiny_sd(_store()).ref}")


@models_app.command()
def register(
    model: ModelName,
    source: Annotated[
        Path | None, typer.Option("--from", help="Export folder (default: models/tiny_sd).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """(Re-)register tiny-sd's exported FP32 weights (weights/*.onnx + info.json) in the store."""
    from hexfleet.models.registration import TINY_SD_DIR, register_tiny_sd

    if model != "tiny-sd":
        raise InvalidRequest(f"only tiny-sd registers from an export; use 'import' for {model!r}")
    manifest = register_tiny_sd(_store(), source or TINY_SD_DIR)
    if as_json:
        _print_json(json.loads(manifest.model_dump_json()))
        return
    typer.echo(f"registered {manifest.ref} ({manifest.total_size() / 1e6:.1f} MB)")


@models_app.command()
def quantize(
    model: ModelName,
    precision: Precision = "w8a16",
    version: Version = None,
    calibration_prompts: Annotated[int, typer.Option(help="Prompts to calibrate on.")] = 32,
    calibration_steps: Annotated[int | None, typer.Option(help="Steps per prompt.")] = None,
    prompts_file: Annotated[
        Path | None, typer.Option(help="Calibration prompts, one a line (default: training's).")
    ] = None,
    htp_arch: HtpArch = None,
    htp_check: Annotated[bool, typer.Option(help="Check each part on the HTP simulator.")] = True,
    threads: Threads = None,
    as_json: JsonFlag = False,
) -> None:
    """Quantize an FP32 model to QDQ w8a8/w8a16, calibrated on real prompts' activations."""
    from hexfleet.models.quantize import quantize_model

    if precision == "fp32":
        raise InvalidRequest("quantize to w8a8 or w8a16")
    store = _store()
    fp32 = _load(store, model, version, "fp32")
    prompts = None
    if prompts_file is not None:
        prompts = [line.strip() for line in prompts_file.read_text().splitlines() if line.strip()]
        if not prompts:
            raise InvalidRequest(f"{prompts_file} has no prompts")
    with _progress("quantize: {task.description}") as bar, _measured("quantize"):
        report = quantize_model(
            store,
            fp32,
            precision,  # type: ignore[arg-type]
            prompts=prompts,
            calibration_prompts=calibration_prompts,
            calibration_steps=calibration_steps,
            htp_arch=htp_arch,
            check_htp=htp_check,
            threads=threads,
            on_stage=_stage_bars(bar),
        )
    if as_json:
        _print_json(report.to_dict())
        return
    typer.echo(f"{report.manifest.ref}: {report.manifest.source} ({report.seconds:.0f} s)")
    for role, part in report.components.items():
        where = part.placement.summary() if part.placement else "not checked on HTP"
        htp = "" if part.htp_rel_error is None else f", HTP {part.htp_rel_error:.2%}"
        typer.echo(f"  {role}: rel. error CPU-QDQ {part.cpu_rel_error:.2%}{htp}; {where}")
        for node in part.placement.cpu_nodes if part.placement else []:
            typer.echo(f"    falls back to CPU: {node}")


@models_app.command(name="compile")
def compile_cmd(
    model: ModelName,
    htp_arch: Annotated[str, typer.Option(help=f"Hexagon arch: {', '.join(HTP_ARCHS)}.")] = "73",
    precision: Precision = "w8a16",
    version: Version = None,
    finalization_mode: Annotated[
        str | None,
        typer.Option(
            help="QNN graph finalization: 1 prepares fastest (SD 1.5's VAE decoder needs it on "
            "24 GB), 2 and 3 optimize more; default: QNN's."
        ),
    ] = None,
    threads: Threads = None,
    as_json: JsonFlag = False,
) -> None:
    """Compile a quantized model to QNN context binaries for one Hexagon arch."""
    from hexfleet.models.compile import compile_model

    store = _store()
    check_htp_arch(htp_arch)
    quantized = _load(store, model, version, precision)
    with _progress("compile: {task.description}") as bar, _measured("compile"):
        report = compile_model(
            store,
            quantized,
            htp_arch,
            threads,
            on_stage=_stage_bars(bar),
            finalization=finalization_mode,
        )
    summary = report.to_dict()
    if as_json:
        _print_json(summary)
        return
    typer.echo(f"{report.manifest.ref} ({summary['soc']})")
    for role, part in report.components.items():
        typer.echo(
            f"  {role}: compiled in {part.compile_s:.2f} s; session from context "
            f"{part.context_load_s * 1000:.0f} ms vs from QDQ {part.qdq_load_s * 1000:.0f} ms "
            f"({part.qdq_load_s / part.context_load_s:.0f}x)"
        )


@models_app.command()
def evaluate(
    model: ModelName,
    precision: Precision = "fp32",
    version: Version = None,
    runtime: LocalRuntime = "cpu",
    htp_arch: HtpArch = None,
    steps: Steps = None,
    prompts: Annotated[int, typer.Option(help="Held-out prompts to generate.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the first prompt (then +1 each).")] = 0,
    scheduler: Scheduler = None,
    guidance: Guidance = None,
    threads: Threads = None,
    as_json: JsonFlag = False,
) -> None:
    """Prompt accuracy on held-out prompts (and PSNR against FP32 for quantized models)."""
    from hexfleet.models.evaluate import evaluate as run_evaluation

    store = _store()
    manifest = _for_run(store, model, version, precision, runtime, htp_arch)
    chosen_runtime, chosen_scheduler = _runtime(runtime), _scheduler(scheduler)
    with _progress(f"evaluating {manifest.ref} on {runtime}") as bar:
        task = bar.add_task("images", total=prompts)
        result = run_evaluation(
            store,
            manifest,
            runtime=chosen_runtime,
            htp_arch=htp_arch,
            steps=steps,
            prompts=prompts,
            seed=seed,
            scheduler=chosen_scheduler,
            guidance=guidance,
            threads=threads,
            on_image=lambda done, total: bar.update(task, completed=done),
        )
    summary = result.to_dict()
    if as_json:
        _print_json(summary)
        return
    accuracy = result.prompt_accuracy
    typer.echo(f"{result.model} on {runtime}, {result.steps} steps {result.scheduler}:")
    if accuracy is not None:
        typer.echo(f"  prompt accuracy {accuracy:.1%} over {result.prompts} held-out prompts")
    if result.psnr_db is not None:
        typer.echo(
            f"  PSNR vs FP32: mean {result.psnr_db['mean']:.1f} dB, min {result.psnr_db['min']:.1f}"
        )
    for failure in result.failures:
        typer.echo(f"  below threshold: {failure}")


@models_app.command(name="import")
def import_cmd(
    path: Annotated[Path, typer.Argument(help="Folder of an optimum SD export.")],
    name: Annotated[str | None, typer.Option(help="Store name (default: folder name).")] = None,
    version: str = "1",
    as_json: JsonFlag = False,
) -> None:
    """Import a Hugging Face optimum Stable Diffusion ONNX export into the store."""
    from hexfleet.models.sd_import import import_optimum_sd

    store = _store()
    with _progress("import: {task.description}") as bar, _measured("import"):
        manifest = import_optimum_sd(
            store, path, name=name, version=version, on_stage=_stage_bars(bar)
        )
    if as_json:
        _print_json(json.loads(manifest.model_dump_json()))
        return
    typer.echo(
        f"imported {manifest.ref}: {manifest.image_size}px, latent {manifest.latent_channels}x"
        f"{manifest.latent_size}x{manifest.latent_size}, {manifest.total_size() / 1e6:.1f} MB"
    )


@models_app.command()
def sample(
    model: ModelName,
    prompt: Annotated[str, typer.Argument(help="What to draw.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("sample.png"),
    precision: Precision = "fp32",
    version: Version = None,
    runtime: LocalRuntime = "cpu",
    htp_arch: HtpArch = None,
    steps: Steps = None,
    seed: int = 0,
    scheduler: Scheduler = None,
    guidance: Guidance = None,
    threads: Threads = None,
    as_json: JsonFlag = False,
) -> None:
    """Generate one image locally and write it as PNG (with per-stage timings)."""
    from hexfleet.models.pipeline import Pipeline, save_png

    store = _store()
    manifest = _for_run(store, model, version, precision, runtime, htp_arch)
    pipeline = Pipeline.from_manifest(
        manifest, store, _runtime(runtime), htp_arch=htp_arch, threads=threads
    )
    total = steps or manifest.default_steps
    pipeline.token_ids(prompt)  # a bad prompt fails before the progress bar starts
    scheduler = _scheduler(scheduler)
    with _progress(f"{manifest.ref} on {runtime}") as bar:
        task = bar.add_task("steps", total=total)
        result = pipeline.generate(
            prompt,
            seed=seed,
            steps=steps,
            scheduler=scheduler,
            guidance=guidance,
            on_step=lambda done, _total, _s: bar.update(task, completed=done),
        )
    save_png(result.image, out, result.metadata())
    summary = {"model": manifest.ref, "image": str(out), **result.metadata()}
    summary["timings"] = result.timings.to_dict()
    summary["timings_simulated"] = runtime == "htp"
    if as_json:
        _print_json(summary)
        return
    t = result.timings
    typer.echo(
        f"wrote {out} ({manifest.ref}, {runtime}): text encoder {t.text_encoder * 1000:.0f} ms, "
        f"UNet {sum(t.unet_steps):.2f} s for {len(t.unet_steps)} steps, "
        f"VAE {t.vae_decoder * 1000:.0f} ms, total {t.total:.2f} s"
    )


@models_app.command("build-sd15")
def build_sd15(
    out: Annotated[
        Path | None,
        typer.Option(help="Export folder (default: <data dir>/exports/sd15 or sd15-shrunk)."),
    ] = None,
    shrunk: Annotated[
        bool, typer.Option(help="The shrunk twin: same architecture, tiny channel counts.")
    ] = False,
    seed: int = 0,
    force: Annotated[bool, typer.Option(help="Rebuild even if the export is cached.")] = False,
    validate: Annotated[
        bool, typer.Option(help="optimum's check of each ONNX file against torch.")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Build SD 1.5's architecture with random weights and export it in optimum's layout
    (needs the export extra); then: hexfleet models import FOLDER."""
    from hexfleet.models.sd15.config import REAL, SHRUNK
    from hexfleet.models.sd15.export import build_and_export

    config = SHRUNK if shrunk else REAL
    settings = Settings()
    folder = out or settings.ensure_data_dir() / "exports" / config.name
    with _progress(f"{config.name}: {{task.description}}") as bar, _measured("build-sd15"):
        report = build_and_export(
            config, folder, seed=seed, force=force, validate=validate, on_stage=_stage_bars(bar)
        )
    if as_json:
        _print_json(report.to_dict())
        return
    how = "cached" if report.cached else f"built in {report.build_s:.0f} s, exported in "
    how += "" if report.cached else f"{report.export_s:.0f} s"
    typer.echo(f"{config.name} at {report.folder} ({how})")
    for role, count in report.parameters.items():
        typer.echo(f"  {role}: {count / 1e6:.1f} M parameters")
    for part, size in report.bytes_on_disk.items():
        typer.echo(f"  {part}/: {size / 1e6:.1f} MB")
    typer.echo(f"next: hexfleet models import {report.folder}")
