"""A virtual phone's filesystem: one host folder is the phone's `/`, and no path escapes it.

Device paths are resolved component by component the way a kernel would, except that `..` at the
root stays at the root and a symlink's target is read as a *device* path (re-rooted at the
phone's folder), so neither `..`, absolute host paths nor symlinks reach outside the folder.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# Symlink hops allowed in one resolution, as Linux's MAXSYMLINKS.
MAX_SYMLINK_HOPS = 40
# The longest path adbd's sync service accepts.
MAX_PATH_LENGTH = 1024

LAYOUT = (
    "data/local/tmp",
    "data/local/tmp/hexfleet/bin",
    "sdcard",
    "system/bin",
    "sys/class/thermal",
    "sys/class/power_supply/battery",
    "dev",
    "proc",
)


# Only these trees are writable by the shell user on a phone; the rest is read-only.
WRITABLE_ROOTS = ("/data", "/sdcard", "/storage")


def is_writable(device_path: str) -> bool:
    """Whether the shell user may create or change files at `device_path` (a resolved path)."""
    return any(device_path == root or device_path.startswith(root + "/") for root in WRITABLE_ROOTS)


def check_writable(device_path: str) -> None:
    """Raise EROFS (as Android does for /system) unless `device_path` is writable."""
    if not is_writable(device_path):
        raise fs_error(errno.EROFS, device_path)


_GLOB_ESCAPED = re.compile(r"\[([*?\[])\]")
_GLOB_MAGIC = re.compile(r"[*?\[]")


def _has_magic(part: str) -> bool:
    return bool(_GLOB_MAGIC.search(_GLOB_ESCAPED.sub("", part)))


def _join(base: str, name: str) -> str:
    if not base:
        return name
    return base + name if base.endswith("/") else f"{base}/{name}"


def fs_error(code: int, device_path: str) -> OSError:
    """An OSError naming the *device* path (never the host path) in its message."""
    return OSError(code, os.strerror(code), device_path)


@dataclass(frozen=True)
class Resolved:
    """A device path after resolution, and the host path it stands for."""

    device: str
    host: Path


class PhoneFilesystem:
    """The phone's `/` on the host, with path resolution confined to it."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.realpath(root))
        self._refreshers: list[tuple[str, Callable[[PhoneFilesystem], None]]] = []

    def create_layout(self, placeholders: dict[str, str] | None = None) -> None:
        """Create the folders every Android phone has, plus placeholder files (path → text)."""
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in LAYOUT:
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        for device_path, text in (placeholders or {}).items():
            target = self.resolve(device_path).host
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text)
                target.chmod(0o755)

    def add_refresher(self, prefix: str, refresh: Callable[[PhoneFilesystem], None]) -> None:
        """Call `refresh(self)` before any path under `prefix` is resolved (live /sys files)."""
        self._refreshers.append((prefix, refresh))

    def resolve(self, path: str, cwd: str = "/", *, follow_final: bool = True) -> Resolved:
        """Resolve a device path to its host path inside the root; raise OSError otherwise.

        Symlinks met on the way are followed as device paths; the last component is followed
        only when `follow_final` (lstat semantics otherwise).
        """
        if "\0" in path:
            raise fs_error(errno.EINVAL, path.replace("\0", "\\0"))
        if not path:
            raise fs_error(errno.ENOENT, path)
        if len(path.encode("utf-8", errors="surrogateescape")) > MAX_PATH_LENGTH:
            raise fs_error(errno.ENAMETOOLONG, path[:64] + "...")
        full = path if path.startswith("/") else f"{cwd.rstrip('/')}/{path}"
        pending = [part for part in full.split("/") if part and part != "."]
        resolved: list[str] = []
        hops = 0
        while pending:
            part = pending.pop(0)
            if part == "..":
                if resolved:
                    resolved.pop()
                continue
            candidate = self.root.joinpath(*resolved, part)
            if (follow_final or pending) and candidate.is_symlink():
                hops += 1
                if hops > MAX_SYMLINK_HOPS:
                    raise fs_error(errno.ELOOP, path)
                target = os.readlink(candidate)
                if target.startswith("/"):
                    resolved = []
                pending = [p for p in target.split("/") if p and p != "."] + pending
                continue
            resolved.append(part)
        device = "/" + "/".join(resolved)
        host = self.root.joinpath(*resolved)
        self._check_confined(host, device, follow_final=follow_final)
        for prefix, refresh in self._refreshers:
            if device == prefix.rstrip("/") or device.startswith(prefix):
                refresh(self)
        return Resolved(device=device, host=host)

    def glob(self, pattern: str, cwd: str = "/") -> list[str]:
        """Paths matching a shell glob (`[*]` is a literal star), sorted; [] if none match."""
        absolute = pattern.startswith("/")
        parts = [part for part in pattern.split("/") if part]
        if not any(_has_magic(part) for part in parts):
            return []
        matches = ["/" if absolute else ""]
        for part in parts:
            found: list[str] = []
            for base in matches:
                if not _has_magic(part):
                    candidate = _join(base, _GLOB_ESCAPED.sub(r"\1", part))
                    try:
                        host = self.resolve(candidate, cwd, follow_final=False).host
                    except OSError:
                        continue
                    if host.exists() or host.is_symlink():
                        found.append(candidate)
                    continue
                try:
                    names = sorted(os.listdir(self.resolve(base or ".", cwd).host))
                except OSError:
                    continue
                for name in names:
                    if name.startswith(".") and not part.startswith("."):
                        continue
                    if fnmatch.fnmatchcase(name, part):
                        found.append(_join(base, name))
            matches = found
        return sorted(matches)

    def host_path(self, path: str, cwd: str = "/") -> Path:
        """The host path of a device path (following symlinks), confined to the root."""
        return self.resolve(path, cwd).host

    def device_path(self, host: Path) -> str:
        """The device path of a host path inside the root (for display)."""
        relative = Path(os.path.abspath(host)).relative_to(self.root)
        return "/" + relative.as_posix() if relative.parts else "/"

    def _check_confined(self, host: Path, device: str, *, follow_final: bool) -> None:
        # Defence in depth: resolution above never leaves the root, but a symlink swapped in
        # by another process between two steps could; refuse rather than follow it.
        probe = host if follow_final else host.parent
        real = os.path.realpath(probe)
        if real != str(self.root) and not real.startswith(str(self.root) + os.sep):
            raise fs_error(errno.EACCES, device)

    def used_bytes(self) -> int:
        """Bytes used by regular files under the root (what `df` reports as used)."""
        total = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                try:
                    info = os.lstat(os.path.join(folder, name))
                except FileNotFoundError:
                    continue
                if stat.S_ISREG(info.st_mode):
                    total += info.st_blocks * 512
        return total

    def free_host_bytes(self) -> int:
        """Bytes free on the host filesystem that holds the root."""
        return shutil.disk_usage(self.root).free
