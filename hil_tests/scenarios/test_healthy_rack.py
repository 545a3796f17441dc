"""The baseline: a healthy rack, polled like the daemon polls it, for ten simulated minutes.

Nothing is injected.  Every poll must succeed, every value must agree with the plant it
measures, no board may raise a fault or count a bad frame.  If this scenario is not
boringly clean, no incident scenario means anything.
"""

from __future__ import annotations

import pytest

from rackhil.rack import Rack

pytestmark = pytest.mark.slow

MINUTES = 10
PERIOD_S = 2.0  # every board is polled every 2 s (the daemon's telemetry blocks)


def test_healthy_rack_ten_minutes_no_errors(rack: Rack) -> None:
    m = rack.master
    shelves = {u: rack.shelf(u) for u in (1, 2)}
    cdus = {u: rack.cdu(u).plant for u in (3, 4)}
    names = {u: rack.unit(u).name for u in (1, 2, 3, 4)}  # the rack traces the plants
    rack.run(5.0)
    mismatches: list[str] = []

    def poll(t: float) -> None:
        for u, shelf in shelves.items():
            blk = m.read_block(u, "shelf")
            rack.trace.record(rack.now_s, f"bus_v.{names[u]}", blk["dc_v"])
            if abs(blk["dc_v"] - shelf.bus_v) > 0.1 or blk["psus_on"] != 6 or "any_fault" in blk["shelf_status"]:
                mismatches.append(f"t={t:.1f} shelf {u}: {blk} vs bus {shelf.bus_v:.2f} V")
        for u, cdu in cdus.items():
            loop = m.read_block(u, "loop")
            rack.trace.record(rack.now_s, f"t_supply.{names[u]}", loop["t_supply"])
            if abs(loop["t_supply"] - cdu.t_supply_c) > 0.2 or loop["mode"] != "auto" or loop["alarms"]:
                mismatches.append(f"t={t:.1f} cdu {u}: {loop} vs plant {cdu.t_supply_c:.2f} °C")

    rack.every(PERIOD_S, MINUTES * 60.0, poll)

    c = m.counters
    assert c.requests >= MINUTES * 60 / PERIOD_S * 4
    assert c.ok == c.requests, c.as_dict()
    assert c.crc_errors == c.timeouts == c.frame_errors == c.exceptions == c.retries == 0
    assert not mismatches, mismatches[:5]
    for u in (1, 2, 3, 4):
        st = m.read_block(u, "status")
        assert st["crc_errors"] == 0 and st["framing_errors"] == 0, (u, st)
        assert st["exceptions"] == 0
        assert st["uptime"] >= MINUTES * 60  # nobody rebooted
        assert st["messages"] >= MINUTES * 60 / PERIOD_S  # it saw its polls
    for shelf in shelves.values():
        assert not shelf.collapsed
    for cdu in cdus.values():
        assert 25.0 <= cdu.t_supply_c <= 35.0  # the loops are controlling
    assert rack.bus.collisions == 0
