"""The ADB transport's message framing: the 24-byte header, payload checksums and the CNXN banner.

Written from AOSP's protocol.txt: six little-endian u32 words (command, arg0, arg1, length,
checksum, magic = command ^ 0xffffffff) followed by the payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_AUTH = 0x48545541
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_STLS = 0x534C5453

COMMAND_NAMES = {
    A_SYNC: "SYNC",
    A_CNXN: "CNXN",
    A_AUTH: "AUTH",
    A_OPEN: "OPEN",
    A_OKAY: "OKAY",
    A_CLSE: "CLSE",
    A_WRTE: "WRTE",
    A_STLS: "STLS",
}

VERSION_MIN = 0x01000000
# From this version on, neither side computes nor checks payload checksums.
VERSION_SKIP_CHECKSUM = 0x01000001
VERSION = VERSION_SKIP_CHECKSUM

# What modern adbd accepts per message; the host's own CNXN may offer less (legacy: 4096).
MAX_PAYLOAD = 1024 * 1024
MAX_PAYLOAD_LEGACY = 4096

HEADER = struct.Struct("<6I")
HEADER_SIZE = HEADER.size


class ProtocolError(Exception):
    """A header or payload that breaks the protocol: the connection must be closed."""


@dataclass(frozen=True)
class Header:
    """A decoded message header; the payload follows it on the wire."""

    command: int
    arg0: int
    arg1: int
    length: int
    checksum: int

    @property
    def name(self) -> str:
        return COMMAND_NAMES.get(self.command, f"0x{self.command:08x}")


def checksum(payload: bytes | bytearray | memoryview) -> int:
    """The 'crc32' of protocol.txt, which is in fact the byte sum modulo 2**32."""
    if not payload:
        return 0
    return int(np.frombuffer(payload, dtype=np.uint8).sum(dtype=np.uint64)) & 0xFFFFFFFF


Payload = bytes | bytearray | memoryview


def encode_header(
    command: int, arg0: int, arg1: int, payload: Payload, *, with_checksum: bool
) -> bytes:
    """The 24 header bytes for a message carrying `payload`."""
    crc = checksum(payload) if with_checksum else 0
    return HEADER.pack(command, arg0, arg1, len(payload), crc, command ^ 0xFFFFFFFF)


def encode(
    command: int, arg0: int, arg1: int, payload: bytes = b"", *, with_checksum: bool = True
) -> bytes:
    """A whole message (header + payload)."""
    return encode_header(command, arg0, arg1, payload, with_checksum=with_checksum) + payload


def decode_header(raw: bytes | bytearray | memoryview, *, max_payload: int) -> Header:
    """Parse 24 header bytes; raise ProtocolError on a bad magic or an oversized payload."""
    if len(raw) != HEADER_SIZE:
        raise ProtocolError(f"header of {len(raw)} bytes, expected {HEADER_SIZE}")
    command, arg0, arg1, length, crc, magic = HEADER.unpack(raw)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic 0x{magic:08x} for command 0x{command:08x}")
    if command not in COMMAND_NAMES:
        raise ProtocolError(f"unknown command 0x{command:08x}")
    if length > max_payload:
        raise ProtocolError(f"payload of {length} bytes exceeds the maximum {max_payload}")
    return Header(command, arg0, arg1, length, crc)


def verify_checksum(header: Header, payload: bytes | bytearray | memoryview) -> None:
    """Raise ProtocolError when a payload does not match its header's checksum."""
    actual = checksum(payload)
    if actual != header.checksum:
        raise ProtocolError(f"{header.name} payload checksum {actual} != {header.checksum}")


def device_banner(props: dict[str, str], features: list[str]) -> bytes:
    """The device's CNXN identity string: `device::key=value;...;features=a,b`."""
    keys = ("ro.product.name", "ro.product.model", "ro.product.device")
    fields = [f"{key}={props[key]}" for key in keys if key in props]
    fields.append("features=" + ",".join(features))
    return ("device::" + ";".join(fields)).encode()


@dataclass(frozen=True)
class HostIdentity:
    """What the host said about itself in its CNXN."""

    system_type: str
    features: frozenset[str]


def parse_identity(payload: bytes) -> HostIdentity:
    """Parse `host::features=a,b,...` (trailing NUL tolerated) from a host's CNXN."""
    text = payload.rstrip(b"\0").decode("utf-8", errors="replace")
    system_type, _, rest = text.partition(":")
    _, _, banner = rest.partition(":")
    features: frozenset[str] = frozenset()
    for field in banner.split(";"):
        key, _, value = field.partition("=")
        if key == "features":
            features = frozenset(item for item in value.split(",") if item)
    return HostIdentity(system_type=system_type, features=features)
