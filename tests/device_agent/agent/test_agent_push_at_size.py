"""Pushing a model at SD 1.5's size (w8a16: about a gigabyte) to a virtual phone: pushed once and
verified on the phone (a file larger than a piece piece by piece, while it is still arriving),
nothing pushed the second time, a link dropped mid-file retried without a partial file left in
the cache, bytes that hash wrong never cached, and a phone whose disk has no room refused in one
line.

CI pushes a twelfth of the real size through the same code; `--real-size` adds the real one. The
model's bytes are random, generated here, and sit in the agent's host cache as a fetch from the
orchestrator would leave them (the host cache's URL answers nothing: a fetch would fail the test).
`bench/push_at_size.py` measures the throughput against the adb binary's.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_support import shell_commands, synced, watch_phone
from virtual_phone_support import AdbServer
from waiting import free_port, wait_until

from hexfleet.device_agent.host_cache import PIECE_BYTES, HostCache
from hexfleet.device_agent.phone import DD_BLOCK, cache_path
from hexfleet.device_agent.phone import Phone as AgentPhone
from hexfleet.device_agent.push import PUSH_ATTEMPTS, RESERVE_BYTES, ArtifactPusher
from hexfleet.errors import ArtifactMismatch, DeviceFull, DeviceLost
from hexfleet.manifest import FileRef
from hexfleet.models.store import sha256_file
from hexfleet.runner_spec import CACHE_DIR
from hexfleet.virtual_phone.fleet import ThreadedFleet
from hexfleet.virtual_phone.phone import VirtualPhone
from hexfleet.virtual_phone.storage import Capacity

MB = 1_000_000
# SD 1.5 at w8a16, a byte per weight: the UNet's external data, the text encoder, the VAE decoder.
SD15_W8A16 = {
    "unet.onnx.data": 860 * MB,
    "text_encoder.onnx": 123 * MB,
    "vae_decoder.onnx": 49 * MB,
}
CI_SCALE = 12
CHUNK = 8 * MB


def write_random(folder: Path, name: str, size: int) -> FileRef:
    """`size` random bytes at `folder/<their sha256>`, where the host cache keeps a fetched file."""
    digest = hashlib.sha256()
    staging = folder / f".{name}"
    with staging.open("wb") as handle:
        for start in range(0, size, CHUNK):
            chunk = os.urandom(min(CHUNK, size - start))
            digest.update(chunk)
            handle.write(chunk)
    staging.rename(folder / digest.hexdigest())
    return FileRef(name=name, sha256=digest.hexdigest(), size=size)


@pytest.fixture
def local_cache(tmp_path: Path) -> Iterator[HostCache]:
    cache = HostCache(tmp_path / "agent-cache", f"http://127.0.0.1:{free_port()}", None)
    yield cache
    cache.close()


@pytest.fixture(
    params=[
        pytest.param(CI_SCALE, id="twelfth"),
        pytest.param(1, id="real-size", marks=pytest.mark.real_size),
    ]
)
def model(request: pytest.FixtureRequest, local_cache: HostCache) -> list[FileRef]:
    """The model's files, largest first (the UNet's data is pushed first)."""
    return [
        write_random(local_cache.root, name, size // request.param)
        for name, size in SD15_W8A16.items()
    ]


@pytest.fixture
def ci_model(local_cache: HostCache) -> list[FileRef]:
    return [
        write_random(local_cache.root, name, size // CI_SCALE) for name, size in SD15_W8A16.items()
    ]


def on_phone(phone: VirtualPhone, name: str) -> Path:
    return phone.fs.resolve(f"{CACHE_DIR}/{name}").host


def cache_listing(phone: VirtualPhone) -> list[str]:
    folder = phone.fs.resolve(CACHE_DIR).host
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def assert_cached_whole(phone: VirtualPhone, agent_phone: AgentPhone, refs: list[FileRef]) -> None:
    """The cache holds exactly `refs`, each hashing to its name on the phone: no `.part`."""
    assert cache_listing(phone) == sorted(ref.sha256 for ref in refs)
    for ref in refs:
        assert agent_phone.sha256(cache_path(ref.sha256)) == ref.sha256


def hashed_pieces(caplog: pytest.LogCaptureFixture) -> dict[str, list[int]]:
    """The pieces the phone hashed with `dd ... | sha256sum`, by file name: their first blocks."""
    found: dict[str, list[int]] = {}
    for command in shell_commands(caplog):
        for part in command.split("; "):
            if part.startswith("dd "):
                words = dict(word.split("=", 1) for word in part.split() if "=" in word)
                found.setdefault(words["if"].split("/")[-1], []).append(int(words["skip"]))
    return found


def every_piece(ref: FileRef) -> list[int]:
    return [index * PIECE_BYTES // DD_BLOCK for index in range(-(-ref.size // PIECE_BYTES))]


def test_a_model_at_size_is_pushed_verified_on_the_phone_and_then_pushes_nothing(
    agent_phone: AgentPhone,
    local_cache: HostCache,
    phone: VirtualPhone,
    model: list[FileRef],
    caplog: pytest.LogCaptureFixture,
) -> None:
    total = sum(ref.size for ref in model)
    watch_phone(caplog)
    first = ArtifactPusher(agent_phone, local_cache).ensure(model)
    assert (first.pushed_files, first.pushed_bytes, first.link_retries) == (3, total, 0)
    assert 0 < first.verify_seconds < first.push_seconds
    # Files larger than a piece are hashed on the phone piece by piece, each piece once; the
    # others whole, with sha256sum.
    large = [ref for ref in model if ref.size > PIECE_BYTES]
    assert large[0] == model[0], "the UNet's data is hashed piece by piece"
    assert hashed_pieces(caplog) == {f"{ref.sha256}.part": every_piece(ref) for ref in large}
    hashed = [c for c in shell_commands(caplog) if c.startswith("sha256sum ")]
    assert [c.split("/")[-1] for c in hashed] == [
        f"{ref.sha256}.part" for ref in model if ref not in large
    ]
    assert_cached_whole(phone, agent_phone, model)

    # A new agent (its listing not trusted yet) lists the phone and pushes nothing.
    second = ArtifactPusher(agent_phone, local_cache).ensure(model)
    assert (second.pushed_files, second.pushed_bytes, second.cached_files) == (0, 0, 3)
    assert second.listed


def test_a_link_dropped_mid_push_of_the_large_file_is_retried_without_a_partial_left(
    agent_phone: AgentPhone,
    local_cache: HostCache,
    phone: VirtualPhone,
    ci_model: list[FileRef],
    caplog: pytest.LogCaptureFixture,
) -> None:
    unet = ci_model[0]
    watch_phone(caplog)
    phone.faults.drop_after_bytes(unet.size // 2)  # the listing and df take a few KB first
    report = ArtifactPusher(agent_phone, local_cache).ensure(ci_model)
    assert (report.pushed_files, report.link_retries) == (3, 1)
    sends = [path for request, path in synced(caplog) if request == "SEND"]
    assert [path.split("/")[-1].split(",")[0] for path in sends] == [
        f"{ref.sha256}.part" for ref in [unet, *ci_model]
    ], "the UNet pushed twice, from its start, then the others once"
    assert_cached_whole(phone, agent_phone, ci_model)


def test_the_large_file_is_verified_on_the_phone_while_it_is_still_arriving(
    agent_phone: AgentPhone, local_cache: HostCache, phone: VirtualPhone, ci_model: list[FileRef]
) -> None:
    """With the link at 40 MB/s the UNet's data takes about two seconds: its first pieces are
    hashed on the phone and found right before the transfer ends, so little is left after."""
    unet = ci_model[0]
    phone.faults.limit_bandwidth(40.0)
    report = ArtifactPusher(agent_phone, local_cache).ensure([unet])
    assert report.pushed_files == 1
    assert report.verified_in_flight_bytes >= 2 * PIECE_BYTES, report
    assert report.verify_seconds < report.push_seconds / 4, report
    assert_cached_whole(phone, agent_phone, [unet])


def test_a_large_file_whose_pieces_hash_wrong_is_pushed_again_then_refused_and_never_cached(
    agent_phone: AgentPhone,
    local_cache: HostCache,
    phone: VirtualPhone,
    ci_model: list[FileRef],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The host's copy goes bad after the host checked it (its piece digests are of the good
    bytes): the phone's pieces do not match them, the file is pushed once more, then refused;
    no `.part` stays and the host forgets its copy."""
    unet = ci_model[0]
    local = local_cache.path(unet)
    with local.open("r+b") as handle:  # one byte in the third piece, same size
        handle.seek(2 * PIECE_BYTES + 5)
        byte = handle.read(1)
        handle.seek(2 * PIECE_BYTES + 5)
        handle.write(bytes([byte[0] ^ 0xFF]))
    watch_phone(caplog)
    with pytest.raises(ArtifactMismatch, match=unet.sha256[:12]):
        ArtifactPusher(agent_phone, local_cache).ensure([unet])
    sends = [path for request, path in synced(caplog) if request == "SEND"]
    assert len(sends) == PUSH_ATTEMPTS, "pushed again once, then given up"
    assert cache_listing(phone) == [], "neither the file nor a .part is in the cache"
    assert not local.exists(), "the host's bad copy is dropped, to be fetched again"


def test_a_phone_gone_for_longer_than_the_wait_is_device_lost_and_keeps_no_partial(
    adb_server: AdbServer,
    agent_phone: AgentPhone,
    local_cache: HostCache,
    phone: VirtualPhone,
    fleet: ThreadedFleet,
    ci_model: list[FileRef],
) -> None:
    unet = ci_model[0]
    partial = on_phone(phone, f"{unet.sha256}.part")

    def switch_off_mid_file() -> None:
        wait_until(lambda: partial.exists() and partial.stat().st_size > 0, 60, "the push")
        fleet.call(phone.go_offline())

    phone.faults.limit_bandwidth(35.0)  # the UNet's data takes two seconds: time to cut it
    cutter = threading.Thread(target=switch_off_mid_file)
    cutter.start()
    pusher = ArtifactPusher(agent_phone, local_cache, reconnect_s=1.0)
    with pytest.raises(DeviceLost, match=phone.serial):
        pusher.ensure(ci_model)
    cutter.join(timeout=10)
    assert cache_listing(phone) == [], "the phone kept a partial file"

    phone.faults.clear_link()
    fleet.call(phone.come_online())
    again = AgentPhone(adb_server.connect(phone.serial))
    report = ArtifactPusher(again, local_cache).ensure(ci_model)
    assert report.pushed_files == 3
    assert_cached_whole(phone, again, ci_model)


def test_a_phone_without_room_is_refused_in_one_line_before_anything_moves(
    agent_phone: AgentPhone,
    local_cache: HostCache,
    phone: VirtualPhone,
    ci_model: list[FileRef],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Free space is read with a fixed `df -k /data`; too little of it is DeviceFull naming the
    figures, with the phone's cache and the host's store as they were."""
    other = write_random(local_cache.root, "other.onnx", 2 * MB)
    ArtifactPusher(agent_phone, local_cache).ensure([other])
    incoming = sum(ref.size for ref in ci_model)
    used = phone.storage.usage().used - phone.storage.capacity.others_bytes
    # Room for the model and the reserve, but 10 MB short, even with the other model evicted.
    phone.storage.capacity = Capacity(used + incoming + RESERVE_BYTES - 10 * MB, others_bytes=0)

    watch_phone(caplog)
    with pytest.raises(DeviceFull) as refused:
        ArtifactPusher(agent_phone, local_cache).ensure(ci_model)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"{phone.serial}: no room on the phone for {incoming / MB:.0f} MB")
    assert "free on /data (+2 MB hexfleet can evict)" in message
    assert "df -k /data" in shell_commands(caplog)
    assert not [request for request, _ in synced(caplog) if request == "SEND"]
    assert not [c for c in shell_commands(caplog) if c.startswith("rm ")], "nothing evicted"
    assert cache_listing(phone) == [other.sha256]
    for ref in [other, *ci_model]:  # the host's store: every file there, whole
        assert sha256_file(local_cache.path(ref)) == ref.sha256


def test_files_the_run_does_not_need_are_evicted_when_the_disk_is_short_of_room(
    agent_phone: AgentPhone, local_cache: HostCache, phone: VirtualPhone, ci_model: list[FileRef]
) -> None:
    """Within the cache's quota, but not within the disk: the least recently used file goes."""
    old, recent = (write_random(local_cache.root, f"{n}.onnx", 20 * MB) for n in ("old", "new"))
    pusher = ArtifactPusher(agent_phone, local_cache)
    pusher.ensure([old])
    pusher.ensure([recent])
    when = os.stat(on_phone(phone, recent.sha256)).st_mtime - 3600
    os.utime(on_phone(phone, old.sha256), (when, when))
    incoming = sum(ref.size for ref in ci_model)
    used = phone.storage.usage().used - phone.storage.capacity.others_bytes
    phone.storage.capacity = Capacity(used + incoming + RESERVE_BYTES - 10 * MB, others_bytes=0)

    report = ArtifactPusher(agent_phone, local_cache).ensure(ci_model)
    assert report.evicted == [old.sha256]
    assert_cached_whole(phone, agent_phone, [recent, *ci_model])
    assert phone.storage.usage().free >= RESERVE_BYTES - 1 * MB


def test_a_push_the_disk_refuses_midway_is_device_full_and_leaves_no_file(
    agent_phone: AgentPhone, local_cache: HostCache, phone: VirtualPhone, ci_model: list[FileRef]
) -> None:
    """Should the disk fill between the check and the push (another app writing), the phone's
    `No space left on device` is DeviceFull, not a lost link to retry."""
    unet = ci_model[0]
    used = phone.storage.usage().used - phone.storage.capacity.others_bytes
    phone.storage.capacity = Capacity(used + unet.size // 2, others_bytes=0)
    target = f"{cache_path(unet.sha256)}.part"
    with pytest.raises(DeviceFull, match="No space left on device"):
        agent_phone.push(local_cache.path(unet), target)
    # As adbd, the phone answers FAIL first, then swallows the rest and removes the file.
    wait_until(lambda: cache_listing(phone) == [], 10, "the phone to remove the refused file")
    assert agent_phone.shell("echo", "still connected") == (0, "still connected\n", "")
