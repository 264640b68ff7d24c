"""A virtual phone runs the program pushed to it: the ELF itself, confined to the phone's folder,
natively on an x86_64 phone and under qemu-user on an arm64-v8a one; a program for another ABI
fails as on a phone ("Exec format error")."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from host_tools import require_tool
from virtual_phone_support import AdbServer

from hexfleet.bundle import elf_abi
from hexfleet.virtual_phone.phone import VirtualPhone

# Prints what it sees: its cwd, an environment variable, a phone file, whether a host file
# outside the phone's folder is visible, and /proc/cpuinfo's first line.
PROBE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
int main(int argc, char** argv) {
  char cwd[512];
  printf("cwd %s\n", getcwd(cwd, sizeof cwd));
  printf("env %s\n", getenv("LD_LIBRARY_PATH") ? getenv("LD_LIBRARY_PATH") : "-");
  FILE* phone = fopen("/data/local/tmp/probe/hello.txt", "r");
  char line[256] = "";
  if (phone) { fgets(line, sizeof line, phone); fclose(phone); }
  printf("phone-file %s", line);
  printf("host-file %s\n", access(argv[1], F_OK) == 0 ? "visible" : "hidden");
  FILE* cpu = fopen("/proc/cpuinfo", "r");
  char first[256] = "";
  if (cpu) { fgets(first, sizeof first, cpu); fgets(first, sizeof first, cpu); fclose(cpu); }
  printf("cpuinfo %s", first);
  fprintf(stderr, "to stderr\n");
  return 7;
}
"""
COMPILERS = {
    "x86_64": ("gcc", "gcc"),
    "arm64-v8a": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu"),
}


def _probe(tmp_path: Path, abi: str) -> Path:
    compiler = require_tool(*COMPILERS[abi])
    require_tool("bwrap", "bubblewrap")
    source = tmp_path / "probe.c"
    source.write_text(PROBE)
    binary = tmp_path / f"probe-{abi}"
    subprocess.run([compiler, "-O1", "-o", str(binary), str(source)], check=True)
    assert elf_abi(binary) == abi
    return binary


@pytest.mark.parametrize("abi", ["x86_64", "arm64-v8a"])
def test_a_pushed_program_runs_confined_to_the_phone(
    adb_server: AdbServer, make_phone: Callable[..., VirtualPhone], tmp_path: Path, abi: str
) -> None:
    if abi == "arm64-v8a":
        require_tool("qemu-aarch64", "qemu-user")
    phone = make_phone("sm8650", abi=abi)
    device = adb_server.connect(phone.serial)
    assert device.getprop("ro.product.cpu.abi") == abi
    secret = tmp_path / "host-secret.txt"
    secret.write_text("host only")
    device.sync.push(_probe(tmp_path, abi).read_bytes(), "/data/local/tmp/probe/probe", 0o755)
    device.sync.push(b"hi from the phone\n", "/data/local/tmp/probe/hello.txt")
    result = device.shell2(
        f"cd /data/local/tmp/probe && LD_LIBRARY_PATH=/data/local/tmp/probe ./probe {secret}",
        v2=True,
    )
    assert result.returncode == 7, result.output
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["cwd"] == "/data/local/tmp/probe"
    assert lines["env"] == "/data/local/tmp/probe"
    assert lines["phone-file"] == "hi from the phone"
    assert lines["host-file"] == "hidden"
    if abi == "arm64-v8a":
        assert lines["cpuinfo"].startswith("BogoMIPS")
    assert result.stderr == "to stderr\n"


def test_a_program_for_another_abi_fails_as_on_a_phone(
    adb_server: AdbServer, make_phone: Callable[..., VirtualPhone], tmp_path: Path
) -> None:
    phone = make_phone("sm8550")  # x86_64 by default
    device = adb_server.connect(phone.serial)
    device.sync.push(_probe(tmp_path, "arm64-v8a").read_bytes(), "/data/local/tmp/p", 0o755)
    device.sync.push(b"#!/system/bin/sh\necho hi\n", "/data/local/tmp/not-elf", 0o755)
    device.sync.push(_probe(tmp_path, "x86_64").read_bytes(), "/data/local/tmp/no-x", 0o644)
    wrong = device.shell2("/data/local/tmp/p", v2=True)
    assert wrong.returncode == 126
    assert "Exec format error" in wrong.stderr
    assert device.shell2("/data/local/tmp/not-elf", v2=True).returncode == 126
    denied = device.shell2("/data/local/tmp/no-x", v2=True)
    assert (denied.returncode, "Permission denied" in denied.stderr) == (126, True)
