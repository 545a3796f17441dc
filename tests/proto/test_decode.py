"""Frame -> words: both readings, echoes, exceptions, and registers named from a map."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackproto import adu as adus
from rackproto import pdu as P
from rackproto.crc import with_crc
from rackproto.decode import decode_frame, parse_hex
from rackproto.errors import CrcError, FrameError, RackError
from rackproto.regmap import RegisterMap, load


@pytest.fixture(scope="module")
def shelf() -> RegisterMap:
    return load("power_shelf")


def scaled_holding(m: RegisterMap):  # noqa: ANN201 - a Register
    return next(r for r in m.table("holding") if r.type == "u16" and r.scale != 1)


def test_read_request_from_the_brief() -> None:
    d = decode_frame("01030000000AC5CD")
    assert [i.role for i in d.interpretations] == ["request"]
    text = d.interpretations[0].summary.lower()
    for part in ("read request", "fc 03 read holding registers", "10 holding registers", "address 0", "device 1"):
        assert part in text
    assert "response" in d.rejected  # byte count 0 is not a valid response


def test_response_reading() -> None:
    frame = adus.build(9, P.ReadRegistersResponse(4, (1, 0xABCD)))
    (it,) = decode_frame(frame).interpretations
    assert it.role == "response"
    assert "2 registers" in it.summary and "device 9" in it.summary
    assert ("values (hex)", "0001 ABCD") in it.details


def test_write_single_is_the_same_both_ways() -> None:
    d = decode_frame(adus.build(1, P.WriteSingle(6, 1, 3)))
    assert d.same_both_ways
    assert {i.role for i in d.interpretations} == {"request", "response"}
    assert "= 3 (0x0003)" in d.interpretations[0].summary


def test_exception_response() -> None:
    (it,) = decode_frame(adus.build(2, P.ExceptionResponse(3, 2))).interpretations
    assert "exception 02 illegal data address" in it.summary
    assert "FC 83" in it.summary


def test_broadcast_is_named() -> None:
    d = decode_frame(adus.build(0, P.WriteRegistersRequest(5, (1,))))
    assert "broadcast" in d.interpretations[0].summary


def test_device_id_response_lists_objects() -> None:
    pdu = P.DeviceIdResponse(1, 0x81, 0, 0, ((0, b"ACME"), (1, b"PS6")))
    (it,) = decode_frame(adus.build(3, pdu)).interpretations
    assert ("VendorName", "ACME") in it.details and ("ProductCode", "PS6") in it.details


def test_bad_crc_and_nonsense_frames() -> None:
    with pytest.raises(CrcError):
        decode_frame("01030000000AC5CE")
    with pytest.raises(FrameError, match="neither a request nor a response"):
        decode_frame(with_crc(b"\x01\x03\x03\x00\x01\x02"))  # odd register byte count
    with pytest.raises(FrameError, match="neither"):
        decode_frame(with_crc(b"\x01\x41\x00\x00"))


@pytest.mark.parametrize("text", ["01 03 00 00 00 0A C5 CD", "0x01030000000ac5cd", "01:03:00:00:00:0A:C5:CD"])
def test_hex_forms(text: str) -> None:
    assert parse_hex(text) == bytes.fromhex("01030000000AC5CD")


def test_bad_hex() -> None:
    with pytest.raises(FrameError, match="not hex"):
        parse_hex("01030G")
    with pytest.raises(FrameError):
        parse_hex("010")


def test_read_response_named_with_map_and_start(shelf: RegisterMap) -> None:
    reg = scaled_holding(shelf)
    raw = 5400
    frame = adus.build(1, P.ReadRegistersResponse(3, (raw,)))
    (it,) = decode_frame(frame, shelf, start=reg.address).interpretations
    (value,) = it.registers
    assert value.register.name == reg.name
    assert value.raw == raw
    assert value.value == pytest.approx(raw * reg.scale)
    assert value.unit == reg.unit
    # without the start address the frame cannot be named
    assert decode_frame(frame, shelf).interpretations[0].registers == []


def test_write_requests_are_named_from_their_own_address(shelf: RegisterMap) -> None:
    reg = scaled_holding(shelf)
    d = decode_frame(adus.build(1, P.WriteSingle(6, reg.address, 1200)), shelf)
    for it in d.interpretations:
        assert [v.register.name for v in it.registers] == [reg.name]
    d = decode_frame(adus.build(1, P.WriteRegistersRequest(reg.address, (1200,))), shelf)
    assert d.interpretations[0].registers[0].value == pytest.approx(1200 * reg.scale)


def test_identity_strings_are_decoded(shelf: RegisterMap) -> None:
    vendor = shelf.get("vendor")
    text = b"ACME Power".ljust(2 * vendor.count, b"\x00")
    words = tuple(int.from_bytes(text[i : i + 2], "big") for i in range(0, len(text), 2))
    frame = adus.build(1, P.ReadRegistersResponse(4, words))
    (it,) = decode_frame(frame, shelf, start=vendor.address).interpretations
    assert it.registers[0].register.name == "vendor"
    assert it.registers[0].value.rstrip("\x00") == "ACME Power"


def test_json_form_is_serialisable(shelf: RegisterMap) -> None:
    reg = scaled_holding(shelf)
    frame = adus.build(1, P.ReadRegistersResponse(3, (100,)))
    doc = json.loads(json.dumps(decode_frame(frame, shelf, reg.address).to_dict()))
    (it,) = doc["interpretations"]
    assert it["role"] == "response" and it["function"] == 3 and it["device"] == 1
    assert it["fields"]["values"] == [100]
    assert it["registers"][0]["name"] == reg.name


@settings(deadline=None, max_examples=200)
@given(st.binary(max_size=64))
def test_any_input_decodes_or_raises_a_rack_error(data: bytes) -> None:
    for frame in (data, with_crc(data)):
        try:
            decode_frame(frame)
        except RackError:
            pass


def test_read_request_lists_the_registers_it_covers(shelf: RegisterMap) -> None:
    vendor, model = shelf.get("vendor"), shelf.get("model")
    frame = adus.build(1, P.ReadRequest(4, vendor.address, vendor.count + model.count))
    (it,) = decode_frame(frame, shelf).interpretations
    assert ("registers read", "vendor, model") in it.details
