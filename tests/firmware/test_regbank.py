"""RegBank: dense storage with the word conventions the maps promise."""

from __future__ import annotations

import fwsim  # noqa: F401  (micropython shim)
from hypothesis import given
from hypothesis import strategies as st

from rackfw.regbank import RegBank


def bank() -> RegBank:
    return RegBank(16, 16, 8, 8)


@given(st.integers(-0x8000, 0xFFFF))
def test_set_ir_masks_and_twos_complement(v):
    b = bank()
    b.set_ir(3, v)
    assert b.get_ir(3) == v & 0xFFFF


@given(st.integers(0, 0xFFFFFFFF))
def test_u32_high_word_first(v):
    b = bank()
    b.set_ir32(4, v)
    assert (b.ir[4], b.ir[5]) == (v >> 16, v & 0xFFFF)
    b.set_hr32(6, v)
    assert b.get_hr32(6) == v


@given(st.integers(-0x8000, 0x7FFF))
def test_signed_holding_roundtrip(v):
    b = bank()
    b.set_hr(2, v)
    assert b.get_hr(2) == v & 0xFFFF
    assert b.get_hr_s(2) == v


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=16))
def test_strings_two_bytes_per_word_big_endian(s):
    b = bank()
    b.set_ir_str(0, 8, s)
    raw = b"".join(w.to_bytes(2, "big") for w in b.ir[0:8])
    assert raw == s.encode().ljust(16, b"\0")


def test_bits_are_normalised():
    b = bank()
    b.set_di(1, 5)
    b.set_coil(2, True)
    assert (b.get_di(1), b.get_di(0), b.get_coil(2)) == (1, 0, 1)


def test_string_longer_than_field_is_truncated():
    b = bank()
    b.set_ir_str(0, 2, "abcdefgh")
    assert list(b.ir[0:3]) == [0x6162, 0x6364, 0]
