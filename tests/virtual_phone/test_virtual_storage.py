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


def test_shell_writes_stop_at_the_free_space_worded_as_toybox_and_mksh(
    adb_server: AdbServer, small_phone: VirtualPhone
) -> None:
    """Redirections and `dd of=` fail with ENOSPC once /data is full, keeping what fitted; toybox's
    `cp`, and its `mv` from /data to /sdcard (another filesystem: a copy, then an unlink), copy what
    fits and say nothing (toybox 0.8.9 on a full tmpfs does just that); `mv` within /data needs no
    room."""
    tmp = small_phone.fs.root / "data/local/tmp"
    big = tmp / "big"
    big.write_bytes(os.urandom(small_phone.storage.usage().free // 2 + 2 * MB))
    room = small_phone.storage.usage().free  # less than big: no copy of it fits
    copy = tmp / "copy"

    def sh(command: str) -> tuple[int, str, str]:
        done = adb_server.run("-s", small_phone.serial, "shell", command)
        return done.returncode, done.stdout, done.stderr

    assert sh("cat /data/local/tmp/big > /data/local/tmp/copy") == (
        1,
        "",
        "cat: xwrite: No space left on device\n",
    )
    assert copy.read_bytes() == big.read_bytes()[:room]
    assert small_phone.storage.usage().free == 0
    assert sh("echo more >> /data/local/tmp/copy") == (
        1,
        "",
        "/system/bin/sh: echo: write: No space left on device\n",
    )
    assert copy.stat().st_size == room

    copy.unlink()
    status, _, err = sh("dd if=/data/local/tmp/big of=/data/local/tmp/copy bs=1048576")
    assert status == 1
    assert err.startswith("dd: /data/local/tmp/copy: write error: No space left on device\n")
    assert "records in\n" in err
    assert copy.read_bytes() == big.read_bytes()[:room]

    copy.unlink()
    assert sh("cp /data/local/tmp/big /data/local/tmp/copy") == (0, "", "")
    assert copy.read_bytes() == big.read_bytes()[:room]

    # Within /data a move is a rename: it needs no room, even on a full disk.
    assert small_phone.storage.usage().free == 0
    assert sh("mv /data/local/tmp/copy /data/local/tmp/moved") == (0, "", "")
    assert (tmp / "moved").stat().st_size == room

    (tmp / "moved").unlink()
    content = big.read_bytes()
    assert sh("mv /data/local/tmp/big /sdcard/big") == (0, "", "")
    assert not big.exists(), "toybox's mv removes the source after its copy, whole or not"
    assert (small_phone.fs.root / "sdcard/big").read_bytes() == content[:room]
