"""Content-addressed store and manifests: hashes checked on read, clear errors on bad input."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from hexfleet.errors import ArtifactMismatch, InvalidRequest, ModelError, NotFound
from hexfleet.manifest import Manifest, parse_manifest
from hexfleet.models.registration import load_onnx, register_tiny_sd
from hexfleet.models.store import ModelStore


def test_files_are_named_by_content(store: ModelStore, tmp_path: Path) -> None:
    source = tmp_path / "a.bin"
    source.write_bytes(b"hello")
    ref = store.put_file(source)
    again = store.put_file(source, name="b.bin")
    assert ref.sha256 == hashlib.sha256(b"hello").hexdigest() == again.sha256
    assert ref.size == 5 and again.name == "b.bin"
    assert store.blob_path(ref) == store.root / "blobs" / ref.sha256
    assert [p.name for p in (store.root / "blobs").iterdir()] == [ref.sha256]


def test_tiny_sd_registration(store: ModelStore, tiny_manifest: Manifest) -> None:
    assert tiny_manifest.ref == "tiny-sd/1/fp32"
    unet = tiny_manifest.components["unet"]
    assert [i.name for i in unet.inputs] == ["sample", "timestep", "encoder_hidden_states"]
    assert unet.inputs[0].shape == [2, 4, 8, 8]
    assert unet.outputs[0].name == "out_sample"
    assert tiny_manifest.tokenizer.kind == "word"
    assert tiny_manifest.scheduler["prediction_type"] == "v_prediction"
    assert tiny_manifest.scheduler["timestep_spacing"] == "trailing"
    assert store.load("tiny-sd") == tiny_manifest
    assert [m.ref for m in store.list()] == ["tiny-sd/1/fp32"]
    assert tiny_manifest.total_size() == sum(r.size for r in tiny_manifest.files())


def test_corrupted_blob_is_an_artifact_mismatch(store: ModelStore, tiny_manifest: Manifest) -> None:
    ref = tiny_manifest.components["unet"].file
    blob = store.root / "blobs" / ref.sha256
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    fresh = ModelStore(store.root)
    with pytest.raises(ArtifactMismatch, match="unet.onnx: stored blob .* hashes to"):
        fresh.component_path(tiny_manifest.components["unet"])
    blob.write_bytes(bytes(data[:50]))
    with pytest.raises(ArtifactMismatch, match="has 50 bytes"):
        ModelStore(store.root).blob_path(ref)


def test_manifest_naming_a_hash_the_store_lacks(store: ModelStore, tiny_manifest: Manifest) -> None:
    data = json.loads(tiny_manifest.model_dump_json())
    data["components"]["unet"]["file"]["sha256"] = "0" * 64
    tampered = Manifest.model_validate(data)
    with pytest.raises(NotFound, match="not in the model store"):
        store.save(tampered)
    with pytest.raises(NotFound):
        store.component_path(tampered.components["unet"])


def test_malformed_manifests_and_names(store: ModelStore, tiny_manifest: Manifest) -> None:
    data = json.loads(tiny_manifest.model_dump_json())
    data["components"]["unet"]["file"]["sha256"] = "not-a-hash"
    with pytest.raises(ModelError, match="not a valid model manifest"):
        parse_manifest(json.dumps(data))
    with pytest.raises(ModelError, match="components.unet.file.sha256: Value error"):
        parse_manifest(json.dumps(data))
    data["components"]["unet"]["file"]["sha256"] = "a" * 64
    del data["components"]["vae_decoder"]
    with pytest.raises(ModelError, match="missing components \\['vae_decoder'\\]"):
        parse_manifest(json.dumps(data))
    with pytest.raises(NotFound, match="no model named 'other'"):
        store.load("other")
    with pytest.raises(NotFound, match="has no w8a8 variant"):
        store.load("tiny-sd", precision="w8a8")
    with pytest.raises(InvalidRequest, match="model name"):
        store.load("../etc")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_onnx_is_refused_at_registration(
    store: ModelStore, tiny_layout: Path, tmp_path: Path, damage: str
) -> None:
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_layout, copy)
    info = json.loads((copy / "info.json").read_text())
    del info["components"]  # no hashes to compare: the ONNX check itself must refuse the file
    (copy / "info.json").write_text(json.dumps(info))
    unet = copy / "weights" / "unet.onnx"
    data = unet.read_bytes()
    unet.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"\x00garbage" * 100)
    with pytest.raises(ModelError, match="unet.onnx"):
        register_tiny_sd(store, copy)
    with pytest.raises(ModelError):
        load_onnx(unet)


def test_missing_export_says_how_to_get_one(store: ModelStore, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="hexfleet models train tiny-sd"):
        register_tiny_sd(store, tmp_path)


def test_weights_that_do_not_match_info_json(
    store: ModelStore, tiny_layout: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_layout, copy)
    info = json.loads((copy / "info.json").read_text())
    info["components"]["vae_decoder"]["sha256"] = "f" * 64
    (copy / "info.json").write_text(json.dumps(info))
    assert _contents(store) == {}
    with pytest.raises(
        ArtifactMismatch, match="vae_decoder.onnx does not match the sha256 in info.json"
    ):
        register_tiny_sd(store, copy)
    # The components checked before the mismatched one were not stored either.
    assert _contents(store) == {}


def _contents(store: ModelStore) -> dict[str, bytes]:
    if not store.root.exists():
        return {}
    return {
        str(p.relative_to(store.root)): p.read_bytes()
        for p in sorted(store.root.rglob("*"))
        if p.is_file()
    }


def test_manifest_whose_hash_does_not_match_its_file(
    store: ModelStore, tiny_manifest: Manifest
) -> None:
    """A manifest naming a stored blob with another file's size or hash is refused, unsaved."""
    data = json.loads(tiny_manifest.model_dump_json())
    data["version"] = "2"
    vae = data["components"]["vae_decoder"]["file"]
    data["components"]["unet"]["file"]["sha256"] = vae["sha256"]  # the unet's size, vae's blob
    before = _contents(store)
    with pytest.raises(ArtifactMismatch, match="unet.onnx: stored blob .* has .* bytes"):
        store.save(Manifest.model_validate(data))
    data["components"]["unet"]["file"]["size"] = vae["size"]
    blob = store.root / "blobs" / vae["sha256"]
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[::-1])  # same size, other bytes: replaced on disk
    before = _contents(store)
    with pytest.raises(ArtifactMismatch, match="unet.onnx: stored blob .* hashes to"):
        ModelStore(store.root).save(Manifest.model_validate(data))
    assert _contents(store) == before
    assert store.versions("tiny-sd") == ["1"]
