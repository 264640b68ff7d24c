"""ArtifactPusher on a virtual phone: push and verify on the phone, cache hits, LRU eviction under
a quota, a quota too small, a push cut in flight, a crashed push's leftovers and bytes that do not
hash to their name. At SD 1.5's size, and a phone short of room: test_agent_push_at_size.py.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from agent_support import opened, shell_commands, synced, watch_phone

from hexfleet.device_agent.host_cache import HostCache
from hexfleet.device_agent.phone import Phone as AgentPhone
from hexfleet.device_agent.phone import cache_path
from hexfleet.device_agent.push import LISTING_TRUST_S, PUSH_ATTEMPTS, TOUCH_AFTER_S, ArtifactPusher
from hexfleet.errors import ArtifactMismatch, InvalidRequest
from hexfleet.manifest import Manifest
from hexfleet.runner_spec import CACHE_DIR
from hexfleet.virtual_phone.phone import VirtualPhone

UNIT = 100_000


def on_disk(phone: VirtualPhone, sha256: str) -> Path:
    """Where the virtual phone keeps a cached file on the host (to check or age it)."""
    return phone.fs.resolve(cache_path(sha256)).host


def age(phone: VirtualPhone, sha256: str, seconds_ago: float) -> None:
    """Set a cached file's mtime, i.e. its last use as far as LRU is concerned."""
    when = time.time() - seconds_ago
    os.utime(on_disk(phone, sha256), (when, when))


def stale_file(phone: VirtualPhone, agent_phone: AgentPhone, seconds_ago: float) -> str:
    """A cached artifact of another model, last used `seconds_ago`."""
    content = os.urandom(UNIT)
    sha256 = hashlib.sha256(content).hexdigest()
    agent_phone.push_bytes(content, cache_path(sha256))
    age(phone, sha256, seconds_ago)
    return sha256


def cache_listing(phone: VirtualPhone) -> list[str]:
    return sorted(p.name for p in phone.fs.resolve(CACHE_DIR).host.iterdir())


def test_first_ensure_pushes_and_verifies_then_hits_cost_no_round_trip_until_stale(
    agent_phone: AgentPhone,
    host_cache: HostCache,
    phone: VirtualPhone,
    manifest: Manifest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [time.time()]
    pusher = ArtifactPusher(agent_phone, host_cache, clock=lambda: now[0])
    refs = manifest.files()
    watch_phone(caplog)
    first = pusher.ensure(refs)
    assert (first.pushed_files, first.pushed_bytes) == (len(refs), manifest.total_size())
    assert (first.cached_files, first.evicted, first.listed) == (0, [], True)
    hashed = " ".join(c for c in shell_commands(caplog) if c.startswith("sha256sum "))
    for ref in refs:
        assert f"{ref.sha256}.part" in hashed, f"{ref.name} was not hashed on the phone"
        assert agent_phone.sha256(cache_path(ref.sha256)) == ref.sha256
        assert hashlib.sha256(on_disk(phone, ref.sha256).read_bytes()).hexdigest() == ref.sha256
    assert cache_listing(phone) == sorted(ref.sha256 for ref in refs), "a .part was left"

    # A hit within the trusted listing's lifetime: nothing opened on the phone at all.
    caplog.clear()
    now[0] += LISTING_TRUST_S / 2
    hit = pusher.ensure(refs)
    assert (hit.pushed_files, hit.cached_files, hit.listed) == (0, len(refs), False)
    assert opened(caplog) == []

    # Later, the listing is listed again and files last used long ago are touched.
    for ref in refs:
        age(phone, ref.sha256, 3600)
    caplog.clear()
    now[0] += max(LISTING_TRUST_S, TOUCH_AFTER_S)
    second = pusher.ensure(refs)
    assert (second.pushed_files, second.pushed_bytes, second.cached_files) == (0, 0, len(refs))
    assert second.listed
    assert [request for request, _ in synced(caplog)] == ["LIST"]
    recent = time.time() - 120
    assert all(mtime > recent for _size, mtime in agent_phone.cache_entries().values())


def test_files_lost_behind_the_agents_back_are_pushed_again(
    agent_phone: AgentPhone, host_cache: HostCache, phone: VirtualPhone, manifest: Manifest
) -> None:
    """A trusted listing can be wrong (the phone's cache wiped by hand): `recheck` lists again
    and pushes what is missing; with nothing missing it says a retry would not help."""
    pusher = ArtifactPusher(agent_phone, host_cache)
    refs = manifest.files()
    pusher.ensure(refs)
    assert pusher.recheck(refs).pushed_files == 0
    unet = manifest.components["unet"].file
    on_disk(phone, unet.sha256).unlink()
    assert not pusher.ensure(refs).listed, "the listing is still trusted"
    assert pusher.recheck(refs).pushed_files == 1
    assert agent_phone.sha256(cache_path(unet.sha256)) == unet.sha256


def test_lru_eviction_drops_the_least_recently_used_and_never_a_needed_file(
    agent_phone: AgentPhone, host_cache: HostCache, phone: VirtualPhone, manifest: Manifest
) -> None:
    refs = manifest.files()
    oldest, older, old = (stale_file(phone, agent_phone, ago) for ago in (3000, 2000, 1000))
    pusher = ArtifactPusher(agent_phone, host_cache, quota_bytes=manifest.total_size() + 2 * UNIT)

    report = pusher.ensure(refs)
    assert report.evicted == [oldest]
    present = agent_phone.cache_entries()
    assert {older, old} | {ref.sha256 for ref in refs} == set(present)

    # Now the model's own files are the least recently used ones, and one of them is missing.
    for ref in refs:
        age(phone, ref.sha256, 9000)
    unet = manifest.components["unet"].file
    pusher.forget(unet.sha256)
    newer = stale_file(phone, agent_phone, 500)
    report = pusher.ensure(refs)
    assert report.evicted == [older], "the oldest file not needed by the model goes first"
    assert report.pushed_files == 1
    assert {old, newer} | {ref.sha256 for ref in refs} == set(agent_phone.cache_entries())
    assert sum(size for size, _ in agent_phone.cache_entries().values()) <= pusher.quota_bytes


def test_a_quota_smaller_than_the_model_is_refused_before_any_push(
    agent_phone: AgentPhone, host_cache: HostCache, manifest: Manifest
) -> None:
    pusher = ArtifactPusher(agent_phone, host_cache, quota_bytes=manifest.total_size() - 1)
    with pytest.raises(InvalidRequest, match="cache quota"):
        pusher.ensure(manifest.files())
    assert agent_phone.cache_entries() == {}


def test_a_push_cut_in_flight_is_pushed_again_and_caches_nothing_partial(
    pusher: ArtifactPusher, phone: VirtualPhone, manifest: Manifest
) -> None:
    """The adb server reconnects a dropped link by itself: the pusher waits for the phone and
    pushes the file again (tests/device_agent/agent/test_agent_push_at_size.py: at size)."""
    refs = manifest.files()
    assert max(ref.size for ref in refs) > 500_000
    phone.faults.drop_after_bytes(300_000)  # inside the UNet, the one large file
    report = pusher.ensure(refs)
    assert (report.pushed_files, report.link_retries) == (len(refs), 1)
    assert cache_listing(phone) == sorted(ref.sha256 for ref in refs), "a .part was left"
    for name in cache_listing(phone):
        assert hashlib.sha256(on_disk(phone, name).read_bytes()).hexdigest() == name


def test_partial_files_a_crashed_agent_left_go_with_the_next_push(
    pusher: ArtifactPusher, agent_phone: AgentPhone, phone: VirtualPhone, manifest: Manifest
) -> None:
    refs = manifest.files()
    leftover = f"{hashlib.sha256(b'another model').hexdigest()}.part"
    agent_phone.push_bytes(b"half a file", f"{CACHE_DIR}/{leftover}")
    pusher.ensure(refs)
    assert cache_listing(phone) == sorted(ref.sha256 for ref in refs)


def test_bytes_that_do_not_hash_to_their_name_never_enter_the_cache(
    pusher: ArtifactPusher,
    host_cache: HostCache,
    agent_phone: AgentPhone,
    phone: VirtualPhone,
    manifest: Manifest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    unet = manifest.components["unet"].file
    local = host_cache.path(unet)
    corrupt = bytearray(local.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size, so the host cache still serves it
    local.write_bytes(corrupt)

    watch_phone(caplog)
    with pytest.raises(ArtifactMismatch, match=unet.sha256[:12]):
        pusher.ensure(manifest.files())
    sends = [path for request, path in synced(caplog) if request == "SEND" and unet.sha256 in path]
    assert len(sends) == PUSH_ATTEMPTS, "pushed again once, then gave up"
    assert unet.sha256 not in agent_phone.cache_entries()
    assert not [name for name in cache_listing(phone) if name.endswith(".part")]
    # The host's copy was the corrupt one: it is dropped, and the next ensure fetches and heals.
    assert not (host_cache.root / unet.sha256).exists()
    report = pusher.ensure(manifest.files())
    assert report.pushed_bytes >= unet.size
    assert agent_phone.sha256(cache_path(unet.sha256)) == unet.sha256
