"""adbutils through the real adb server drives a virtual phone as it drives a phone on Wi-Fi."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import adbutils
import pytest
from virtual_phone_support import AdbServer
from waiting import wait_until

from hexfleet.virtual_phone.fleet import ThreadedFleet
from hexfleet.virtual_phone.phone import VirtualPhone

MB = 1024 * 1024


def test_adb_server_lists_the_phone_with_banner_fields(
    adb_server: AdbServer, device: adbutils.AdbDevice, phone: VirtualPhone
) -> None:
    listing = adb_server.run("devices", "-l").stdout
    assert f"{phone.serial}" in listing
    line = next(line for line in listing.splitlines() if line.startswith(phone.serial))
    assert "device product:dm1qsqw model:SM_S911U device:dm1q" in line
    features = set(device.get_features().split(","))
    assert {"shell_v2", "stat_v2", "ls_v2"} <= features


def test_getprop_through_adbutils(device: adbutils.AdbDevice) -> None:
    assert device.prop.get("ro.soc.model") == "SM8550"
    assert device.getprop("ro.board.platform") == "kalama"
    assert device.getprop("ro.hexfleet.htp_arch") == "v73"
    assert device.getprop("ro.product.cpu.abi") == "x86_64"  # by default: the host's
    assert device.getprop("ro.serialno").startswith("HXV8550")


def test_shell2_exit_codes_and_separate_stderr(device: adbutils.AdbDevice) -> None:
    result = device.shell2("echo out; echo err >&2; exit 42", v2=True)
    assert (result.returncode, result.stdout, result.stderr) == (42, "out\n", "err\n")
    missing = device.shell2("nosuchcmd", v2=True)
    assert missing.returncode == 127
    assert missing.stderr == "/system/bin/sh: nosuchcmd: inaccessible or not found\n"
    assert device.shell2("false").returncode == 1  # v1 path: exit code via `echo $?`


def test_battery_and_thermal_zones(device: adbutils.AdbDevice) -> None:
    battery = device.battery()
    assert battery.level == 80 and battery.usb_powered and battery.temperature > 20
    temps = device.shell("cat /sys/class/thermal/thermal_zone*/temp").split()
    assert len(temps) >= 5 and all(25_000 < int(t) < 40_000 for t in temps)


def test_sync_push_pull_stat_list(
    device: adbutils.AdbDevice,
    phone: VirtualPhone,
    tmp_path: Path,
) -> None:
    payload = os.urandom(300_000)
    assert device.sync.push(payload, "/data/local/tmp/dir/a.bin", mode=0o644) == len(payload)
    info = device.sync.stat("/data/local/tmp/dir/a.bin")
    assert info.size == len(payload) and stat.S_ISREG(info.mode)
    assert stat.S_IMODE(info.mode) == 0o644
    names = {entry.path for entry in device.sync.list("/data/local/tmp/dir")}
    assert names == {".", "..", "a.bin"}
    assert device.sync.read_bytes("/data/local/tmp/dir/a.bin") == payload
    assert device.sync.pull("/data/local/tmp/dir/a.bin", tmp_path / "a.bin") == len(payload)
    assert (tmp_path / "a.bin").read_bytes() == payload
    assert (phone.fs.root / "data/local/tmp/dir/a.bin").read_bytes() == payload
    assert not device.sync.exists("/data/local/tmp/none")
    with pytest.raises(adbutils.AdbError, match="No such file"):
        device.sync.read_bytes("/data/local/tmp/none")


def test_sync_refuses_escapes_and_read_only_places(
    device: adbutils.AdbDevice, phone: VirtualPhone
) -> None:
    outside = phone.fs.root.parent / "host-secret.txt"
    outside.write_text("secret")
    os.symlink(str(outside), phone.fs.root / "data/local/tmp/link")
    with pytest.raises(adbutils.AdbError):
        device.sync.read_bytes(str(outside))
    with pytest.raises(adbutils.AdbError):
        device.sync.read_bytes("/data/local/tmp/../../../../../host-secret.txt")
    with pytest.raises(adbutils.AdbError):
        device.sync.read_bytes("/data/local/tmp/link")
    with pytest.raises(adbutils.AdbError):
        device.sync.push(b"x", "/system/bin/evil")
    with pytest.raises(adbutils.AdbError):  # `..` stops at the phone's `/`, which is read-only
        device.sync.push(b"pwned", "/data/local/tmp/../../../../../host-secret.txt")
    planted = phone.fs.root.parent / "planted.txt"
    with pytest.raises(adbutils.AdbError):  # an absolute host path is a path on the phone
        device.sync.push(b"pwned", str(planted))
    assert outside.read_text() == "secret"
    assert not planted.exists()


def test_64mb_round_trip_is_byte_identical(device: adbutils.AdbDevice, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    source.write_bytes(os.urandom(64 * MB))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    device.sync.push(source, "/data/local/tmp/big.bin")
    assert device.shell("sha256sum /data/local/tmp/big.bin").split()[0] == digest
    device.sync.pull("/data/local/tmp/big.bin", tmp_path / "back.bin")
    assert hashlib.sha256((tmp_path / "back.bin").read_bytes()).hexdigest() == digest


def test_several_streams_at_once(device: adbutils.AdbDevice) -> None:
    streaming = device.shell("sleep 0.5; echo slow", stream=True)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(device.shell(f"echo fast{i}")))
        for i in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(results) == [f"fast{i}" for i in range(4)]
    assert streaming.read_until_close().strip() == "slow"


def test_two_phones_serve_at_once(
    adb_server: AdbServer,
    make_phone: Callable[..., VirtualPhone],
) -> None:
    first, second = make_phone("sm8450"), make_phone("sm8750")
    devices = [adb_server.connect(first.serial), adb_server.connect(second.serial)]
    try:
        payload = os.urandom(4 * MB)
        errors: list[BaseException] = []

        def exercise(device: adbutils.AdbDevice) -> None:
            try:
                device.sync.push(payload, "/data/local/tmp/p.bin")
                assert device.sync.read_bytes("/data/local/tmp/p.bin") == payload
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=exercise, args=(d,)) for d in devices]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert [d.getprop("ro.soc.model") for d in devices] == ["SM8450", "SM8750"]
    finally:
        adb_server.disconnect(first.serial)
        adb_server.disconnect(second.serial)


def test_phone_killed_mid_push_raises_and_comes_back(
    adb_server: AdbServer, fleet: ThreadedFleet, phone: VirtualPhone, device: adbutils.AdbDevice
) -> None:
    phone.faults.limit_bandwidth(50)  # so that the push is still running when the phone dies
    partial = phone.fs.root / "data/local/tmp/cut.bin"
    raised: list[BaseException] = []

    def push() -> None:
        try:
            device.sync.push(os.urandom(32 * MB), "/data/local/tmp/cut.bin")
        except (adbutils.AdbError, OSError) as exc:
            raised.append(exc)

    pusher = threading.Thread(target=push)
    pusher.start()
    wait_until(lambda: partial.exists() and partial.stat().st_size > 2 * MB, 10, "push under way")
    fleet.stop_phone(phone)
    pusher.join(timeout=30)
    assert not pusher.is_alive() and raised, "adbutils did not notice the phone dying"
    assert not partial.exists(), "a partial upload was left behind"
    wait_until(lambda: adb_server.state(phone.serial) != "device", 10, "phone offline")
    phone.faults.clear_link()
    fleet.restart_phone(phone)
    again = adb_server.connect(phone.serial)
    assert again.shell("echo back") == "back"
    again.sync.push(b"after", "/data/local/tmp/after.txt")
    assert again.sync.read_bytes("/data/local/tmp/after.txt") == b"after"


def test_drop_after_bytes_fails_the_push(
    adb_server: AdbServer, phone: VirtualPhone, device: adbutils.AdbDevice
) -> None:
    phone.faults.drop_after_bytes(8 * MB)
    with pytest.raises((adbutils.AdbError, OSError)):
        device.sync.push(os.urandom(32 * MB), "/data/local/tmp/cut.bin")
    assert adb_server.connect(phone.serial).shell("ls /data/local/tmp") == "hexfleet"


def test_offline_and_back_with_the_same_serial(
    adb_server: AdbServer, fleet: ThreadedFleet, phone: VirtualPhone, device: adbutils.AdbDevice
) -> None:
    serialno = device.getprop("ro.serialno")
    fleet.call(phone.go_offline(0.5))
    wait_until(lambda: adb_server.state(phone.serial) != "device", 10, "phone offline")
    wait_until(lambda: phone.online, 10, "phone listening again")
    again = adb_server.connect(phone.serial)
    assert again.getprop("ro.serialno") == serialno
