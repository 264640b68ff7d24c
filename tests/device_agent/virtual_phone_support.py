"""Helpers for device_agent tests: free ports, waiting on a condition, a private adb server.

Imported by tests/device_agent/conftest.py and by test modules under virtual/ and agent/.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import adbutils

ADB = adbutils.adb_path()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> object:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


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
        wait_until(lambda: self.state(serial) == "device", what=f"{serial} online")
        return self.client.device(serial)

    def state(self, serial: str) -> str | None:
        for item in self.client.list():
            if item.serial == serial:
                return item.state
        return None

    def disconnect(self, serial: str) -> None:
        with contextlib.suppress(adbutils.AdbError):  # already gone: the server dropped it
            self.client.disconnect(serial)
