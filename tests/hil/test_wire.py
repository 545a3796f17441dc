"""The serial framing model: bits per character, character time, RTU gaps, bit errors."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rackhil.wire import LineSettings, decode_char, encode_char, flip_bits, parity_bit


@pytest.mark.parametrize(
    ("fmt", "bits"),
    [("8E1", 11), ("8O1", 11), ("8N2", 11), ("8N1", 10), ("7E1", 10), ("8E2", 12)],
)
def test_bits_per_byte(fmt: str, bits: int) -> None:
    assert LineSettings.parse(fmt).bits_per_byte == bits


def test_default_is_115200_8e1_and_byte_time_rounds_to_us() -> None:
    line = LineSettings()
    assert line.name == "115200 8E1"
    assert line.byte_us == 95  # 11 / 115200 s = 95.49 us
    assert line.byte_s == pytest.approx(11 / 115200)
    assert LineSettings(baud=9600).byte_us == 1146  # 1145.8 us
    assert LineSettings(baud=9600, parity="N").byte_us == 1042  # 10 bits
    assert LineSettings().duration_us(8) == 8 * 95


def test_rtu_gaps_fixed_above_19200_and_scaled_below() -> None:
    assert LineSettings(baud=115200).t35_us == 1750
    assert LineSettings(baud=115200).t15_us == 750
    assert LineSettings(baud=9600).t35_us == round(3.5 * 11 / 9600 * 1e6)
    assert LineSettings(baud=19200).t15_us == round(1.5 * 11 / 19200 * 1e6)


@pytest.mark.parametrize("bad", [{"parity": "X"}, {"stop_bits": 3}, {"data_bits": 9}, {"baud": 0}])
def test_invalid_settings_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        LineSettings(**bad)


def test_parse_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        LineSettings.parse("8-1")


def test_parity_bit() -> None:
    assert parity_bit(0b0000_0111, "E") == 1
    assert parity_bit(0b0000_0111, "O") == 0
    assert parity_bit(0b0000_0011, "E") == 0
    assert parity_bit(0x55, "N") is None


def test_encode_char_wire_order() -> None:
    # 0x01 at 8E1: start 0, LSB first, parity (one 1 -> even parity bit 1), stop 1
    assert encode_char(0x01) == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert encode_char(0x01, LineSettings(parity="N", stop_bits=2)) == [0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 1]


LINES = st.sampled_from([LineSettings.parse(f) for f in ("8E1", "8O1", "8N1", "8N2", "7E1")])


@given(value=st.integers(0, 255), line=LINES)
def test_char_round_trip(value: int, line: LineSettings) -> None:
    got = decode_char(encode_char(value, line), line)
    assert got.ok
    assert got.value == value & ((1 << line.data_bits) - 1)
    assert len(encode_char(value, line)) == line.bits_per_byte


@given(value=st.integers(0, 255), bit=st.integers(1, 8))
def test_single_data_bit_flip_is_a_parity_error_with_parity(value: int, bit: int) -> None:
    got = flip_bits(value, [bit], LineSettings.parse("8E1"))
    assert got.parity_error and not got.framing_error
    got = flip_bits(value, [bit], LineSettings.parse("8N1"))
    assert got.ok and got.value == value ^ (1 << (bit - 1))


@given(value=st.integers(0, 255), a=st.integers(1, 8), b=st.integers(1, 8))
def test_double_data_bit_flip_escapes_parity(value: int, a: int, b: int) -> None:
    if a == b:
        return
    got = flip_bits(value, [a, b], LineSettings.parse("8E1"))
    assert got.ok
    assert got.value == value ^ (1 << (a - 1)) ^ (1 << (b - 1))


def test_start_or_stop_bit_flip_is_a_framing_error() -> None:
    line = LineSettings.parse("8E1")
    assert flip_bits(0x42, [0], line).framing_error
    assert flip_bits(0x42, [10], line).framing_error


def test_decode_rejects_wrong_length() -> None:
    with pytest.raises(ValueError):
        decode_char([0, 1, 1], LineSettings())
