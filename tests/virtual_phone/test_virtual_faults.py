"""Fault injection on the link: bandwidth limit, stall, timed drop, and fault commands."""

from __future__ import annotations

import asyncio
import os
import time

import adbutils
import pytest
from virtual_phone_support import AdbServer
from waiting import wait_until

from hexfleet.virtual_phone.faults import FaultCommand, LinkFaults
from hexfleet.virtual_phone.fleet import ThreadedFleet
from hexfleet.virtual_phone.phone import VirtualPhone

MB = 1_000_000


def test_bandwidth_limit_holds_the_rate(device: adbutils.AdbDevice, phone: VirtualPhone) -> None:
    phone.faults.limit_bandwidth(20)
    payload = os.urandom(8 * MB)
    started = time.perf_counter()
    device.sync.push(payload, "/data/local/tmp/slow.bin")
    push_rate = len(payload) / (time.perf_counter() - started) / MB
    started = time.perf_counter()
    assert device.sync.read_bytes("/data/local/tmp/slow.bin") == payload
    pull_rate = len(payload) / (time.perf_counter() - started) / MB
    assert 12 < push_rate <= 21 and 12 < pull_rate <= 21, (push_rate, pull_rate)


def test_stall_freezes_the_link_until_it_ends(
    device: adbutils.AdbDevice,
    phone: VirtualPhone,
) -> None:
    phone.faults.stall(0.6)
    started = time.perf_counter()
    assert device.shell("echo after") == "after"
    assert time.perf_counter() - started >= 0.5


def test_timed_drop_cuts_a_transfer(
    adb_server: AdbServer, device: adbutils.AdbDevice, phone: VirtualPhone
) -> None:
    phone.faults.limit_bandwidth(20)
    phone.faults.drop_in(0.3)
    with pytest.raises((adbutils.AdbError, OSError)):
        device.sync.push(os.urandom(16 * MB), "/data/local/tmp/cut.bin")
    phone.faults.clear_link()
    again = adb_server.connect(phone.serial)
    assert again.shell("echo ok") == "ok"


def test_fault_commands_apply_to_a_phone(
    adb_server: AdbServer, fleet: ThreadedFleet, device: adbutils.AdbDevice, phone: VirtualPhone
) -> None:
    fleet.call(phone.apply(FaultCommand(kind="bandwidth", value=35)))
    assert phone.faults.bandwidth_mb_s == 35
    fleet.call(phone.apply(FaultCommand(kind="faulty_npu", value=0.1)))
    assert phone.compute_settings().faulty_npu == 0.1
    fleet.call(phone.apply(FaultCommand(kind="slow_npu", value=0.05)))
    assert phone.programs.executable_environment({})["HEXFLEET_RUNNER_SLOW_NPU"] == "0.05"
    fleet.call(phone.apply(FaultCommand(kind="offline")))
    wait_until(lambda: adb_server.state(phone.serial) != "device", 10, "offline")
    fleet.call(phone.apply(FaultCommand(kind="online")))
    assert adb_server.connect(phone.serial).shell("echo back") == "back"
    fleet.call(phone.apply(FaultCommand(kind="clear")))
    assert phone.faults.bandwidth_mb_s is None and phone.faults.faulty_npu == 0
    assert phone.compute_settings().slow_npu == 0


def test_reboot_drops_the_phone_and_it_returns(
    adb_server: AdbServer, device: adbutils.AdbDevice, phone: VirtualPhone
) -> None:
    device.shell("reboot")
    wait_until(lambda: adb_server.state(phone.serial) != "device", 10, "rebooting")
    wait_until(lambda: phone.online, 10, "rebooted")
    assert adb_server.connect(phone.serial).getprop("sys.boot_completed") == "1"


def test_drop_budget_counts_bytes_both_ways() -> None:
    faults = LinkFaults()
    faults.drop_after_bytes(100)

    async def run() -> list[int]:
        return [await faults.pass_bytes(60, outgoing=True),
                await faults.pass_bytes(60, outgoing=False),
                await faults.pass_bytes(60, outgoing=True)]

    assert asyncio.run(run()) == [60, 40, 60]
