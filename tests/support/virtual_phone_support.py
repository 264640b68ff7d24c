"""A private adb server for device_agent tests (waiting and free ports: tests/support/waiting.py).

Imported by tests/support/phone_fixtures.py and the tests of tests/virtual_phone, device_agent.
"""

from __future__ import annotations

import contextlib
import subprocess
from dataclasses import dataclass

import adbutils
from waiting import wait_until

ADB = adbutils.adb_path()


@dataclass
class AdbServer:
    """A private adb server: its port, an adbutils client for it, and the binary's argv."""

    port: int
    client: adbutils.AdbClient

    def run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the adb binary against this server (`adb -P PORT ...`)."""
        return subprocess.run(  # noqa: S603 - fixed argv, no shell
            [ADB, "-P", str(self.port), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def connect(self, serial: str) -> adbutils.AdbDevice:
        """`adb connect` and wait until the server lists the phone as `device`."""
        message = self.client.connect(serial, timeout=10)
        assert "connected" in message, message
        wait_until(lambda: self.state(serial) == "device", 10, f"{serial} online")
        return self.client.device(serial)

    def state(self, serial: str) -> str | None:
        for item in self.client.list():
            if item.serial == serial:
                return item.state
        return None

    def disconnect(self, serial: str) -> None:
        with contextlib.suppress(adbutils.AdbError):  # already gone: the server dropped it
            self.client.disconnect(serial)
