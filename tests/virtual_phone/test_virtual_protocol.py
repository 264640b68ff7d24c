"""ADB message framing: headers round-trip, checksums are byte sums, bad headers are refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hexfleet.virtual_phone import protocol as proto

COMMANDS = st.sampled_from(sorted(proto.COMMAND_NAMES))
WORDS = st.integers(min_value=0, max_value=0xFFFFFFFF)


@given(COMMANDS, WORDS, WORDS, st.binary(max_size=4096))
def test_header_round_trips(command: int, arg0: int, arg1: int, payload: bytes) -> None:
    raw = proto.encode(command, arg0, arg1, payload)
    header = proto.decode_header(raw[: proto.HEADER_SIZE], max_payload=proto.MAX_PAYLOAD)
    assert (header.command, header.arg0, header.arg1, header.length) == (
        command,
        arg0,
        arg1,
        len(payload),
    )
    assert raw[proto.HEADER_SIZE :] == payload
    proto.verify_checksum(header, payload)


@given(st.binary(max_size=70_000))
def test_checksum_is_the_byte_sum(payload: bytes) -> None:
    assert proto.checksum(payload) == sum(payload) & 0xFFFFFFFF


@given(st.binary(min_size=24, max_size=24))
def test_random_headers_either_parse_or_raise_protocol_error(raw: bytes) -> None:
    try:
        header = proto.decode_header(raw, max_payload=proto.MAX_PAYLOAD)
    except proto.ProtocolError:
        return
    assert header.command in proto.COMMAND_NAMES
    assert header.length <= proto.MAX_PAYLOAD


def test_bad_magic_and_oversize_payloads_are_refused() -> None:
    good = proto.encode(proto.A_OKAY, 1, 2)
    bad_magic = good[:20] + b"\0\0\0\0"
    with pytest.raises(proto.ProtocolError, match="magic"):
        proto.decode_header(bad_magic, max_payload=proto.MAX_PAYLOAD)
    big = proto.encode_header(proto.A_WRTE, 1, 2, b"x" * 5000, with_checksum=False)
    with pytest.raises(proto.ProtocolError, match="exceeds"):
        proto.decode_header(big, max_payload=4096)


def test_corrupt_payload_fails_the_checksum() -> None:
    raw = proto.encode(proto.A_WRTE, 1, 2, b"hello")
    header = proto.decode_header(raw[:24], max_payload=proto.MAX_PAYLOAD)
    with pytest.raises(proto.ProtocolError, match="checksum"):
        proto.verify_checksum(header, b"hellp")


def test_banner_and_host_identity() -> None:
    banner = proto.device_banner(
        {
            "ro.product.name": "dm1qsqw",
            "ro.product.model": "SM-S911U",
            "ro.product.device": "dm1q",
            "ro.other": "x",
        },
        ["shell_v2", "stat_v2"],
    )
    assert banner == (
        b"device::ro.product.name=dm1qsqw;ro.product.model=SM-S911U;"
        b"ro.product.device=dm1q;features=shell_v2,stat_v2"
    )
    identity = proto.parse_identity(b"host::features=shell_v2,cmd,stat_v2\0")
    assert identity.system_type == "host"
    assert identity.features == {"shell_v2", "cmd", "stat_v2"}
