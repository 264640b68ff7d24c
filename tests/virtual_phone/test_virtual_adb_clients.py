"""Two more independent clients: the adb binary itself, and the `adb-shell` package (no server)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
from pathlib import Path

import adbutils
from adb_shell.adb_device import AdbDeviceTcp
from virtual_phone_support import ADB, AdbServer

from hexfleet.virtual_phone.phone import VirtualPhone

MB = 1024 * 1024


def test_adb_binary_shell_exit_code_and_stderr(
    adb_server: AdbServer, device: adbutils.AdbDevice, phone: VirtualPhone
) -> None:
    result = adb_server.run("-s", phone.serial, "shell", "getprop ro.soc.model; echo e >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr) == (3, "SM8550\n", "e\n")
    result = adb_server.run("-s", phone.serial, "shell", "nosuchcmd")
    assert result.returncode == 127
    assert result.stderr == "/system/bin/sh: nosuchcmd: inaccessible or not found\n"


def test_adb_binary_push_pull(
    adb_server: AdbServer, device: adbutils.AdbDevice, phone: VirtualPhone, tmp_path: Path
) -> None:
    source = tmp_path / "model.bin"
    source.write_bytes(os.urandom(5 * MB + 123))
    assert adb_server.run("-s", phone.serial, "shell", "mkdir -p /data/local/tmp/m").returncode == 0
    pushed = adb_server.run("-s", phone.serial, "push", str(source), "/data/local/tmp/m/")
    assert pushed.returncode == 0, pushed.stderr
    assert "1 file pushed" in pushed.stdout + pushed.stderr
    on_phone = phone.fs.root / "data/local/tmp/m/model.bin"
    assert on_phone.read_bytes() == source.read_bytes()
    pulled = adb_server.run("-s", phone.serial, "pull", "/data/local/tmp/m", str(tmp_path / "back"))
    assert pulled.returncode == 0, pulled.stderr
    assert (tmp_path / "back/model.bin").read_bytes() == source.read_bytes()
    refused = adb_server.run("-s", phone.serial, "push", str(source), "/system/bin/x")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr


def test_adb_shell_package_speaks_the_transport_directly(phone: VirtualPhone) -> None:
    client = AdbDeviceTcp("127.0.0.1", phone.port, default_transport_timeout_s=10.0)
    assert client.connect(rsa_keys=None, auth_timeout_s=1.0)
    try:
        assert client.shell("getprop ro.board.platform") == "kalama\n"
        assert client.shell("nosuchcmd") == "/system/bin/sh: nosuchcmd: inaccessible or not found\n"
        payload = os.urandom(3 * MB)
        client.push(io.BytesIO(payload), "/data/local/tmp/as.bin", st_mode=stat.S_IFREG | 0o644)
        mode, size, _ = client.stat("/data/local/tmp/as.bin")
        assert size == len(payload) and stat.S_ISREG(mode)
        names = {bytes(entry.filename) for entry in client.list("/data/local/tmp")}
        assert {b".", b"..", b"as.bin", b"hexfleet"} <= names
        pulled = io.BytesIO()
        client.pull("/data/local/tmp/as.bin", pulled)
        assert hashlib.sha256(pulled.getvalue()).digest() == hashlib.sha256(payload).digest()
        assert client.exec_out("echo raw") == "raw\n"
    finally:
        client.close()


def test_adb_binary_stdin_interactive_and_exec_out(
    adb_server: AdbServer, device: adbutils.AdbDevice, phone: VirtualPhone
) -> None:
    def adb(*args: str, stdin: str | None = None) -> tuple[int, str]:
        result = subprocess.run(  # noqa: S603 - fixed argv
            [ADB, "-P", str(adb_server.port), "-s", phone.serial, *args],
            input=stdin, capture_output=True, text=True, timeout=30, check=False,
        )
        return result.returncode, result.stdout

    assert adb("shell", "cat", stdin="piped\n") == (0, "piped\n")
    assert adb("shell", stdin="echo one\ngetprop ro.soc.model\nexit\n") == (0, "one\nSM8550\n")
    assert adb("exec-out", "echo raw") == (0, "raw\n")
