"""Bus incidents: a noisy line and a babbling transceiver on the rack's RS-485 bus.

The whole default rack (shelves 1, 2; CDUs 3, 4) with the host polling every board.
A capture of the wire is the ground truth for what was corrupted.
"""

from __future__ import annotations

import pytest

from rackhil.capture import Capture
from rackhil.rack import Rack
from rackproto.errors import RackError

pytestmark = pytest.mark.slow

UNITS = (1, 2, 3, 4)


def _expected_serial(unit: int) -> str:
    return f"EMU-{unit:04d}"


def _poll_round(rack: Rack, tally: dict[str, int]) -> None:
    """One polling round: every board's serial number (a value we know exactly)."""
    for unit in UNITS:
        tally["polls"] += 1
        try:
            serial = rack.master.read(unit, "serial")
        except RackError:
            tally["failed"] += 1
            continue
        if serial == _expected_serial(unit):
            tally["correct"] += 1
        else:
            tally["wrong"] += 1


def test_line_at_ber_1e3_host_still_gets_its_data(rack: Rack) -> None:
    """Bit errors at 1e-3 on the wire (about one corrupted frame in four): with the
    daemon's two retries the host still gets ≥ 95 % of its polls with correct values,
    never accepts a wrong one, and counts every corrupted reply as a CRC error."""
    rack.master.retries = 2
    rack.run(2.0)
    capture = Capture(bus=rack.bus)
    fault = rack.line.ber(1e-3)
    tally = {"polls": 0, "correct": 0, "wrong": 0, "failed": 0}
    for _ in range(100):
        _poll_round(rack, tally)
        rack.trace.record(rack.now_s, "polls.correct", tally["correct"])
        rack.trace.record(rack.now_s, "polls.failed", tally["failed"])
        rack.trace.record(rack.now_s, "errors.crc", rack.master.counters.crc_errors)
        rack.trace.record(rack.now_s, "errors.timeouts", rack.master.counters.timeouts)
    rack.line.clear()
    rack.run(0.05)

    assert fault.bits_flipped > 100, "the line was not noisy enough to prove anything"
    assert tally["wrong"] == 0
    assert tally["correct"] >= 0.95 * tally["polls"], tally
    # ground truth from the wire: replies (board -> host) whose CRC was broken in transit
    corrupted_replies = [f for f in capture.frames() if f.source != "host" and f.data and not f.crc_ok]
    assert corrupted_replies, "no reply was hit: the counter check below would be vacuous"
    c = rack.master.counters
    assert c.crc_errors == len(corrupted_replies)
    assert c.requests == tally["polls"]
    assert c.attempts == c.ok + c.crc_errors + c.timeouts + c.frame_errors
    # corrupted requests are never answered: they show up as timeouts on the host
    corrupted_requests = [f for f in capture.frames() if f.source == "host" and not f.crc_ok]
    assert c.timeouts == len(corrupted_requests)
    # and the boards counted the corrupted frames they heard (requests and others' replies)
    board_errors = 0
    for unit in UNITS:
        st = rack.master.read_many(unit, ["crc_errors", "framing_errors"])
        board_errors += st["crc_errors"] + st["framing_errors"]
    assert board_errors > 0


def test_babbling_node_others_recover_once_it_stops(rack: Rack) -> None:
    """A transceiver sticks in transmit and floods the bus with garbage for 3 s: no
    board can be reached meanwhile (and none answers garbage), and once it goes quiet
    every board answers again at the very next poll — no reset, no lost config."""
    m = rack.master
    m.timeout = 0.05
    rack.run(2.0)
    uptime_before = {u: m.read(u, "uptime") for u in UNITS}
    ok_before = m.counters.ok

    babbler = rack.babbler().start()
    t0 = rack.now_s
    during = {"polls": 0, "correct": 0, "wrong": 0, "failed": 0}
    while rack.now_s - t0 < 3.0:
        _poll_round(rack, during)
        rack.trace.record(rack.now_s, "polls.failed", during["failed"])
    babbler.stop()
    assert rack.bus.collisions > 0
    assert during["correct"] == 0 and during["wrong"] == 0
    assert during["failed"] == during["polls"] > 0

    rack.run(0.01)  # t3.5 of silence: receivers resynchronise on it
    after = {"polls": 0, "correct": 0, "wrong": 0, "failed": 0}
    _poll_round(rack, after)
    assert after["correct"] == len(UNITS), after
    for unit in UNITS:
        assert m.read(unit, "uptime") >= uptime_before[unit] + 3  # no reset meanwhile
    assert m.counters.ok > ok_before
