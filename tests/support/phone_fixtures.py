"""Virtual phones for any test folder (registered in tests/conftest.py): a private adb server,
phones on a background event loop in this process (so tests can inject faults directly), and
clean-up. The adb server is the real binary bundled with adbutils, started on its own port
(`adb -P`), so tests never touch a developer's server on 5037.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import adbutils
import pytest
from virtual_phone_support import ADB, AdbServer
from waiting import free_port

from hexfleet.virtual_phone.fleet import ThreadedFleet
from hexfleet.virtual_phone.health import ThermalSettings
from hexfleet.virtual_phone.phone import PhoneConfig, VirtualPhone
from hexfleet.virtual_phone.profiles import get_profile


@pytest.fixture(scope="session")
def adb_server() -> Iterator[AdbServer]:
    port = free_port()
    started = subprocess.run(  # noqa: S603 - fixed argv
        [ADB, "-P", str(port), "start-server"], capture_output=True, text=True, timeout=30
    )
    assert started.returncode == 0, started.stderr
    server = AdbServer(port, adbutils.AdbClient("127.0.0.1", port))
    try:
        yield server
    finally:
        server.run("kill-server", timeout=30)


@pytest.fixture
def fleet() -> Iterator[ThreadedFleet]:
    with ThreadedFleet() as running:
        yield running


FAST_THERMAL = ThermalSettings(heat_time_s=0.5, cool_time_s=0.5, poll_s=0.1)


@pytest.fixture
def make_phone(fleet: ThreadedFleet, tmp_path: Path) -> Callable[..., VirtualPhone]:
    """Start a phone (CPU compute by default, fast thermals) in its own folder on a free port."""
    count = 0

    def make(soc: str = "sm8550", **overrides: object) -> VirtualPhone:
        nonlocal count
        count += 1
        config = PhoneConfig(
            profile=get_profile(soc),
            root=tmp_path / f"phone{count}",
            index=count,
            port=free_port(),
            compute="cpu",
            thermal=FAST_THERMAL,
            reboot_s=0.5,
        )
        for key, value in overrides.items():
            setattr(config, key, value)
        return fleet.start_phone(config)

    return make


@pytest.fixture
def phone(make_phone: Callable[..., VirtualPhone]) -> VirtualPhone:
    return make_phone()


@pytest.fixture
def device(adb_server: AdbServer, phone: VirtualPhone) -> Iterator[adbutils.AdbDevice]:
    """The phone as adbutils sees it through the private adb server."""
    connected = adb_server.connect(phone.serial)
    try:
        yield connected
    finally:
        adb_server.disconnect(phone.serial)
