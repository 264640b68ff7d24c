"""The local content-addressed model store: blobs named by sha256, manifests by name/version.

Layout under `Settings.data_dir / "models"`: `blobs/<sha256>`, `manifests/<name>/<version>/
<variant>.json`, and `materialized/<sha256>/` (a component's files under their own names, for
ONNX files that reference neighbours). Every read checks the hash (ArtifactMismatch).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from hexfleet.errors import ArtifactMismatch, NotFound
from hexfleet.manifest import Component, FileRef, Manifest, check_name, parse_manifest
from hexfleet.settings import Settings

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Order "1.10" after "1.9": numeric parts compare as numbers."""
    return tuple(
        (0, int(p)) if p.isdigit() else (1, p) for p in version.replace("-", ".").split(".")
    )


class ModelStore:
    """Put files and manifests in; get verified paths and manifests out."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.manifests = root / "manifests"
        self.materialized = root / "materialized"
        self._verified: dict[str, tuple[int, int]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelStore:
        return cls(settings.data_dir / "models")

    # files -------------------------------------------------------------------------------

    def put_file(
        self, path: Path, name: str | None = None, on_bytes: Callable[[int], None] | None = None
    ) -> FileRef:
        """Copy a file in under its hash (a no-op if present) and return its reference;
        `on_bytes(n)` after each chunk of n bytes (a real-size UNet is 3.4 GB)."""
        self.blobs.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        size = 0
        with (
            path.open("rb") as source,
            tempfile.NamedTemporaryFile(dir=self.blobs, prefix=".incoming-", delete=False) as tmp,
        ):
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                size += len(chunk)
                tmp.write(chunk)
                if on_bytes:
                    on_bytes(len(chunk))
        sha = digest.hexdigest()
        target = self.blobs / sha
        if target.exists():
            os.unlink(tmp.name)
        else:
            os.chmod(tmp.name, 0o444)
            os.replace(tmp.name, target)
        return FileRef(name=name or path.name, sha256=sha, size=size)

    def blob_path(self, ref: FileRef) -> Path:
        """The stored file for a reference, its size and sha256 checked (once per change)."""
        path = self.blobs / ref.sha256
        if not path.is_file():
            raise NotFound(f"{ref.name} ({ref.sha256[:12]}) is not in the model store")
        stat = path.stat()
        # The size is compared before the cache: a verified blob is still the wrong file for a
        # reference that names it with another file's size.
        if stat.st_size != ref.size:
            raise ArtifactMismatch(
                f"{ref.name}: stored blob {ref.sha256[:12]} has {stat.st_size} bytes, "
                f"the manifest says {ref.size}"
            )
        if self._verified.get(ref.sha256) == (stat.st_size, stat.st_mtime_ns):
            return path
        actual = sha256_file(path)
        if actual != ref.sha256:
            raise ArtifactMismatch(
                f"{ref.name}: stored blob {ref.sha256[:12]} hashes to {actual[:12]}; "
                "the file is corrupt or was replaced"
            )
        self._verified[ref.sha256] = (stat.st_size, stat.st_mtime_ns)
        return path

    def component_path(self, component: Component) -> Path:
        """A path ONNX Runtime can open: the blob itself, or a folder with the extra files."""
        main = self.blob_path(component.file)
        if not component.extra_files:
            return main
        folder = self.materialized / component.file.sha256
        folder.mkdir(parents=True, exist_ok=True)
        for ref in (component.file, *component.extra_files):
            blob = main if ref is component.file else self.blob_path(ref)
            target = folder / ref.name
            if not target.exists():
                _link_or_copy(blob, target)
        return folder / component.file.name

    def file_paths(self, refs: list[FileRef]) -> dict[str, Path]:
        """Verified blob paths of a list of references, by their file names."""
        return {ref.name: self.blob_path(ref) for ref in refs}

    # manifests ---------------------------------------------------------------------------

    def _manifest_path(self, name: str, version: str, variant: str) -> Path:
        # Each part becomes a path part: plain names only, so no manifest lands outside the store.
        check_name("model name", name)
        check_name("version", version)
        check_name("variant", variant)
        return self.manifests / name / version / f"{variant}.json"

    def save(self, manifest: Manifest) -> Path:
        """Store a manifest whose files are all present (NotFound otherwise)."""
        for ref in manifest.files():
            self.blob_path(ref)
        path = self._manifest_path(manifest.name, manifest.version, manifest.variant)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(manifest.model_dump_json(indent=1))
        os.replace(tmp, path)
        return path

    def versions(self, name: str) -> list[str]:
        folder = self.manifests / check_name("model name", name)
        if not folder.is_dir():
            return []
        return sorted((p.name for p in folder.iterdir() if p.is_dir()), key=_version_key)

    def load(
        self,
        name: str,
        version: str | None = None,
        precision: str = "fp32",
        htp_arch: str | None = None,
    ) -> Manifest:
        """A manifest by name (latest version unless given), precision and optional arch."""
        versions = self.versions(name)
        if not versions:
            known = ", ".join(sorted(m.name for m in self.list())) or "none"
            raise NotFound(f"no model named {name!r} in the store (models: {known})")
        version = version or versions[-1]
        check_name("version", version)
        variant = precision if htp_arch is None else f"{precision}-v{htp_arch.removeprefix('v')}"
        path = self._manifest_path(name, version, variant)
        if not path.is_file():
            have = sorted(p.stem for p in path.parent.glob("*.json"))
            raise NotFound(f"{name}/{version} has no {variant} variant (it has {have})")
        return parse_manifest(path.read_text(), origin=str(path))

    def list(self) -> list[Manifest]:
        """Every stored manifest, by name, version and variant."""
        found = []
        if self.manifests.is_dir():
            for path in sorted(self.manifests.glob("*/*/*.json")):
                found.append(parse_manifest(path.read_text(), origin=str(path)))
        return sorted(found, key=lambda m: (m.name, _version_key(m.version), m.variant))


def _link_or_copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)
