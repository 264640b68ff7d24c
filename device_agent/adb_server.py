"""The host's adb server as hexfleet uses it: start the bundled one on the configured port, and
`adb connect` / `adb disconnect` phones reached over TCP (virtual phones, Wi-Fi debugging).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess

import adbutils

from hexfleet.errors import ServiceUnavailable
from hexfleet.settings import Settings


def client(settings: Settings) -> adbutils.AdbClient:
    return adbutils.AdbClient(host=settings.adb_host, port=settings.adb_port)


def reachable(settings: Settings) -> bool:
    try:
        with socket.create_connection((settings.adb_host, settings.adb_port), timeout=2):
            return True
    except OSError:
        return False


def ensure_local_server(settings: Settings) -> bool:
    """Start the bundled adb server on the configured port (adbutils alone would pick 5037).

    Returns whether it was started here (False when one already answered)."""
    if reachable(settings):
        return False
    if settings.adb_host not in ("127.0.0.1", "localhost", "::1"):
        raise ServiceUnavailable(f"no adb server at {settings.adb_host}:{settings.adb_port}")
    subprocess.run(  # noqa: S603 - fixed argv, the bundled adb binary
        [adbutils.adb_path(), "-P", str(settings.adb_port), "start-server"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return True


def kill_local_server(settings: Settings) -> None:
    """Stop the bundled adb server on the configured port (what `ensure_local_server` started)."""
    subprocess.run(  # noqa: S603 - fixed argv, the bundled adb binary
        [adbutils.adb_path(), "-P", str(settings.adb_port), "kill-server"],
        capture_output=True,
        timeout=30,
        check=False,
    )


def connect(settings: Settings, serials: list[str]) -> None:
    ensure_local_server(settings)
    adb = client(settings)
    for serial in serials:
        try:
            message = adb.connect(serial, timeout=10)
        except (adbutils.AdbError, OSError) as exc:
            raise ServiceUnavailable(
                f"adb server at {settings.adb_host}:{settings.adb_port} could not connect "
                f"{serial}: {exc}"
            ) from exc
        if "connected" not in message:
            raise ServiceUnavailable(f"adb connect {serial}: {message}")


def disconnect(settings: Settings, serials: list[str]) -> None:
    if not reachable(settings):
        return
    adb = client(settings)
    for serial in serials:
        with contextlib.suppress(adbutils.AdbError, OSError):
            adb.disconnect(serial)
