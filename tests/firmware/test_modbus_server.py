"""Modbus RTU server conformance: every function code, exception and framing rule.

Runs against the Board under CPython (fast) and, through the same Node
interface, in the MicroPython WebAssembly VM behind the rackhil bridge (``vm`` +
``slow``). The suite only talks Modbus to the board, so both backends are held
to exactly the same bytes.
"""

from __future__ import annotations

import modbus_client as mb
import pytest

from rackfw import regs_power_shelf as R
from rackfw.unlock import KEY, KEY_COMPLEMENT

UNIT = 7


def test_identity_block_is_at_input_zero(bus):
    w = mb.words(bus.transact(mb.read_req(UNIT, 4, R.VENDOR, 28)))
    text = b"".join(x.to_bytes(2, "big") for x in w[0:8]).rstrip(b"\0")
    assert text == b"rackctl"
    model = b"".join(x.to_bytes(2, "big") for x in w[8:16]).rstrip(b"\0")
    assert model == b"rackctl-shelf"
    assert w[R.FW_VERSION] == 0x0100
    assert w[R.BOARD_TYPE] == 1


@pytest.mark.parametrize("fc,size", [(3, R.HR_SIZE), (4, R.IR_SIZE)])
def test_read_register_limits(bus, fc, size):
    assert len(mb.words(bus.transact(mb.read_req(UNIT, fc, 0, 125)))) == 125
    assert len(mb.words(bus.transact(mb.read_req(UNIT, fc, size - 1, 1)))) == 1
    assert mb.exception_code(bus.transact(mb.read_req(UNIT, fc, 0, 0)), fc) == 3
    assert mb.exception_code(bus.transact(mb.read_req(UNIT, fc, 0, 126)), fc) == 3
    assert mb.exception_code(bus.transact(mb.read_req(UNIT, fc, size - 1, 2)), fc) == 2
    assert mb.exception_code(bus.transact(mb.read_req(UNIT, fc, size, 1)), fc) == 2
    # quantity is checked before the address
    assert mb.exception_code(bus.transact(mb.read_req(UNIT, fc, 0xFFFF, 200)), fc) == 3


def test_write_single_register_and_read_back(bus):
    a = R.VOUT_SETPOINT
    v = (R.HR_MIN[a] + R.HR_MAX[a]) // 2
    assert bus.transact(mb.write_single(UNIT, 6, a, v)) == mb.write_single(UNIT, 6, a, v)
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1))) == [v]


def test_write_range_checks(bus):
    a = R.VOUT_SETPOINT
    before = mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1)))
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, a, R.HR_MAX[a] + 1)), 6) == 3
    if R.HR_MIN[a] > 0:
        assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, a, R.HR_MIN[a] - 1)), 6) == 3
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1))) == before
    # read-only / unmapped holding address, and beyond the table
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, 6, 1)), 6) == 2
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.HR_SIZE, 1)), 6) == 2


def test_app_refusal_is_exception_04(bus):
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.PSU1_ON_CMD, 0)), 6) == 4


def _unlock(bus):
    assert bus.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY)) is not None
    r = bus.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY_COMPLEMENT))
    assert mb.exception_code(r, 6) is None


def test_protected_write_needs_unlock_and_unlock_expires(bus):
    a = R.OV_THRESHOLD
    v = R.HR_MIN[a]
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, a, v)), 6) == 4
    _unlock(bus)
    status = mb.words(bus.transact(mb.read_req(UNIT, 4, R.LOCK_STATE, 2)))
    assert status[0] == 1 and 55 <= status[1] <= 60
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, a, v)), 6) is None
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1))) == [v]
    bus.idle(61_000_000)
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, a, v)), 6) == 4
    assert mb.words(bus.transact(mb.read_req(UNIT, 4, R.LOCK_STATE, 1))) == [0]


def test_wrong_unlock_sequence_stays_locked(bus):
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY_COMPLEMENT)), 6) == 3
    bus.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY))
    bus.idle(6_000_000)  # too slow: the first step expired
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY_COMPLEMENT)), 6) == 3
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.OV_THRESHOLD, R.HR_MIN[R.OV_THRESHOLD])), 6) == 4


def test_write_multiple_registers(bus):
    a = R.VOUT_SETPOINT
    vals = [R.HR_MIN[a], R.HR_MIN[a + 1]]
    r = bus.transact(mb.write_regs_req(UNIT, a, vals))
    assert mb.body(r) == bytes([0x10]) + a.to_bytes(2, "big") + (2).to_bytes(2, "big")
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, a, 2))) == vals


def test_write_multiple_registers_is_all_or_nothing_on_range_error(bus):
    a = R.VOUT_SETPOINT
    before = mb.words(bus.transact(mb.read_req(UNIT, 3, a, 2)))
    r = bus.transact(mb.write_regs_req(UNIT, a, [R.HR_MIN[a] + 1, R.HR_MAX[a + 1] + 1]))
    assert mb.exception_code(r, 0x10) == 3
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, a, 2))) == before


def test_write_multiple_registers_limits(bus):
    fc = 0x10
    # 124 registers cannot even fit an RTU frame: announce them with a short body
    too_many = mb.adu(UNIT, fc, bytes([0, 0x20, 0, 124, 248, 0, 0, 0, 0]))
    assert mb.exception_code(bus.transact(too_many), fc) == 3
    # 123 is a legal quantity: the reply is about the address (6 is read-only), not 03
    assert mb.exception_code(bus.transact(mb.write_regs_req(UNIT, 6, [0] * 123)), fc) == 2
    assert mb.exception_code(bus.transact(mb.write_regs_req(UNIT, R.VOUT_SETPOINT, [1, 2], byte_count=3)), fc) == 3
    assert mb.exception_code(bus.transact(mb.write_regs_req(UNIT, R.HR_SIZE - 1, [0, 0])), fc) == 2
    zero = mb.adu(UNIT, fc, bytes([0, 100, 0, 0, 0]))
    assert mb.exception_code(bus.transact(zero), fc) == 3


def test_read_write_multiple_registers(bus):
    a = R.VOUT_SETPOINT
    v = R.HR_MIN[a] + 3
    r = bus.transact(mb.rw_req(UNIT, a, 2, a, [v]))
    assert mb.words(r)[0] == v  # the write happens before the read
    assert mb.exception_code(bus.transact(mb.rw_req(UNIT, a, 126, a, [v])), 0x17) == 3
    assert mb.exception_code(bus.transact(mb.rw_req(UNIT, R.HR_SIZE, 1, a, [v])), 0x17) == 2


def test_coils_and_discretes(bus):
    assert bus.transact(mb.write_single(UNIT, 5, R.IDENTIFY, 0xFF00)) == mb.write_single(UNIT, 5, R.IDENTIFY, 0xFF00)
    assert mb.bits(bus.transact(mb.read_req(UNIT, 1, 0, 1)), 1) == [1]
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 5, R.IDENTIFY, 0x1234)), 5) == 3
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 5, R.COIL_SIZE, 0xFF00)), 5) == 2
    r = bus.transact(mb.write_coils_req(UNIT, 0, [0]))
    assert mb.body(r) == bytes([0x0F, 0, 0, 0, 1])
    assert mb.bits(bus.transact(mb.read_req(UNIT, 1, 0, 1)), 1) == [0]
    assert mb.exception_code(bus.transact(mb.write_coils_req(UNIT, 0, [1, 1])), 0x0F) == 2
    assert len(mb.bits(bus.transact(mb.read_req(UNIT, 2, 0, R.DI_SIZE)), R.DI_SIZE)) == R.DI_SIZE
    assert mb.exception_code(bus.transact(mb.read_req(UNIT, 2, 0, 2001)), 2) == 3
    assert mb.exception_code(bus.transact(mb.read_req(UNIT, 1, 0, 0)), 1) == 3
    assert mb.exception_code(bus.transact(mb.read_req(UNIT, 2, R.DI_SIZE, 1)), 2) == 2
    bad_count = mb.adu(UNIT, 0x0F, bytes([0, 0, 0, 1, 2, 1, 0]))
    assert mb.exception_code(bus.transact(bad_count), 0x0F) == 3


def test_diagnostics(bus):
    echo = mb.diag_req(UNIT, 0x00, b"\xa5\x5a\x01\x02")
    assert bus.transact(echo) == echo
    assert mb.body(bus.transact(mb.diag_req(UNIT, 0x0A))) == bytes([8, 0, 0x0A, 0, 0])
    bus.transact(mb.read_req(UNIT, 3, 0, 200))  # exception 03
    bus.transact(mb.read_req(UNIT + 1, 3, 0, 1))  # someone else's
    bad = bytearray(mb.read_req(UNIT, 3, 0, 1))
    bad[-1] ^= 0xFF
    bus.send(bytes(bad))

    def counter(sub: int) -> int:
        pdu = mb.body(bus.transact(mb.diag_req(UNIT, sub)))
        assert pdu[:3] == bytes([8, 0, sub])
        return int.from_bytes(pdu[3:5], "big")

    assert counter(0x0C) == 1  # bus CRC errors
    assert counter(0x0D) == 1  # exceptions
    # bus messages since the clear: exception, foreign, 0C, 0D, this one (good CRC, any id)
    assert counter(0x0B) == 5
    # server messages: exception, 0C, 0D, 0B, this one
    assert counter(0x0E) == 5
    assert mb.exception_code(bus.transact(mb.diag_req(UNIT, 0x0B, b"\x00\x01")), 8) == 3
    assert mb.exception_code(bus.transact(mb.diag_req(UNIT, 0x55)), 8) == 1


def test_device_identification(bus):
    basic = mb.devid_objects(bus.transact(mb.devid_req(UNIT, 1, 0)))
    assert basic == {0: b"rackctl", 1: b"rackctl-shelf", 2: b"1.0"}
    regular = mb.devid_objects(bus.transact(mb.devid_req(UNIT, 2, 0)))
    assert sorted(regular) == list(range(7)) and regular[6] == b"rackfw"
    assert mb.devid_objects(bus.transact(mb.devid_req(UNIT, 4, 5))) == {5: b"rackctl-shelf"}
    assert mb.devid_objects(bus.transact(mb.devid_req(UNIT, 1, 0x50))) == basic  # restart at 0
    pdu = mb.body(bus.transact(mb.devid_req(UNIT, 2, 0)))
    assert pdu[2:6] == bytes([2, 0x82, 0, 0])  # code, conformity, more follows, next id
    assert mb.exception_code(bus.transact(mb.devid_req(UNIT, 4, 0x80)), 0x2B) == 2
    assert mb.exception_code(bus.transact(mb.devid_req(UNIT, 5, 0)), 0x2B) == 3
    assert mb.exception_code(bus.transact(mb.devid_req(UNIT, 1, 0, mei=0x0D)), 0x2B) == 1


@pytest.mark.parametrize("fc", [0x07, 0x0B, 0x14, 0x41, 0x7F])
def test_unsupported_function_is_exception_01(bus, fc):
    assert mb.exception_code(bus.transact(mb.adu(UNIT, fc, b"\x00\x00\x00\x01")), fc) == 1


def test_foreign_ids_are_silent(bus):
    for uid in (1, UNIT + 1, 247, 248, 255):
        assert bus.transact(mb.read_req(uid, 3, 0, 1)) is None
        assert bus.transact(mb.adu(uid, 0x41)) is None


def test_broadcast_writes_execute_silently(bus):
    a = R.VOUT_SETPOINT
    v = R.HR_MIN[a] + 7
    assert bus.transact(mb.write_single(0, 6, a, v)) is None
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1))) == [v]
    assert bus.transact(mb.write_regs_req(0, a, [v + 1])) is None
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, a, 1))) == [v + 1]
    assert bus.transact(mb.read_req(0, 3, a, 1)) is None  # reads are not broadcast
    assert bus.transact(mb.write_single(0, 6, a, R.HR_MAX[a] + 1)) is None  # errors too


def test_bad_crc_ignored_and_counted(bus):
    before = mb.words(bus.transact(mb.read_req(UNIT, 4, R.CRC_ERRORS, 1)))[0]
    bad = bytearray(mb.write_single(UNIT, 6, R.VOUT_SETPOINT, R.HR_MIN[R.VOUT_SETPOINT]))
    bad[4] ^= 0x10
    assert bus.transact(bytes(bad)) is None
    assert mb.words(bus.transact(mb.read_req(UNIT, 4, R.CRC_ERRORS, 1)))[0] == before + 1


def test_split_frame_within_t15_is_one_frame(bus):
    req = mb.read_req(UNIT, 3, 0, 2)
    # 300 us of silence inside the frame (< 750 us = t1.5 above 19200 baud)
    out = bus.send_parts([req[:3], req[3:]], gaps_us=[300])
    assert len(out) == 1 and mb.words(out[0]) == mb.words(bus.transact(req))


def test_gap_over_t15_discards_partial_frame(bus):
    before = mb.words(bus.transact(mb.read_req(UNIT, 4, R.FRAMING_ERRORS, 1)))[0]
    req = mb.read_req(UNIT, 3, 0, 2)
    # 1.2 ms silence: more than t1.5 (0.75 ms), less than t3.5 (1.75 ms)
    assert bus.send_parts([req[:4], req[4:]], gaps_us=[1200]) == []
    after = mb.words(bus.transact(mb.read_req(UNIT, 4, R.FRAMING_ERRORS, 1)))[0]
    assert after == before + 1
    # the bytes after the gap formed a runt frame of their own: also a framing error
    # or a CRC error, never a reply; the next good frame is answered normally
    assert bus.transact(req) is not None


def test_garbage_then_good_frame(bus):
    assert bus.send(bytes([0x55, 0xAA, 0x00, 0xFF, 0x13, 0x37, 0x42])) == []
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, 0, 1))) is not None


def test_garbage_glued_to_a_frame_is_not_answered(bus):
    req = mb.read_req(UNIT, 3, 0, 1)
    assert bus.send(b"\x12\x34" + req) == []
    assert bus.transact(req) is not None


def test_fault_clear_calls_app_and_reads_zero(bus):
    assert bus.transact(mb.write_single(UNIT, 6, R.FAULT_CLEAR, 1)) is not None
    assert mb.words(bus.transact(mb.read_req(UNIT, 3, R.FAULT_CLEAR, 1))) == [0]
    assert mb.words(bus.transact(mb.read_req(UNIT, 4, 101, 1))) == [1]  # TestApp's counter
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.FAULT_CLEAR, 2)), 6) == 3


def test_uptime_and_app_ticks_advance(bus):
    w0 = mb.words(bus.transact(mb.read_req(UNIT, 4, R.UPTIME, 2)))
    t0 = mb.words(bus.transact(mb.read_req(UNIT, 4, 100, 1)))[0]
    bus.idle(3_000_000)
    w1 = mb.words(bus.transact(mb.read_req(UNIT, 4, R.UPTIME, 2)))
    t1 = mb.words(bus.transact(mb.read_req(UNIT, 4, 100, 1)))[0]
    assert (w1[0] << 16 | w1[1]) - (w0[0] << 16 | w0[1]) in (2, 3, 4)
    assert 28 <= t1 - t0 <= 32  # 100 ms control ticks


def test_event_window_shows_unlock_events(bus):
    _unlock(bus)
    bus.idle(200_000)
    st = mb.words(bus.transact(mb.read_req(UNIT, 4, R.EVENTS_STORED, 4)))
    stored, head, wseq, wlen = st
    assert stored >= 3 and wlen == min(stored, 8) and wseq == head - wlen + 1
    recs = mb.words(bus.transact(mb.read_req(UNIT, 4, R.EVENT_BASE, 6 * 8)))
    newest = recs[(wlen - 1) * 6 : wlen * 6]
    assert newest[0] == head and newest[3] == 5  # EV_UNLOCK
    # select the first event: the reset/config record of this boot
    bus.transact(mb.write_single(UNIT, 6, R.EVENT_SELECT, 0))
    st = mb.words(bus.transact(mb.read_req(UNIT, 4, R.EVENT_WINDOW_SEQ, 2)))
    assert st == [0, min(stored, 8)]
    first = mb.words(bus.transact(mb.read_req(UNIT, 4, R.EVENT_BASE, 6)))
    assert first[0] == 0 and first[3] in (1, 4)
