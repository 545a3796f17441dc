"""Controller-board incidents: power lost mid-transaction, firmware hung.

One CDU (unit 3) on the bus with the host.  What must survive a reset is the stored
configuration (flash, two copies with CRC); what must show it happened is the reset
cause register and the event log.
"""

from __future__ import annotations

import pytest

from rackfw import events as ev
from rackhil.rack import Rack
from rackproto import pdu as pdus
from rackproto.adu import build
from rackproto.errors import DeviceTimeout

pytestmark = pytest.mark.slow

CDU = 3


def _cdu(make_rack) -> Rack:
    rack = make_rack(boards=(CDU,))
    cdu = rack.cdu(CDU).plant
    rack.trace.probe("pump_rpm.p1", lambda: cdu.pumps[0].rpm, unit="rpm")
    rack.run(5.0)
    return rack


def _raw_reset_cause(rack: Rack) -> int:
    addr = rack.master.regmap(CDU).get("reset_cause").address
    return rack.master.read_registers(CDU, "input", addr, 1)[0]


def test_power_cut_mid_write_keeps_the_stored_config(make_rack) -> None:
    """The operator saved a 29 °C set point; while the host is sending a new block of
    settings the board loses power.  The half-received write is not applied, the board
    comes back with the last stored configuration, reports a power-on reset and logs the
    reset and the configuration load; the host's retry then lands and survives the next
    power cycle too."""
    rack = _cdu(make_rack)
    m = rack.master
    m.write(CDU, "t_supply_sp", 29.0)
    rack.run(2.0)  # the firmware debounces config saves by 1 s
    saved_version = m.read(CDU, "config_version")
    assert saved_version >= 1

    # new settings: t_supply_sp 28.0, dp_sp 110.0, manual pump 60 %, manual valve 40 %
    reg = m.regmap(CDU)
    words = [w for name, v in (("t_supply_sp", 28.0), ("dp_sp", 110.0), ("manual_pump_speed", 60.0),
                               ("manual_valve_pos", 40.0)) for w in reg.encode_value(name, v)]
    frame = build(CDU, pdus.WriteRegistersRequest(reg.get("t_supply_sp").address, tuple(words)))
    rack.host.write(frame)
    bus = rack.bus
    bus.step(bus.now_us + (len(frame) // 2) * bus.line.byte_us)  # half the request is in
    rack.board(CDU).power_cycle()
    assert rack.host.read_frame(0.1) == b""  # no answer to a request it never completed

    rack.run(1.0)
    assert m.read(CDU, "t_supply_sp") == 29.0
    assert m.read(CDU, "dp_sp") == 100.0  # the torn write did not half-apply
    assert m.read(CDU, "config_version") == saved_version
    assert _raw_reset_cause(rack) == ev.RESET_POWER_ON
    assert m.read(CDU, "uptime") <= 2
    log = m.events(CDU)
    resets = [e for e in log if e.kind == "reset"]
    assert resets and resets[-1].code == ev.RESET_POWER_ON
    assert resets[-1].value >= 1  # boot counter: not the first boot
    assert any(e.kind == "config" and e.code == ev.CFG_LOADED and e.seq > resets[-1].seq - 3 for e in log)
    assert m.read(CDU, "mode") == "auto"  # and it is controlling again

    m.write_registers(CDU, reg.get("t_supply_sp").address, words)  # the host retries
    rack.run(2.0)
    rack.board(CDU).power_cycle()
    rack.run(1.0)
    assert m.read_many(CDU, ["t_supply_sp", "dp_sp"]) == {"t_supply_sp": 28.0, "dp_sp": 110.0}
    assert rack.unit(CDU).resets == 2


def test_hung_firmware_is_reset_by_the_watchdog(make_rack) -> None:
    """The firmware's main loop gets stuck: the board stops answering and stops
    feeding its watchdog, which resets it within the watchdog period; it comes back on
    its own with its configuration, reports a watchdog reset and logs it."""
    rack = _cdu(make_rack)
    m = rack.master
    m.timeout = 0.05
    m.write(CDU, "t_supply_sp", 31.0)
    rack.run(2.0)

    rack.board(CDU).hang()
    t_hang = rack.now_s
    with pytest.raises(DeviceTimeout):
        m.read(CDU, "mode")
    silent = 0
    answered_at = None
    while rack.now_s - t_hang < 6.0:
        try:
            m.read(CDU, "uptime")
        except DeviceTimeout:
            silent += 1
            rack.trace.record(rack.now_s, "answers.cdu", 0)
            rack.run(0.2)
            continue
        answered_at = rack.now_s
        rack.trace.record(rack.now_s, "answers.cdu", 1)
        break
    assert silent >= 3, "the board kept answering: it was not hung"
    assert answered_at is not None, "the watchdog never reset the board"
    assert 1.5 <= answered_at - t_hang <= 3.5  # the 2 s watchdog, plus the boot
    assert rack.unit(CDU).watchdog_resets == 1
    assert _raw_reset_cause(rack) == ev.RESET_WATCHDOG
    assert m.read(CDU, "t_supply_sp") == 31.0
    resets = [e for e in m.events(CDU) if e.kind == "reset"]
    assert resets[-1].code == ev.RESET_WATCHDOG
    rack.run(3.0)
    assert m.read(CDU, "mode") == "auto"
