"""The host cache's piece digests: the sha256 of each PIECE_BYTES piece of a file, computed in the
pass that checks the file against its name, whatever sizes the bytes arrive in."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from waiting import free_port

from hexfleet.device_agent.host_cache import PIECE_BYTES, HostCache, PieceHashes
from hexfleet.manifest import FileRef

DATA = os.urandom(2 * PIECE_BYTES + 12_345)


def pieces_of(data: bytes) -> list[str]:
    starts = range(0, len(data), PIECE_BYTES)
    return [hashlib.sha256(data[i : i + PIECE_BYTES]).hexdigest() for i in starts]


@pytest.mark.parametrize("feed", [1 << 20, PIECE_BYTES, PIECE_BYTES + 1, 65_537, len(DATA)])
def test_pieces_do_not_depend_on_how_the_bytes_arrive(feed: int) -> None:
    hashes = PieceHashes()
    for start in range(0, len(DATA), feed):
        hashes.update(DATA[start : start + feed])
    assert hashes.finish() == (hashlib.sha256(DATA).hexdigest(), pieces_of(DATA))


def test_an_empty_file_is_one_empty_piece_and_a_whole_number_of_pieces_no_more() -> None:
    empty = hashlib.sha256(b"").hexdigest()
    assert PieceHashes().finish() == (empty, [empty])
    exact = PieceHashes()
    exact.update(DATA[: 2 * PIECE_BYTES])
    assert exact.finish()[1] == pieces_of(DATA[: 2 * PIECE_BYTES])


def test_a_local_file_is_checked_once_and_its_pieces_kept(tmp_path: Path) -> None:
    cache = HostCache(tmp_path / "agent-cache", f"http://127.0.0.1:{free_port()}", None)
    try:
        sha = hashlib.sha256(DATA).hexdigest()
        (cache.root / sha).write_bytes(DATA)
        ref = FileRef(name="unet.onnx.data", sha256=sha, size=len(DATA))
        assert cache.pieces(ref) == pieces_of(DATA)
        assert cache.path(ref) == cache.root / sha
        cache.forget(ref)
        assert not (cache.root / sha).exists()
    finally:
        cache.close()
