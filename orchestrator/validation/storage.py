"""Where a validation keeps what it compares: `validation_blobs` (the inputs it sent, the host
reference's outputs) and `validation_results` (one verdict row per phone, one per output)."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from hexfleet.errors import NotFound
from hexfleet.orchestrator.db.schema import ValidationBlob, ValidationResult

PHONE_ROW = "phone"  # validation_results.output of a phone's overall verdict
REFERENCE_PREFIX = "reference/"  # blob names of the host reference's outputs


def to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def blobs(session: Session, job_id: str, prefix: str) -> dict[str, bytes]:
    """A job's stored blobs whose names start with `prefix`, by name."""
    rows = session.scalars(
        select(ValidationBlob).where(
            ValidationBlob.job_id == job_id, ValidationBlob.name.startswith(prefix)
        )
    )
    return {b.name: b.data for b in rows}


def blob(session: Session, job_id: str, name: str) -> bytes:
    data = session.scalar(
        select(ValidationBlob.data).where(
            ValidationBlob.job_id == job_id, ValidationBlob.name == name
        )
    )
    if data is None:
        raise NotFound(f"validation job {job_id} has no stored {name}")
    return data


def stored_rows(session: Session, job_id: str) -> list[ValidationResult]:
    """A job's verdict rows, by phone, in the order they were written."""
    return list(
        session.scalars(
            select(ValidationResult)
            .where(ValidationResult.job_id == job_id)
            .order_by(ValidationResult.device_serial, ValidationResult.id)
        )
    )


def has_verdicts(session: Session, job_id: str) -> bool:
    found = session.scalar(
        select(ValidationResult.id).where(ValidationResult.job_id == job_id).limit(1)
    )
    return found is not None


def verdict_row(
    job_id: str,
    reference: str,
    serial: str,
    output: str,
    passed: bool,
    reason: str,
    scores: dict[str, Any],
) -> ValidationResult:
    """One row of `validation_results` (`output` is PHONE_ROW for the phone's own verdict)."""
    return ValidationResult(
        job_id=job_id,
        device_serial=serial,
        output=output,
        reference=reference,
        passed=passed,
        reason=reason,
        scores=plain(scores),
    )


def plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python numbers."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
