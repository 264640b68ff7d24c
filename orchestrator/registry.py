"""The fleet's model registry: manifests from the model store, recorded in the database.

A model variant is registered once; registering the same manifest again is a no-op, registering
different content under the same name/version/variant is refused (bump the version instead).
Agents fetch the files by sha256 from the orchestrator's store (`/api/v1/artifacts/<sha256>`).
"""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.orm import Session

from hexfleet.errors import Conflict
from hexfleet.manifest import Manifest
from hexfleet.models.store import ModelStore
from hexfleet.orchestrator.db.schema import Artifact, Model, ModelArtifact


def manifest_sha256(manifest: Manifest) -> str:
    return hashlib.sha256(manifest.model_dump_json().encode()).hexdigest()


def register(session: Session, store: ModelStore, manifest: Manifest) -> Model:
    """Record `manifest` (whose files must all be in `store`, hash-checked) and its artifacts.

    Refused (Conflict) when the name/version/variant is registered with other content: then
    neither the store nor the database changes."""
    digest = manifest_sha256(manifest)
    existing = session.scalars(
        select(Model).where(
            Model.name == manifest.name,
            Model.version == manifest.version,
            Model.variant == manifest.variant,
        )
    ).first()
    if existing is not None:
        if existing.manifest_sha256 != digest:
            raise Conflict(
                f"{manifest.ref} is already registered with other content; "
                "register it under a new version"
            )
        store.save(manifest)
        return existing
    store.save(manifest)
    model = Model(
        name=manifest.name,
        version=manifest.version,
        precision=manifest.precision,
        variant=manifest.variant,
        manifest_sha256=digest,
        manifest=manifest.model_dump(mode="json"),
    )
    for ref in manifest.files():
        if session.get(Artifact, ref.sha256) is None:
            session.add(Artifact(sha256=ref.sha256, size=ref.size))
        model.artifacts.append(ModelArtifact(sha256=ref.sha256, name=ref.name))
    session.add(model)
    session.commit()
    return model


def sync_from_store(session: Session, store: ModelStore) -> list[Model]:
    """Register every manifest of the local store (what `hexfleet serve` does at start-up)."""
    return [register(session, store, manifest) for manifest in store.list()]
