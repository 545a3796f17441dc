"""Event log: typed records with time and boot counter, persisted in a flash ring."""

from __future__ import annotations

import pytest
from fwsim import FakeFlash, PowerCut
from hypothesis import given, settings
from hypothesis import strategies as st

from rackfw import events as ev
from rackfw.eventlog import PER_SECTOR, REC, EventLog, record_seq
from rackfw.timebase import Uptime

SECTORS = 2


class FixedUptime:
    def __init__(self, seconds: int = 0, ms: int = 0) -> None:
        self.seconds = seconds
        self.ms = ms

    def millis(self) -> int:
        return self.ms


def decode(buf: bytearray) -> dict[str, int]:
    return {
        "seq": int.from_bytes(buf[0:4], "big"),
        "time_ms": int.from_bytes(buf[4:8], "big"),
        "boot": int.from_bytes(buf[8:10], "big"),
        "kind": buf[10],
        "code": int.from_bytes(buf[12:14], "big"),
        "value": int.from_bytes(buf[14:16], "big"),
    }


def read(log: EventLog, seq: int) -> dict[str, int] | None:
    buf = bytearray(REC)
    return decode(buf) if log.read(seq, buf) else None


def test_record_fields_and_time(flash):
    up = FixedUptime(12, 345)
    log = EventLog(flash, 0, SECTORS, up)
    log.log(ev.EV_FAULT_RAISED, 0x0102, 0xBEEF)
    assert log.count == 1 and log.head == 0
    r = read(log, 0)
    assert r == {"seq": 0, "time_ms": 12345, "boot": 0, "kind": ev.EV_FAULT_RAISED,
                 "code": 0x0102, "value": 0xBEEF}
    log.flush()
    assert read(log, 0) == r  # same record, now from flash


def test_time_wraps_mod_2_32_without_long_ints(flash):
    up = FixedUptime(5_000_000, 999)  # 57 days
    log = EventLog(flash, 0, SECTORS, up)
    log.log(ev.EV_MODE, 1, 2)
    assert read(log, 0)["time_ms"] == (5_000_000 * 1000 + 999) % (1 << 32)


def test_persists_across_boots_and_counts_boots(flash):
    log = EventLog(flash, 0, SECTORS, FixedUptime())
    for i in range(5):
        log.log(ev.EV_WARNING, i, i * 10)
    log.flush()
    log2 = EventLog(flash, 0, SECTORS, FixedUptime())
    assert log2.boot == 1 and log2.next_seq == 5 and log2.count == 5
    assert read(log2, 3)["code"] == 3
    log2.log(ev.EV_RESET, 1, log2.boot)
    log2.flush()
    log3 = EventLog(flash, 0, SECTORS, FixedUptime())
    assert log3.boot == 2 and read(log3, 5)["boot"] == 1


def test_unflushed_events_are_lost_flushed_ones_kept(flash):
    log = EventLog(flash, 0, SECTORS, FixedUptime())
    log.log(ev.EV_WARNING, 1, 0)
    log.flush()
    log.log(ev.EV_WARNING, 2, 0)  # power cut before flush
    log2 = EventLog(flash, 0, SECTORS, FixedUptime())
    assert log2.next_seq == 1 and read(log2, 1) is None


def test_ring_overwrites_oldest_sector(flash):
    log = EventLog(flash, 0, SECTORS, FixedUptime())
    total = SECTORS * PER_SECTOR + 37
    for i in range(total):
        log.log(ev.EV_ALARM, i & 0xFFFF, 0)
        if i % 7 == 0:
            log.flush()
    log.flush()
    # writing into sector 0 again erased its 256 oldest records
    assert log.oldest == total - 37 - (SECTORS - 1) * PER_SECTOR
    assert read(log, log.oldest - 1) is None
    assert read(log, log.oldest)["code"] == log.oldest
    assert read(log, total - 1)["code"] == total - 1
    log2 = EventLog(flash, 0, SECTORS, FixedUptime())
    assert (log2.oldest, log2.next_seq) == (log.oldest, log.next_seq)


def test_torn_record_is_skipped(flash):
    log = EventLog(flash, 0, SECTORS, FixedUptime())
    for i in range(3):
        log.log(ev.EV_WARNING, i, 0)
    log.flush()
    log.log(ev.EV_WARNING, 3, 0)
    flash.cut_after = 9  # power fails part-way through programming record 3
    with pytest.raises(PowerCut):
        log.flush()
    flash.cut_after = None
    buf = bytearray(REC)
    flash.read(3 * REC, buf, REC)
    assert record_seq(buf) == -1
    log2 = EventLog(flash, 0, SECTORS, FixedUptime())
    assert log2.next_seq == 3 and log2.count == 3


def test_queue_overflow_flushes_instead_of_dropping(flash):
    log = EventLog(flash, 0, SECTORS, FixedUptime())
    for i in range(40):
        log.log(ev.EV_WARNING, i, 0)
    assert all(read(log, i)["code"] == i for i in range(40))


def test_uptime_ticks_wrap():
    up = Uptime((1 << 30) - 500)
    assert up.update(((1 << 30) - 500 + 2700) & ((1 << 30) - 1)) == 2
    assert up.millis() == 700


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 10), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)),
                min_size=1, max_size=80),
       st.integers(1, 9))
def test_every_logged_event_reads_back(events, flush_every):
    flash = FakeFlash(SECTORS * 4096)
    log = EventLog(flash, 0, SECTORS, FixedUptime(7))
    for i, (kind, code, value) in enumerate(events):
        log.log(kind, code, value)
        if i % flush_every == 0:
            log.flush()
    for i, (kind, code, value) in enumerate(events):
        r = read(log, i)
        assert (r["kind"], r["code"], r["value"]) == (kind, code, value)
