"""Running a program pushed to a virtual phone: the ELF file itself, confined to the phone's folder.

A real phone executes what `adb push` put in `/data/local/tmp`; so does a virtual one. The program
runs in a bubblewrap sandbox (Debian's `bubblewrap`) whose `/data`, `/sdcard` and `/sys` are the
phone's folders, so it sees the device paths a phone would show it and nothing of the host's files
but the read-only system libraries it links against. An arm64 program runs under qemu-user with
the cross loader (`/usr/aarch64-linux-gnu`) and an arm64 `/proc/cpuinfo` (ONNX Runtime's CPU
detection reads it); a program built for another ABI than the phone's fails as it would on a
phone: "Exec format error".
"""

from __future__ import annotations

import errno
import os
import platform
import shutil
from pathlib import Path

from hexfleet.bundle import elf_abi

_HOST_ABI = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "arm64-v8a", "arm64": "arm64-v8a"}
ARM64_SYSROOT = "/usr/aarch64-linux-gnu"
# Host folders a program needs to load (read-only): its loader and the shared libraries a
# glibc build links (on a phone, bionic's /system/lib64 plays that part).
_SYSTEM_FOLDERS = ("/usr", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/alternatives")
# The phone's folders, bound at their device paths.
_PHONE_FOLDERS = ("data", "sdcard", "sys")
_ARM64_CPUINFO = "".join(
    f"processor\t: {cpu}\nBogoMIPS\t: 38.40\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid "
    "asimdrdm lrcpc dcpop asimddp\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: 0xd05\n"
    "CPU revision\t: 0\n\n"
    for cpu in range(8)
)


class CannotExecute(OSError):
    """The file is not a program this phone can run (errno set as the kernel would)."""


def host_abi() -> str:
    return _HOST_ABI.get(platform.machine().lower(), platform.machine())


def _tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise CannotExecute(
            errno.ENOEXEC, f"the virtual phone needs {name} (apt-get install {package})"
        )
    return found


def sandbox_command(
    root: Path, phone_abi: str, executable: str, args: list[str], cwd: str, state_dir: Path
) -> list[str]:
    """The host argv that runs the phone's `executable` (a device path) with `args` in `cwd`.

    `root` is the phone's folder; `state_dir` a host folder of the phone's own for files the
    sandbox binds (the arm64 cpuinfo). Raises CannotExecute for a file the phone cannot run.
    """
    host_path = root / executable.lstrip("/")
    abi = elf_abi(host_path)
    if abi is None:
        raise CannotExecute(errno.ENOEXEC, os.strerror(errno.ENOEXEC), executable)
    if abi != phone_abi:
        raise CannotExecute(errno.ENOEXEC, f"{os.strerror(errno.ENOEXEC)} ({abi} on {phone_abi})")
    command = [
        _tool("bwrap", "bubblewrap"),
        "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc",
        "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
    ]
    for folder in _SYSTEM_FOLDERS:
        if Path(folder).is_symlink():
            command += ["--symlink", os.readlink(folder), folder]
        elif Path(folder).exists():
            command += ["--ro-bind", folder, folder]
    for name in _PHONE_FOLDERS:
        (root / name).mkdir(parents=True, exist_ok=True)
        mode = "--bind" if name != "sys" else "--ro-bind"
        command += [mode, str(root / name), f"/{name}"]
    program = [executable]
    if abi == "arm64-v8a" and host_abi() != abi:
        cpuinfo = state_dir / "cpuinfo-arm64"
        if not cpuinfo.is_file():
            state_dir.mkdir(parents=True, exist_ok=True)
            cpuinfo.write_text(_ARM64_CPUINFO)
        command += ["--ro-bind", str(cpuinfo), "/proc/cpuinfo"]
        program = [_tool("qemu-aarch64", "qemu-user"), "-L", ARM64_SYSROOT, executable]
    return [*command, "--chdir", cwd, "--", *program, *args]
