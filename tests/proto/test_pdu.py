"""PDU and ADU codecs: spec examples, limits, round-trips, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackproto import adu as adus
from rackproto import pdu as P
from rackproto.crc import with_crc
from rackproto.errors import CrcError, FrameError, QuantityError, RackError

u16 = st.integers(0, 0xFFFF)
u8 = st.integers(0, 0xFF)


def words(lo: int, hi: int) -> st.SearchStrategy[tuple[int, ...]]:
    return st.lists(u16, min_size=lo, max_size=hi).map(tuple)


def bits(lo: int, hi: int) -> st.SearchStrategy[tuple[bool, ...]]:
    return st.lists(st.booleans(), min_size=lo, max_size=hi).map(tuple)


read_requests = st.one_of(
    st.builds(P.ReadRequest, st.sampled_from([1, 2]), u16, st.integers(1, 2000)),
    st.builds(P.ReadRequest, st.sampled_from([3, 4]), u16, st.integers(1, 125)),
)
requests = st.one_of(
    read_requests,
    st.builds(P.WriteSingle, st.just(5), u16, st.sampled_from([P.COIL_ON, P.COIL_OFF])),
    st.builds(P.WriteSingle, st.just(6), u16, u16),
    st.builds(P.Diagnostics, st.sampled_from(sorted(P.DIAGNOSTIC_NAMES)), u16),
    st.builds(P.WriteCoilsRequest, u16, bits(1, 1968)),
    st.builds(P.WriteRegistersRequest, u16, words(1, 123)),
    st.builds(P.ReadWriteRequest, u16, st.integers(1, 125), u16, words(1, 121)),
    st.builds(P.DeviceIdRequest, st.integers(1, 4), u8),
)
device_objects = st.lists(
    st.tuples(u8, st.binary(max_size=30)), max_size=6
).map(tuple)
responses = st.one_of(
    st.builds(
        P.ReadBitsResponse,
        st.sampled_from([1, 2]),
        st.integers(1, 250).flatmap(lambda n: bits(8 * n, 8 * n)),
    ),
    st.builds(P.ReadRegistersResponse, st.sampled_from([3, 4, 0x17]), words(1, 125)),
    st.builds(P.WriteSingle, st.just(5), u16, st.sampled_from([P.COIL_ON, P.COIL_OFF])),
    st.builds(P.WriteSingle, st.just(6), u16, u16),
    st.builds(P.Diagnostics, st.sampled_from(sorted(P.DIAGNOSTIC_NAMES)), u16),
    st.builds(P.WriteMultipleResponse, st.just(0x0F), u16, st.integers(1, 1968)),
    st.builds(P.WriteMultipleResponse, st.just(0x10), u16, st.integers(1, 123)),
    st.builds(P.DeviceIdResponse, st.integers(1, 4), u8, st.sampled_from([0, 0xFF]), u8, device_objects),
    st.builds(P.ExceptionResponse, st.integers(1, 0x7F), st.integers(1, 0xFF)),
)
addresses = st.integers(0, 247)


# --- examples from the Modbus Application Protocol Specification V1.1b3 ---------
SPEC_REQUESTS = [
    ("01001300 13", P.ReadRequest(1, 0x13, 0x13)),
    ("0300 6B00 03", P.ReadRequest(3, 0x6B, 3)),
    ("0500AC FF00", P.WriteSingle(5, 0xAC, P.COIL_ON)),
    ("06 0001 0003", P.WriteSingle(6, 1, 3)),
    ("0F 0013 000A 02 CD01", P.WriteCoilsRequest(0x13, (1, 0, 1, 1, 0, 0, 1, 1, 1, 0))),
    ("10 0001 0002 04 000A 0102", P.WriteRegistersRequest(1, (0x0A, 0x0102))),
    ("17 0003 0006 000E 0003 06 00FF 00FF 00FF", P.ReadWriteRequest(3, 6, 0x0E, (0xFF,) * 3)),
    ("08 0000 A537", P.Diagnostics(0, 0xA537)),
    ("2B 0E 01 00", P.DeviceIdRequest(1, 0)),
]
SPEC_RESPONSES = [
    ("01 03 CD6B05", P.ReadBitsResponse(1, P.unpack_bits(bytes.fromhex("CD6B05")))),
    ("03 06 022B 0000 0064", P.ReadRegistersResponse(3, (0x022B, 0, 0x64))),
    ("10 0001 0002", P.WriteMultipleResponse(0x10, 1, 2)),
    ("0F 0013 000A", P.WriteMultipleResponse(0x0F, 0x13, 10)),
    ("81 02", P.ExceptionResponse(1, 2)),
    (
        "2B 0E 01 01 00 00 03 00 03 414243 01 02 5031 02 03 312E30",
        P.DeviceIdResponse(1, 1, 0, 0, ((0, b"ABC"), (1, b"P1"), (2, b"1.0"))),
    ),
]


def h(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", ""))


@pytest.mark.parametrize(("hex_pdu", "expected"), SPEC_REQUESTS)
def test_spec_request_examples(hex_pdu: str, expected: P.Pdu) -> None:
    assert P.decode_request(h(hex_pdu)) == expected
    assert P.encode(expected) == h(hex_pdu)


@pytest.mark.parametrize(("hex_pdu", "expected"), SPEC_RESPONSES)
def test_spec_response_examples(hex_pdu: str, expected: P.Pdu) -> None:
    assert P.decode_response(h(hex_pdu)) == expected
    assert P.encode(expected) == h(hex_pdu)


def test_coil_bits_are_lsb_first() -> None:
    assert P.pack_bits([True, False, False, False, False, False, False, False, True]) == b"\x01\x01"
    assert P.unpack_bits(b"\x05")[:4] == (True, False, True, False)


# --- limits -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fc", "good", "bad"),
    [(1, 2000, 2001), (2, 2000, 2001), (3, 125, 126), (4, 125, 126)],
)
def test_read_quantity_limits(fc: int, good: int, bad: int) -> None:
    assert P.decode_request(P.encode(P.ReadRequest(fc, 0, good))).count == good
    illegal = P.encode(P.ReadRequest(fc, 0, bad), check=False)
    with pytest.raises(QuantityError):
        P.decode_request(illegal)
    with pytest.raises(QuantityError):
        P.decode_request(P.encode(P.ReadRequest(fc, 0, 0), check=False))
    with pytest.raises(QuantityError):
        P.encode(P.ReadRequest(fc, 0, bad))


def test_write_multiple_limits() -> None:
    P.encode(P.WriteCoilsRequest(0, (True,) * 1968))
    P.encode(P.WriteRegistersRequest(0, (1,) * 123))
    with pytest.raises(QuantityError):
        P.encode(P.WriteCoilsRequest(0, (True,) * 1969))
    with pytest.raises(QuantityError):
        P.encode(P.WriteRegistersRequest(0, (1,) * 124))
    with pytest.raises(QuantityError):
        P.encode(P.WriteRegistersRequest(0, ()))


def test_read_write_limits() -> None:
    P.encode(P.ReadWriteRequest(0, 125, 0, (0,) * 121))
    with pytest.raises(QuantityError):
        P.encode(P.ReadWriteRequest(0, 126, 0, (0,)))
    with pytest.raises(QuantityError):
        P.encode(P.ReadWriteRequest(0, 1, 0, (0,) * 122))
    illegal = P.encode(P.ReadWriteRequest(0, 126, 0, (0,)), check=False)
    with pytest.raises(QuantityError):
        P.decode_request(illegal)


@pytest.mark.parametrize(
    "hex_pdu",
    [
        "10 0001 0002 03 000A01",  # byte count 3 for 2 registers
        "10 0001 0002 06 000A 0102 0000",  # byte count 6 for 2 registers
        "0F 0013 000A 01 CD",  # 10 coils need 2 bytes
        "17 0003 0006 000E 0003 04 00FF 00FF",  # 3 written registers need 6 bytes
    ],
)
def test_byte_count_must_match_quantity(hex_pdu: str) -> None:
    with pytest.raises(QuantityError):
        P.decode_request(h(hex_pdu))


@pytest.mark.parametrize("hex_pdu", ["03 00", "03 03 000102", "03 FC" + "00" * 252])
def test_register_response_byte_count_even_and_at_most_250(hex_pdu: str) -> None:
    with pytest.raises(QuantityError):
        P.decode_response(h(hex_pdu))


def test_register_response_length_must_match_byte_count() -> None:
    with pytest.raises(FrameError):
        P.decode_response(h("03 04 0001"))
    with pytest.raises(FrameError):
        P.decode_response(h("03 02 0001 0002"))


def test_coil_value_must_be_on_or_off() -> None:
    with pytest.raises(FrameError):
        P.decode_request(h("05 00AC 1234"))
    with pytest.raises(FrameError):
        P.encode(P.WriteSingle(5, 0, 1))


def test_exceptions_are_responses_only() -> None:
    assert P.decode_response(h("83 02")) == P.ExceptionResponse(3, 2)
    with pytest.raises(FrameError):
        P.decode_request(h("83 02"))
    with pytest.raises(FrameError):
        P.decode_response(h("83"))


def test_unsupported_and_mismatched_function_codes() -> None:
    with pytest.raises(FrameError, match="unsupported function code 0x07"):
        P.decode_request(b"\x07")
    with pytest.raises(FrameError):
        P.encode(P.ReadRequest(6, 0, 1))
    with pytest.raises(FrameError):
        P.decode_request(h("2B 0D 01 00"))  # MEI type other than 0E
    with pytest.raises(FrameError):
        P.decode_request(b"")


def test_encode_rejects_values_that_do_not_fit() -> None:
    with pytest.raises(FrameError):
        P.encode(P.WriteRegistersRequest(0, (0x10000,)))
    with pytest.raises(FrameError):
        P.encode(P.ReadRequest(3, -1, 1))
    with pytest.raises(TypeError):
        P.encode("not a pdu")  # type: ignore[arg-type]


# --- round trips -------------------------------------------------------------------
@settings(deadline=None)
@given(requests)
def test_request_round_trip(pdu: P.Pdu) -> None:
    assert P.decode_request(P.encode(pdu)) == pdu


@settings(deadline=None)
@given(responses)
def test_response_round_trip(pdu: P.Pdu) -> None:
    assert P.decode_response(P.encode(pdu)) == pdu


@settings(deadline=None)
@given(addresses, requests)
def test_request_adu_round_trip(address: int, pdu: P.Pdu) -> None:
    frame = adus.build(address, pdu)
    assert adus.parse_request(frame) == adus.Adu(address, pdu)
    assert adus.parse(frame, "request").encode() == frame


@settings(deadline=None)
@given(addresses, responses)
def test_response_adu_round_trip(address: int, pdu: P.Pdu) -> None:
    frame = adus.build(address, pdu)
    assert adus.parse_response(frame) == adus.Adu(address, pdu)
    assert len(frame) <= adus.MAX_FRAME


# --- ADU checks -------------------------------------------------------------------
def test_adu_known_frame() -> None:
    assert adus.build(1, P.ReadRequest(3, 0, 10)).hex().upper() == "01030000000AC5CD"


@settings(deadline=None)
@given(addresses, requests, st.data())
def test_adu_corruption_gives_crc_error(address: int, pdu: P.Pdu, data: st.DataObject) -> None:
    frame = bytearray(adus.build(address, pdu))
    i = data.draw(st.integers(0, len(frame) - 1))
    frame[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(CrcError) as info:
        adus.parse_request(frame)
    assert info.value.expected != info.value.got


def test_adu_reserved_and_oversized_addresses() -> None:
    with pytest.raises(FrameError):
        adus.build(248, P.ReadRequest(3, 0, 1))
    frame = adus.build(250, P.ReadRequest(3, 0, 1), check=False)
    with pytest.raises(FrameError, match="reserved"):
        adus.parse_request(frame)
    with pytest.raises(FrameError):
        adus.build(256, P.ReadRequest(3, 0, 1), check=False)


def test_adu_length_limits() -> None:
    with pytest.raises(FrameError):
        adus.split(b"\x01\x03\x00")
    with pytest.raises(FrameError):
        adus.split(with_crc(b"\x01\x03" + b"\x00" * 300))


# --- hostile input: a value or a RackError, never anything else -------------------
@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_pdu_bytes(data: bytes) -> None:
    for decode in (P.decode_request, P.decode_response):
        try:
            decode(data)
        except RackError:
            pass


@settings(deadline=None, max_examples=300)
@given(st.sampled_from(sorted(P.RESPONSE_PARSERS) + [0x83]), st.binary(max_size=260))
def test_arbitrary_bodies_for_known_function_codes(fc: int, body: bytes) -> None:
    for decode in (P.decode_request, P.decode_response):
        try:
            decode(bytes((fc,)) + body)
        except RackError:
            pass


@settings(deadline=None, max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_adu_bytes_with_valid_crc(data: bytes) -> None:
    for parse in (adus.parse_request, adus.parse_response):
        for frame in (data, with_crc(data)):
            try:
                parse(frame)
            except RackError:
                pass
