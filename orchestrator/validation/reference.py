"""The host reference: the FP32 variant of the validated model on this host's CPU EP, run on the
job's prompts or stored inputs. Computed once, by the ingest worker, and kept as blobs."""

from __future__ import annotations

import io

from PIL import Image as PILImage
from sqlalchemy.orm import Session

from hexfleet.manifest import Manifest
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.schema import Job, ValidationBlob
from hexfleet.orchestrator.validation.outputs import Outputs, png_array
from hexfleet.orchestrator.validation.storage import (
    REFERENCE_PREFIX,
    blob,
    blobs,
    from_npy,
    to_npy,
)

CPU_FP32 = "cpu-fp32"


def golden_serial(reference: str) -> str | None:
    """The reference phone's serial, or None when the reference is the host (cpu-fp32)."""
    return reference.removeprefix("serial=") if reference != CPU_FP32 else None


def fp32_manifest(store: ModelStore, manifest: Manifest) -> Manifest:
    """The FP32 variant of `manifest`'s model version: what the cpu-fp32 reference runs."""
    return store.load(manifest.name, manifest.version, "fp32")


def host_reference(
    session: Session, job: Job, manifest: Manifest, store: ModelStore
) -> tuple[Outputs, list[ValidationBlob]]:
    """The reference's outputs, and the blobs to store when they were computed now (none when
    they were stored already)."""
    stored = blobs(session, job.id, REFERENCE_PREFIX)
    computed = not stored
    if computed:
        fp32 = fp32_manifest(store, manifest)
        if job.spec["mode"] == "images":
            stored = _draw_images(job, fp32, store)
        else:
            stored = _run_component(session, job, fp32, store)
    outputs = Outputs()
    for name, data in stored.items():
        if job.spec["mode"] == "images":
            outputs.images[int(name.rsplit("-", 1)[1])] = png_array(data)
        else:
            outputs.tensors[name.removeprefix(REFERENCE_PREFIX)] = from_npy(data)
    new = [ValidationBlob(job_id=job.id, name=n, data=d) for n, d in stored.items()]
    return outputs, new if computed else []


def _draw_images(job: Job, fp32: Manifest, store: ModelStore) -> dict[str, bytes]:
    from hexfleet.models.pipeline import Pipeline

    spec = job.spec
    pipeline = Pipeline.from_manifest(fp32, store, "cpu", threads=1)
    drawn = {}
    for index, prompt in enumerate(spec["prompts"]):
        image = pipeline.generate(
            prompt,
            seed=spec["seed"],
            steps=spec["steps"],
            guidance=spec["guidance"],
            scheduler=spec["scheduler"],
        ).image
        buffer = io.BytesIO()
        PILImage.fromarray(image, mode="RGB").save(buffer, format="PNG")
        drawn[f"{REFERENCE_PREFIX}image-{index}"] = buffer.getvalue()
    return drawn


def _run_component(
    session: Session, job: Job, fp32: Manifest, store: ModelStore
) -> dict[str, bytes]:
    from hexfleet.models.runtime import open_session

    spec = job.spec
    graph = open_session(store.component_path(fp32.components[spec["component"]]), "cpu", threads=1)
    produced = {}
    for k in range(spec["input_count"]):
        feeds = {
            name: from_npy(blob(session, job.id, f"input-{k}/{name}"))
            for name in spec["input_names"]
        }
        for name, value in graph.run(feeds).items():
            produced[f"{REFERENCE_PREFIX}input-{k}:{name}"] = to_npy(value)
    return produced
