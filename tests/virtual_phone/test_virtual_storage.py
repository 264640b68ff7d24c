"""The phone's /data partition: `df` reports its configured size the way toybox's df does, and a
push fills it no further than its free space (`No space left on device`, no file left behind)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from virtual_phone_support import AdbServer
from waiting import wait_until

from hexfleet.virtual_phone.phone import VirtualPhone
from hexfleet.virtual_phone.storage import Capacity

MB = 1_000_000
KIB = 1024


@pytest.fixture
def small_phone(
    adb_server: AdbServer, make_phone: Callable[..., VirtualPhone]
) -> Iterator[VirtualPhone]:
    """A phone whose /data is 40 MB, 10 MB of it taken by its own apps."""
    phone = make_phone(capacity=Capacity(size_bytes=40 * MB, others_bytes=10 * MB))
    adb_server.connect(phone.serial)
    try:
        yield phone
    finally:
        adb_server.disconnect(phone.serial)


def df_data(adb_server: AdbServer, serial: str) -> tuple[int, int, int]:
    """(1K-blocks, Used, Available) of /data from `adb shell df -k /data`, as the agent reads."""
    result = adb_server.run("-s", serial, "shell", "df -k /data")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split()[:4] == ["Filesystem", "1K-blocks", "Used", "Available"]
    fields = row.split()
    assert fields[0].startswith("/dev/block/") and fields[-1] == "/data"
    return int(fields[1]), int(fields[2]), int(fields[3])


def test_df_reports_the_configured_size_and_what_pushes_take(
    adb_server: AdbServer, small_phone: VirtualPhone, tmp_path: Path
) -> None:
    size_kb, used_kb, free_kb = df_data(adb_server, small_phone.serial)
    assert size_kb == 40 * MB // KIB
    assert used_kb >= 10 * MB // KIB
    assert size_kb - 1 <= used_kb + free_kb <= size_kb  # each rounded down to KiB
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(5 * MB))
    pushed = adb_server.run("-s", small_phone.serial, "push", str(source), "/data/local/tmp/m.bin")
    assert pushed.returncode == 0, pushed.stderr
    _, used_after, free_after = df_data(adb_server, small_phone.serial)
    assert used_after - used_kb >= 5 * MB // KIB
    assert abs((free_kb - free_after) - (used_after - used_kb)) <= 1


def test_a_push_past_the_free_space_fails_as_on_a_full_phone_and_leaves_no_file(
    adb_server: AdbServer, small_phone: VirtualPhone, tmp_path: Path
) -> None:
    _, _, free_kb = df_data(adb_server, small_phone.serial)
    too_big = tmp_path / "too-big.bin"
    too_big.write_bytes(os.urandom(free_kb * KIB + 1 * MB))
    target = small_phone.fs.root / "data/local/tmp/too-big.bin"
    refused = adb_server.run("-s", small_phone.serial, "push", str(too_big), "/data/local/tmp/")
    assert refused.returncode != 0
    assert "No space left on device" in refused.stderr
    wait_until(lambda: not target.exists(), 10, "the phone to remove the refused file")
    assert df_data(adb_server, small_phone.serial)[2] == free_kb

    # Writing over a file frees its space first: a file as big as the free space fits twice.
    fits = tmp_path / "fits.bin"
    fits.write_bytes(os.urandom(free_kb * KIB - 1 * MB))
    for _ in range(2):
        pushed = adb_server.run("-s", small_phone.serial, "push", str(fits), "/data/local/tmp/f")
        assert pushed.returncode == 0, pushed.stderr
    assert (small_phone.fs.root / "data/local/tmp/f").read_bytes() == fits.read_bytes()
