"""`hexfleet demo`: the product in one command — a farm of four virtual Snapdragon phones generates
one prompt with the quantized tiny model on the QNN HTP simulator, benchmarks its UNet, prints the
results, saves the images, and tears the farm down.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console

from hexfleet.cli import farm, views
from hexfleet.cli.client import ApiClient
from hexfleet.errors import DeviceError, NotFound
from hexfleet.models.quantize import quantize_model
from hexfleet.models.registration import register_tiny_sd
from hexfleet.models.store import ModelStore
from hexfleet.settings import Settings

PHONES = "sm8450,sm8550,sm8650,sm8750"
PRECISION = "w8a16"


def ensure_model(store: ModelStore, console: Console) -> None:
    """tiny-sd FP32 from the committed weights, and its w8a16 quantization, in the store."""
    try:
        fp32 = store.load("tiny-sd")
    except NotFound:
        console.print("registering tiny-sd (FP32) from models/tiny_sd/weights")
        fp32 = register_tiny_sd(store)
    try:
        store.load("tiny-sd", version=fp32.version, precision=PRECISION)
    except NotFound:
        console.print(f"quantizing tiny-sd to {PRECISION} (calibrated on real prompts)")
        quantize_model(store, fp32, PRECISION)  # type: ignore[arg-type]


def run(
    settings: Settings,
    out: Path,
    prompt: str,
    keep: bool = False,
    steps: int = 10,
    scheduler: str = "dpm++2m",
) -> None:
    console = views.console_for()
    started = time.monotonic()
    ensure_model(ModelStore.from_settings(settings), console)
    farm.up(settings, PHONES, compute="htp", progress=console.print)
    try:
        with ApiClient.from_settings(settings) as client:
            created = client.post(
                "/api/v1/jobs",
                {
                    "kind": "generate",
                    "model": "tiny-sd",
                    "precision": PRECISION,
                    "selector": "all",
                    "params": {
                        "prompts": [prompt],
                        "seed": 0,
                        "runtime": "htp",
                        "steps": steps,
                        "scheduler": scheduler,
                    },
                },
            )
            console.print(f"generate job {created['id']} on {len(created['runs'])} phones")
            job = views.watch(client, created["id"], console)
            console.print(views.runs_table(job))
            written = views.save_results(client, job, out)
            console.print(f"{len(written)} files in {out}")
            bench = client.post(
                "/api/v1/jobs",
                {
                    "kind": "benchmark",
                    "model": "tiny-sd",
                    "precision": PRECISION,
                    "selector": "all",
                    "params": {"component": "unet", "iterations": 5, "warmup": 1, "runtime": "htp"},
                },
            )
            result = views.watch(client, bench["id"], console)
            console.print(views.bench_table(result))
        failed = [j for j in (job, result) if j["state"] != "succeeded"]
        if failed:
            raise DeviceError(f"demo job {failed[0]['id']} {failed[0]['state']}")
        console.print(
            f"demo finished in {time.monotonic() - started:.0f} s "
            "(timings from the QNN HTP simulator: simulated, not device timings)"
        )
    finally:
        if not keep:
            farm.down(settings)
