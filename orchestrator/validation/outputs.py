"""What a validation compares: each phone's outputs (images, tensors) decoded from its runs."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from hexfleet.orchestrator.db.schema import Job, Run
from hexfleet.orchestrator.validation.storage import from_npy


@dataclass
class Outputs:
    """What one phone (or the host reference) produced, by output name."""

    images: dict[int, np.ndarray] = field(default_factory=dict)
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def png_array(png: bytes) -> np.ndarray:
    with PILImage.open(io.BytesIO(png)) as image:
        return np.asarray(image.convert("RGB"))


def phone_outputs(runs: Sequence[Run], runs_per_phone: int) -> Outputs:
    """A phone's images by prompt index, and its tensors as `input-<k>:<output name>`."""
    outputs = Outputs()
    for run in runs:
        for image in run.images:
            outputs.images[image.index] = png_array(image.png)
        k = run.slot % runs_per_phone  # slot = phone index x runs per phone + input index
        for name, encoded in run.result.get("tensors", {}).items():
            outputs.tensors[f"input-{k}:{name}"] = from_npy(base64.b64decode(encoded))
    return outputs


def stored_runs(session: Session, job: Job) -> list[Run]:
    """The job's runs and their images as the database holds them now. The worker compares in
    the transaction that stored the last result: a `job.runs` or `run.images` loaded before it
    (the submitter's `images=[]`, say) would miss the images just added by run id."""
    session.flush()
    return list(
        session.scalars(
            select(Run)
            .where(Run.job_id == job.id)
            .order_by(Run.slot)
            .options(selectinload(Run.images))
            .execution_options(populate_existing=True)
        )
    )


def runs_by_phone(runs: Sequence[Run]) -> dict[str, list[Run]]:
    """Each phone's runs (validation runs are never retried elsewhere: one attempt per slot)."""
    phones: dict[str, list[Run]] = {}
    for run in sorted(runs, key=lambda r: r.slot):
        phones.setdefault(run.device_serial or run.queue, []).append(run)
    return phones
