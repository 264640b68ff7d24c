"""A virtual phone's `/data` partition: its size, what the rest of the phone keeps there, the room
left. `df` reports it; a sync push, a shell's redirection, `dd of=`, `cp` and a `mv` between
/data and /sdcard (two filesystems on a phone) fill it no further (ENOSPC, as on a phone).

The size is the profile's marketed capacity less the system partitions, unless the phone is
started with a capacity of its own (`virtual-devices up --storage 16GB`, or a `Capacity` in
tests: a nearly full phone).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from hexfleet.errors import InvalidRequest
from hexfleet.virtual_phone.filesystem import PhoneFilesystem
from hexfleet.virtual_phone.profiles import Profile

# What a phone's marketed capacity loses to its system, vendor and other partitions.
SYSTEM_PARTITIONS_BYTES = 8 * 1024**3
# What the phone's own apps and their data already take on /data (an arbitrary, fixed figure).
OTHERS_BYTES = 1_234_567 * 1024


@dataclass(frozen=True)
class Capacity:
    """The /data partition's size, and how much of it the phone's other data takes."""

    size_bytes: int
    others_bytes: int = OTHERS_BYTES

    @classmethod
    def of(cls, profile: Profile) -> Capacity:
        return cls.marketed(profile.storage_gb * 1_000_000_000)

    @classmethod
    def marketed(cls, storage_bytes: int) -> Capacity:
        """/data of a phone sold as `storage_bytes`; InvalidRequest when the system partitions
        and the phone's own data would leave no room on it."""
        least = SYSTEM_PARTITIONS_BYTES + OTHERS_BYTES
        if storage_bytes <= least:
            raise InvalidRequest(
                f"--storage {storage_bytes / 1e9:g}GB leaves no room on /data: the system "
                f"partitions and the phone's own apps take {least / 1e9:.1f} GB; give more"
            )
        return cls(storage_bytes - SYSTEM_PARTITIONS_BYTES)


_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(GB|G|TB|T)\s*", re.IGNORECASE)


def parse_storage(text: str) -> int:
    """A phone's storage as marketed, in bytes: `128GB`, `1TB`, `12.5G` (decimal units)."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise InvalidRequest(f"--storage must be a size such as 128GB or 1TB, not {text!r}")
    unit = 10**12 if match[2].upper().startswith("T") else 10**9
    return int(float(match[1]) * unit)


@dataclass(frozen=True)
class Usage:
    """What `df` shows for /data, in bytes."""

    size: int
    used: int
    free: int


class Storage:
    """The /data partition of one phone, over the folder that holds the phone's files."""

    def __init__(self, fs: PhoneFilesystem, capacity: Capacity) -> None:
        self.fs = fs
        self.capacity = capacity

    def usage(self) -> Usage:
        """Size, used and free bytes (walks the phone's folder: call it off the event loop).

        Free is also bounded by the host's own free space, so a push never fills the host."""
        used = self.fs.used_bytes() + self.capacity.others_bytes
        free = min(self.capacity.size_bytes - used, self.fs.free_host_bytes())
        return Usage(self.capacity.size_bytes, used, max(0, free))

    def room_for(self, target: Path) -> int:
        """How many bytes a file written over `target` (a host path) may hold: the free space
        plus what the file it replaces takes now."""
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            replaced = 0
        else:
            replaced = info.st_blocks * 512 if stat.S_ISREG(info.st_mode) else 0
        return self.usage().free + replaced

    def copy_within(self, source: Path, target: Path) -> bool:
        """Copy a file as far as the disk takes it (toybox's cp: what fits, and no error);
        whether it was copied whole."""
        room = self.room_for(target)
        with open(source, "rb") as reader, open(target, "wb") as writer:
            while room > 0 and (chunk := reader.read(min(room, 1024 * 1024))):
                writer.write(chunk)
                room -= len(chunk)
            return not reader.read(1)
