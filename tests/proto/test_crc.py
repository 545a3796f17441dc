"""CRC-16/MODBUS: check value, byte order, and agreement with a bitwise reference."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from rackproto.crc import check, crc16, crc_bytes, with_crc


def bitwise_crc16(data: bytes) -> int:
    """The spec's shift-and-xor description, one bit at a time (no table)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            lsb = crc & 1
            crc >>= 1
            if lsb:
                crc ^= 0xA001
    return crc


def test_check_value() -> None:
    assert crc16(b"123456789") == 0x4B37


def test_crc_is_sent_low_byte_first() -> None:
    assert crc_bytes(b"123456789") == b"\x37\x4b"


def test_known_frame_from_the_spec() -> None:
    # Read holding registers, device 1, 10 registers from 0: the CRC on the wire is C5 CD.
    assert with_crc(bytes.fromhex("01030000000A")) == bytes.fromhex("01030000000AC5CD")


def test_empty_input_is_the_initial_value() -> None:
    assert crc16(b"") == 0xFFFF


@settings(deadline=None)
@given(st.binary(max_size=300))
def test_table_matches_bitwise_reference(data: bytes) -> None:
    assert crc16(data) == bitwise_crc16(data)


@settings(deadline=None)
@given(st.binary(max_size=100), st.binary(max_size=100))
def test_crc_can_continue_over_chunks(a: bytes, b: bytes) -> None:
    assert crc16(b, crc16(a)) == crc16(a + b)


@settings(deadline=None)
@given(st.binary(min_size=1, max_size=254))
def test_frame_with_crc_checks(data: bytes) -> None:
    frame = with_crc(data)
    assert check(frame)
    assert check(bytearray(frame)) and check(memoryview(frame))


@settings(deadline=None)
@given(st.binary(min_size=1, max_size=254), st.data())
def test_any_single_bit_flip_is_detected(data: bytes, draw: st.DataObject) -> None:
    frame = bytearray(with_crc(data))
    bit = draw.draw(st.integers(0, len(frame) * 8 - 1))
    frame[bit // 8] ^= 1 << (bit % 8)
    assert not check(frame)


def test_too_short_is_never_valid() -> None:
    assert not check(b"")
    assert not check(b"\x01\x02")
