"""Modbus spec review of the firmware server: each test pins one clause.

References: "MODBUS Application Protocol Specification V1.1b3" (MAP) and "MODBUS
over Serial Line Specification and Implementation Guide V1.02" (MSL). Every test
talks Modbus to a Board through the conformance fixtures (CPython, and the
MicroPython VM with ``-m vm``), except the device-identification paging test,
which needs object strings longer than a board has and drives
``rackfw.devid.DeviceId`` directly.
"""

from __future__ import annotations

import struct

import modbus_client as mb
import pytest

from rackfw import regs_power_shelf as R

UNIT = 7


def diag_counter(bus, sub: int) -> int:
    pdu = mb.body(bus.transact(mb.diag_req(UNIT, sub)))
    assert pdu[:3] == bytes([8, 0, sub])
    return int.from_bytes(pdu[3:5], "big")


def clear_counters(bus) -> None:
    assert mb.body(bus.transact(mb.diag_req(UNIT, 0x0A))) == bytes([8, 0, 0x0A, 0, 0])


def set_bits(bus, table: str, addr: int, values: list[int]) -> None:
    """Poke coil/discrete storage directly (the maps have few writable bits)."""
    sim = getattr(bus, "sim", None)
    if sim is not None:
        arr = getattr(sim.board.bank, table)
        for i, v in enumerate(values):
            arr[addr + i] = v
        return
    bus.node.exec(
        "import testmain\n"
        f"for i, v in enumerate({values!r}):\n"
        f"    testmain.board.bank.{table}[{addr} + i] = v\n"
    )


# --- FC 08 diagnostics (MAP 6.8, MSL 6.1) -------------------------------------------
def test_unsupported_subfunction_is_01_before_the_data_is_looked_at(bus):
    # MAP 6.8 state diagram: "function code AND sub-function code supported" -> else
    # 01, and only then "data value OK" -> else 03.
    assert mb.exception_code(bus.transact(mb.diag_req(UNIT, 0x55, b"\x00\x01")), 8) == 1
    assert mb.exception_code(bus.transact(mb.diag_req(UNIT, 0x04, b"\xff\x00\x00\x00")), 8) == 1
    # restart communications (01) is not offered: illegal function, never a restart
    assert mb.exception_code(bus.transact(mb.diag_req(UNIT, 0x01, b"\xff\x00")), 8) == 1
    # supported sub-functions with a bad data field are 03
    assert mb.exception_code(bus.transact(mb.diag_req(UNIT, 0x0B, b"\x00\x01")), 8) == 3
    assert mb.exception_code(bus.transact(mb.diag_req(UNIT, 0x0A, b"\x00\x00\x00\x00")), 8) == 3


def test_return_query_data_echoes_any_length(bus):
    for data in (b"", b"\x01", b"\xa5\x37", bytes(range(40))):
        req = mb.diag_req(UNIT, 0x00, data)
        assert bus.transact(req) == req


def test_exception_count_includes_broadcast_errors(bus):
    # MSL 6.1.3 counter 3: "comprises also the error detected in broadcast messages
    # even if an exception message is not returned in this case".
    clear_counters(bus)
    a = R.VOUT_SETPOINT
    assert bus.transact(mb.write_single(0, 6, a, R.HR_MAX[a] + 1)) is None  # 03, silent
    assert bus.transact(mb.write_single(0, 6, R.HR_SIZE, 0)) is None  # 02, silent
    assert bus.transact(mb.write_single(0, 6, a, R.HR_MIN[a])) is None  # fine, silent
    assert diag_counter(bus, 0x0D) == 2
    assert diag_counter(bus, 0x0F) == 3  # no response: the three broadcasts
    # server messages: 3 broadcasts + the 0D and 0F queries + this one
    assert diag_counter(bus, 0x0E) == 6


def test_comm_error_count_includes_character_level_errors(bus):
    # MSL 6.1.3 counter 2 (0C): CRC errors, and also frames whose CRC cannot be
    # computed -- overrun, or a message shorter than 3 bytes.
    clear_counters(bus)
    assert bus.send(b"\x07\x03") == []  # runt
    assert bus.send(b"\x07" * 300) == []  # longer than the 256-byte ADU: overrun
    bad = bytearray(mb.read_req(UNIT, 3, 0, 1))
    bad[-1] ^= 0x5A
    assert bus.send(bytes(bad)) == []
    assert diag_counter(bus, 0x0C) == 3
    assert diag_counter(bus, 0x0B) == 2  # the 0C query and this one: bad frames do not count
    # the link-status registers keep the split by cause
    w = mb.words(bus.transact(mb.read_req(UNIT, 4, R.CRC_ERRORS, 2)))
    assert w == [1, 2]


def test_bus_message_count_includes_frames_for_other_servers(bus):
    clear_counters(bus)
    assert bus.transact(mb.read_req(UNIT + 1, 3, 0, 1)) is None
    assert bus.transact(mb.adu(UNIT + 3, 0x41)) is None
    assert diag_counter(bus, 0x0B) == 3
    assert diag_counter(bus, 0x0E) == 2  # the two queries


def test_broadcast_diagnostics_are_neither_answered_nor_executed(bus):
    clear_counters(bus)
    bus.transact(mb.read_req(UNIT + 1, 3, 0, 1))  # something to count
    assert bus.transact(mb.diag_req(0, 0x00, b"\x12\x34")) is None
    assert bus.transact(mb.diag_req(0, 0x0A)) is None  # a broadcast clear is ignored
    assert diag_counter(bus, 0x0B) == 4


# --- broadcast (MSL 2.1) ------------------------------------------------------------
@pytest.mark.parametrize("fc", [0x01, 0x02, 0x03, 0x04, 0x2B, 0x41, 0x07])
def test_broadcast_non_writes_are_silent(bus, fc):
    payload = b"\x0e\x01\x00" if fc == 0x2B else b"\x00\x00\x00\x01"
    assert bus.transact(mb.adu(0, fc, payload)) is None


def test_broadcast_read_write_is_not_executed(bus):
    a = R.VOUT_SETPOINT
    before = mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1)))
    v = R.HR_MIN[a] + 11
    assert v != before[0]
    assert bus.transact(mb.rw_req(0, a, 1, a, [v])) is None
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1))) == before


def test_broadcast_coil_writes_execute(bus):
    assert bus.transact(mb.write_single(0, 5, R.IDENTIFY, 0xFF00)) is None
    assert mb.bits(bus.transact(mb.read_req(UNIT, 1, R.IDENTIFY, 1)), 1) == [1]
    assert bus.transact(mb.write_coils_req(0, R.IDENTIFY, [0])) is None
    assert mb.bits(bus.transact(mb.read_req(UNIT, 1, R.IDENTIFY, 1)), 1) == [0]


# --- exception precedence (MAP 6.x state diagrams: 01 -> 03 -> 02 -> 04) ------------
@pytest.mark.parametrize(
    "fc,payload",
    [
        (0x01, struct.pack(">HH", 0xFFFF, 2001)),
        (0x02, struct.pack(">HH", 0xFFFF, 0)),
        (0x03, struct.pack(">HH", 0xFFFF, 126)),
        (0x04, struct.pack(">HH", 0xFFFF, 0)),
        (0x05, struct.pack(">HH", 0xFFFF, 0x0001)),  # value before address
        (0x0F, struct.pack(">HHB", 0xFFFF, 1969, 247) + bytes(247)),
        (0x0F, struct.pack(">HHB", 0xFFFF, 9, 1) + b"\x00"),  # byte count != ceil(9/8)
        (0x10, struct.pack(">HHB", 0xFFFF, 2, 2) + b"\x00\x00"),  # byte count != 2*qty
        (0x10, struct.pack(">HHB", 0xFFFF, 0, 0)),
        (0x17, struct.pack(">HHHHB", 0xFFFF, 126, 0xFFFF, 1, 2) + b"\x00\x00"),
        (0x17, struct.pack(">HHHHB", 0xFFFF, 1, 0xFFFF, 122, 244) + bytes(4)),  # cannot fit an ADU
        (0x17, struct.pack(">HHHHB", 0xFFFF, 1, 0xFFFF, 1, 4) + bytes(4)),
    ],
)
def test_value_errors_come_before_address_errors(bus, fc, payload):
    assert mb.exception_code(bus.transact(mb.adu(UNIT, fc, payload)), fc) == 3


def test_read_write_checks_both_addresses_before_writing(bus):
    a = R.VOUT_SETPOINT
    before = mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1)))
    v = R.HR_MIN[a] + 5
    assert mb.exception_code(bus.transact(mb.rw_req(UNIT, R.HR_SIZE - 1, 2, a, [v])), 0x17) == 2
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1))) == before
    # maximum legal quantities: 125 read, 121 written
    # (the write lands on read-only registers: 02 from the access check, not 03)
    r = bus.transact(mb.rw_req(UNIT, 0, 125, R.HR_SIZE - 121, [0] * 121))
    assert mb.exception_code(r, 0x17) == 2
    ok = bus.transact(mb.rw_req(UNIT, 0, 125, a, [v]))
    assert len(mb.words(ok)) == 125


# --- bit packing (MAP 6.1/6.2: LSB of the first byte first, zero padding) -----------
def test_discrete_inputs_pack_lsb_first_with_zero_padding(bus):
    pattern = [1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 0, 1, 1, 1, 1]
    base = 40
    set_bits(bus, "di", base, pattern)
    set_bits(bus, "di", base + len(pattern), [1] * 8)  # ones right after the read
    for qty in (1, 8, 9, 10, len(pattern)):
        pdu = mb.body(bus.transact(mb.read_req(UNIT, 2, base, qty)))
        nbytes = (qty + 7) // 8
        assert pdu[1] == nbytes and len(pdu) == 2 + nbytes
        data = pdu[2:]
        assert [(data[i // 8] >> (i % 8)) & 1 for i in range(qty)] == pattern[:qty]
        assert data[-1] >> (qty % 8 or 8) == 0  # unused high bits of the last byte are 0
    assert mb.body(bus.transact(mb.read_req(UNIT, 2, base, 10)))[2:] == bytes([0xCD, 0x01])


def test_write_multiple_coils_ignores_padding_bits(bus):
    # quantity 1, padding bits set: only bit 0 counts
    r = bus.transact(mb.adu(UNIT, 0x0F, struct.pack(">HHB", R.IDENTIFY, 1, 1) + b"\xfe"))
    assert mb.body(r) == bytes([0x0F, 0, R.IDENTIFY, 0, 1])
    assert mb.bits(bus.transact(mb.read_req(UNIT, 1, R.IDENTIFY, 1)), 1) == [0]


# --- ADU size (MSL 2.5.1: 256 bytes at most) ---------------------------------------
def test_largest_adu_is_answered_and_a_longer_one_is_dropped(bus):
    req = mb.diag_req(UNIT, 0, bytes(250))
    assert len(req) == 256
    assert bus.transact(req) == req
    too_long = mb.diag_req(UNIT, 0, bytes(251))
    assert bus.transact(too_long) is None
    assert bus.transact(mb.read_req(UNIT, 3, 0, 1)) is not None


# --- RTU timing (MSL 2.5.1.1) --------------------------------------------------------
def test_frame_after_a_t15_gap_is_discarded_until_t35(bus):
    # Figure 14: after t1.5 the receiver is in "control and waiting"; a character
    # received there flags the frame NOK and the whole frame is deleted at t3.5 --
    # including a complete request glued on after the gap.
    clear_counters(bus)
    req = mb.read_req(UNIT, 3, 0, 1)
    assert bus.send_parts([b"\x01\x02\x03", req], gaps_us=[1200]) == []
    assert diag_counter(bus, 0x0C) == 1  # one NOK frame
    assert bus.transact(req) is not None


def _timing_probe(bus, gap_us: int) -> bool:
    """True when a request split by ``gap_us`` of silence is answered."""
    req = mb.read_req(UNIT, 3, 0, 1)
    out = bus.send_parts([req[:3], req[3:]], gaps_us=[gap_us])
    bus.idle(20_000)
    return len(out) == 1


@pytest.mark.parametrize(
    "baud,inside,outside",
    [
        (9600, 1600, 1850),  # t1.5 = 1.5 x 1146 us = 1719 us (11-bit characters)
        (19200, 800, 950),  # t1.5 = 859 us: still character based at 19200
        (38400, 700, 800),  # fixed t1.5 = 750 us above 19200 baud
    ],
)
def test_t15_is_character_based_up_to_19200_and_fixed_above(bus_at, baud, inside, outside):
    bus = bus_at(baud)
    assert _timing_probe(bus, inside)
    assert not _timing_probe(bus, outside)


@pytest.mark.parametrize("baud,t35_us", [(9600, 4010), (19200, 2005), (115200, 1750)])
def test_t35_separates_frames(bus_at, baud, t35_us):
    # A UART reports a character at its stop bit, so the receiver (like the spec's
    # state machine, which restarts its t3.5 timer on each received character)
    # measures t3.5 from the end of one character to the end of the next: a
    # silence is "under t3.5" when it is shorter than t3.5 minus one character.
    bus = bus_at(baud)
    char_us = round(11e6 / baud)
    a = mb.read_req(UNIT + 1, 3, 0, 1)  # someone else's request...
    b = mb.read_req(UNIT, 3, 0, 1)  # ...then ours, after a silence over / under t3.5
    assert len(bus.send_parts([a, b], gaps_us=[t35_us + 150])) == 1
    bus.idle(20_000)
    # under t3.5 but over t1.5: one NOK frame, deleted whole
    assert bus.send_parts([a, b], gaps_us=[t35_us - char_us - 300]) == []
    bus.idle(20_000)
    assert len(bus.send_parts([a, b], gaps_us=[t35_us + 150])) == 1


# --- FC 2B / 0E read device identification (MAP 6.21) -------------------------------
def test_read_code_above_conformity_answers_at_the_actual_level(bus):
    # "If the server device is asked for a description level (readDevice Code) higher
    # that its conformity level, it must respond in accordance with its actual
    # conformity level": extended (03) on a regular (0x82) device -> the regular objects.
    pdu = mb.body(bus.transact(mb.devid_req(UNIT, 3, 0)))
    assert pdu[2:6] == bytes([3, 0x82, 0, 0])
    regular = mb.devid_objects(bus.transact(mb.devid_req(UNIT, 2, 0)))
    assert mb.devid_objects(bus.transact(mb.devid_req(UNIT, 3, 0))) == regular
    assert sorted(mb.devid_objects(bus.transact(mb.devid_req(UNIT, 3, 4)))) == [4, 5, 6]
    for code in (0, 5, 0xFF):
        assert mb.exception_code(bus.transact(mb.devid_req(UNIT, code, 0)), 0x2B) == 3


def test_individual_access_unknown_object_is_02(bus):
    for obj in (7, 0x80, 0xFF):
        assert mb.exception_code(bus.transact(mb.devid_req(UNIT, 4, obj)), 0x2B) == 2
    pdu = mb.body(bus.transact(mb.devid_req(UNIT, 4, 2)))
    assert pdu[2:7] == bytes([4, 0x82, 0, 0, 1])  # no more follows, one object


def test_stream_access_unknown_start_restarts_at_zero(bus):
    assert sorted(mb.devid_objects(bus.transact(mb.devid_req(UNIT, 2, 0x80)))) == list(range(7))
    assert sorted(mb.devid_objects(bus.transact(mb.devid_req(UNIT, 2, 3)))) == [3, 4, 5, 6]


def test_device_id_missing_mei_type_is_03_not_01(bus):
    # a 2B request too short to carry its MEI type is malformed (03); a present but
    # unsupported MEI type is an unsupported function (01)
    assert mb.exception_code(bus.transact(mb.adu(UNIT, 0x2B)), 0x2B) == 3
    assert mb.exception_code(bus.transact(mb.adu(UNIT, 0x2B, b"\x0d")), 0x2B) == 1
    assert mb.exception_code(bus.transact(mb.adu(UNIT, 0x2B, b"\x0e\x01")), 0x2B) == 3


# --- device-id response size, on the object table itself ----------------------------
def _ask(dev, code: int, obj: int) -> bytes:
    rx = bytearray(256)
    rx[0:5] = bytes([UNIT, 0x2B, 0x0E, code, obj])
    tx = bytearray(256)
    end = dev.respond(rx, 7, tx)
    assert end > 0, end
    return bytes(tx[1:end])


def test_longest_identity_strings_still_fit_one_response():
    # MAP 6.21: a stream response that would not fit the 253-byte PDU must page with
    # "more follows" = 0xFF. The table cuts every object to 32 bytes at boot so the
    # whole regular category always fits one response and paging never arises.
    from rackfw.devid import DeviceId

    names = [bytes([0x41 + i]) * 200 for i in range(7)]
    dev = DeviceId(*(s.decode() for s in names))
    for code, first, ids in ((2, 0, range(7)), (3, 0, range(7)), (1, 0, range(3)), (2, 5, (5, 6))):
        pdu = _ask(dev, code, first)
        assert len(pdu) + 3 <= 256  # unit id + PDU + CRC: one ADU
        assert pdu[3:7] == bytes([0x82, 0, 0, len(ids)])  # conformity, more, next, count
        o = 7
        for oid in ids:
            assert pdu[o] == oid and pdu[o + 2 : o + 2 + pdu[o + 1]] == names[oid][:32]
            o += 2 + pdu[o + 1]
        assert o == len(pdu)
