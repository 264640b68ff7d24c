"""The runner bundles the fleet runs: one per CPU ABI, recorded in the database.

A bundle's files are artifacts like model files (uploaded first, served to agents by sha256);
registering a bundle for an ABI replaces the previous one. Every run task carries every
registered bundle, and a job is refused at submit time when a phone it selects has an ABI with
no bundle: such a run could only fail.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from hexfleet.bundle import RunnerBundle
from hexfleet.errors import Conflict
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.schema import Artifact, RunnerBundleRow


def register_bundle(session: Session, store: ModelStore, bundle: RunnerBundle) -> RunnerBundleRow:
    """Record `bundle` for its ABI; every file must be in `store` with its size (uploaded first)."""
    for ref in bundle.files:
        path = store.blobs / ref.sha256
        if not path.is_file() or path.stat().st_size != ref.size:
            raise Conflict(
                f"bundle file {ref.name} ({ref.sha256[:12]}) is not in the store with its size; "
                "upload it first (PUT /api/v1/artifacts/<sha256>)"
            )
        if session.get(Artifact, ref.sha256) is None:
            session.add(Artifact(sha256=ref.sha256, size=ref.size))
    row = session.get(RunnerBundleRow, bundle.abi)
    if row is None:
        row = RunnerBundleRow(abi=bundle.abi, sha256=bundle.sha256, bundle={})
        session.add(row)
    row.sha256 = bundle.sha256
    row.bundle = bundle.model_dump(mode="json")
    session.commit()
    return row


def bundles(session: Session) -> dict[str, RunnerBundle]:
    """Every registered bundle by ABI (what a run task carries)."""
    rows = session.scalars(select(RunnerBundleRow).order_by(RunnerBundleRow.abi))
    return {row.abi: RunnerBundle.model_validate(row.bundle) for row in rows}


def check_abis(session: Session, abis: Iterable[str]) -> None:
    """Refuse a job whose phones include an ABI without a registered bundle."""
    registered = {row for row in session.scalars(select(RunnerBundleRow.abi))}
    missing = sorted({abi for abi in abis if abi and abi not in registered})
    if missing:
        raise Conflict(
            f"no runner is registered for ABI {missing[0]} (a selected phone's); register one: "
            f"hexfleet runners register --abi {missing[0]} FOLDER"
        )
