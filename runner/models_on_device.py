"""Opening a manifest's graphs from the phone's content-addressed cache (`cache/<sha256>`)."""

from __future__ import annotations

import time
from pathlib import Path

from hexfleet.manifest import Component
from hexfleet.models.pipeline import Pipeline
from hexfleet.models.prompt_tokenizer import load_tokenizer
from hexfleet.models.runtime import Session, open_session
from hexfleet.models.store import ModelStore
from hexfleet.runner.device import Device, with_device_faults
from hexfleet.runner_spec import RunnerSpec


class CacheStore(ModelStore):
    """The phone's cache seen as a model store: blobs are `cache/<sha256>`, checked on first use."""

    def __init__(self, cache: Path, scratch: Path) -> None:
        super().__init__(scratch)
        self.blobs = cache
        self.materialized = scratch / "materialized"


def cache_store(device: Device, spec: RunnerSpec, job_dir: Path) -> CacheStore:
    return CacheStore(device.path(spec.cache_dir), job_dir / ".scratch")


def open_component(
    store: CacheStore, component: Component, runtime: str, htp_arch: str | None
) -> Session:
    return open_session(
        store.component_path(component),
        runtime,  # type: ignore[arg-type]
        htp_arch=htp_arch,
        threads=1,
    )


def open_pipeline(device: Device, spec: RunnerSpec, store: CacheStore, runtime: str) -> Pipeline:
    """The manifest's three graphs on `runtime`, with the phone's NPU faults applied if any."""
    manifest = spec.manifest
    start = time.perf_counter()
    graphs = [
        open_component(store, manifest.components[role], runtime, spec.htp_arch)
        for role in ("text_encoder", "unet", "vae_decoder")
    ]
    graphs = with_device_faults(device, graphs)
    tokenizer = load_tokenizer(manifest.tokenizer, store.file_paths(manifest.tokenizer.files))
    return Pipeline(manifest, *graphs, tokenizer, load_seconds=time.perf_counter() - start)
