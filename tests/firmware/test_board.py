"""Board behaviour beyond the Modbus conformance suite: RS-485 DE timing, RTU timing at
low baud, config persistence across reboots, board commands, watchdog policy, tick wrap."""

from __future__ import annotations

import modbus_client as mb
from conftest import UNIT, cpython_bus
from fwsim import FakeFlash
from hypothesis import given, settings
from hypothesis import strategies as st

from rackfw import events as ev
from rackfw import regs_power_shelf as R
from rackfw.unlock import KEY, KEY_COMPLEMENT


def test_de_high_only_while_transmitting():
    bus = cpython_bus()
    sim = bus.sim
    reply = bus.transact(mb.read_req(UNIT, 3, 0, 10))
    assert reply is not None
    (t_send, data), = sim.uart.sent[-1:]
    rises = [t for t, v in sim.de.log if v == 1]
    falls = [t for t, v in sim.de.log if v == 0 and t > 0]
    assert rises[-1] == t_send  # asserted right at the start of the reply
    tx_end = t_send + len(data) * sim.byte_us
    assert tx_end <= falls[-1] <= tx_end + sim.byte_us  # released within one char time
    assert sim.de.level == 0


def test_no_reply_no_de():
    bus = cpython_bus()
    n = len(bus.sim.de.log)
    assert bus.transact(mb.read_req(UNIT + 1, 3, 0, 1)) is None
    assert len(bus.sim.de.log) == n


def test_reply_starts_after_t35_of_silence():
    bus = cpython_bus()
    req = mb.read_req(UNIT, 3, 0, 1)
    t0 = bus.t + 5000
    bus.transact(req)
    t_send = bus.sim.uart.sent[-1][0]
    end_of_request = t0 + len(req) * bus.byte_us
    assert end_of_request + 1750 <= t_send <= end_of_request + 1750 + 100


def test_low_baud_uses_character_times():
    bus = cpython_bus(baud=9600)  # char = 1146 us, t1.5 = 1718 us, t3.5 = 4010 us
    req = mb.read_req(UNIT, 3, 0, 1)
    assert len(bus.send_parts([req[:3], req[3:]], gaps_us=[1500])) == 1  # < t1.5: one frame
    assert bus.send_parts([req[:3], req[3:]], gaps_us=[2500]) == []  # > t1.5: broken
    t0 = bus.t + 5000
    bus.transact(req)
    t_send = bus.sim.uart.sent[-1][0]
    assert t_send >= t0 + len(req) * bus.byte_us + 4010


def _unlock(bus):
    bus.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY))
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY_COMPLEMENT)), 6) is None


def test_config_persists_across_reboot_and_factory_defaults():
    flash = FakeFlash()
    bus = cpython_bus(flash=flash)
    _unlock(bus)
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.MODBUS_ADDRESS, 42)), 6) is None
    oc = R.PSU1_OC_DELAY
    v = (R.HR_MIN[oc] + R.HR_MAX[oc]) // 2
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, oc, v)), 6) is None
    writes = flash.writes
    bus.idle(500_000)
    assert flash.writes == writes  # debounced: nothing written yet
    bus.idle(1_000_000)
    assert flash.writes > writes
    seq = mb.words(bus.transact(mb.read_req(UNIT, 4, R.CONFIG_VERSION, 1)))[0]
    assert seq == 1

    # reboot on the same flash with no unit id strap: the stored address applies
    bus2 = cpython_bus(unit_id=0, flash=flash)
    assert bus2.transact(mb.read_req(UNIT, 3, oc, 1)) is None
    assert mb.words(bus2.transact(mb.read_req(42, 3, oc, 1))) == [v]
    assert mb.words(bus2.transact(mb.read_req(42, 3, R.MODBUS_ADDRESS, 1))) == [42]

    bus2.transact(mb.write_single(42, 6, R.COMMAND, 3))  # factory_defaults (saves)
    bus2.idle(200_000)
    assert mb.words(bus2.transact(mb.read_req(42, 3, R.COMMAND, 1))) == [0]
    bus3 = cpython_bus(unit_id=0, flash=flash)
    assert mb.words(bus3.transact(mb.read_req(1, 3, R.MODBUS_ADDRESS, 1))) == [1]
    assert mb.words(bus3.transact(mb.read_req(1, 4, R.CONFIG_VERSION, 1))) == [2]


def test_config_from_another_map_layout_is_ignored():
    flash = FakeFlash()
    bus = cpython_bus(flash=flash)
    bus.transact(mb.write_single(UNIT, 6, R.VOUT_SETPOINT, R.HR_MIN[R.VOUT_SETPOINT] + 5))
    bus.transact(mb.write_single(UNIT, 6, R.COMMAND, 1))  # save_config now
    bus.idle(100_000)
    # the same flash in a board built from the CDU map: different signature
    from rackfw.cooling.app import CduApp

    other = cpython_bus(flash=flash, app=CduApp)
    other.idle(200_000)
    head = mb.words(other.transact(mb.read_req(UNIT, 4, R.EVENT_HEAD, 1)))[0]
    other.transact(mb.write_single(UNIT, 6, R.EVENT_SELECT, max(0, head - 7)))
    recs = mb.words(other.transact(mb.read_req(UNIT, 4, R.EVENT_BASE, 48)))
    kinds = [(recs[i + 3], recs[i + 4]) for i in range(0, 48, 6)]
    configs = [code for kind, code in kinds if kind == ev.EV_CONFIG]
    # first boot saved a config; this boot found it but from another layout: defaults
    assert configs[-2:] == [ev.CFG_SAVED, ev.CFG_DEFAULTS]
    assert (ev.EV_RESET, 0) in kinds


def test_reboot_command_needs_a_reset_hook():
    bus = cpython_bus()
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.COMMAND, 2)), 6) == 4
    resets: list[int] = []
    bus = cpython_bus(board_kwargs={"reset": lambda: resets.append(1)})
    assert mb.exception_code(bus.transact(mb.write_single(UNIT, 6, R.COMMAND, 2)), 6) is None
    bus.idle(100_000)
    assert resets == [1]


def test_watchdog_fed_per_tick_and_withheld_when_tx_wedged():
    bus = cpython_bus()
    sim = bus.sim
    feeds = sim.wdt.feeds
    bus.idle(1_000_000)
    assert 9 <= sim.wdt.feeds - feeds <= 11  # one feed per 100 ms tick
    sim.uart.stuck = True  # the UART never finishes: transmitter wedged
    bus.send(mb.read_req(UNIT, 3, 0, 1))
    before = sim.wdt.feeds
    bus.idle(1_000_000)
    assert sim.wdt.feeds == before
    assert sim.board.wdt_withheld >= 9


def test_tick_deadline_survives_clock_wrap():
    # start 0.5 s before the 2**30 us wrap of ticks_us (and well before ticks_ms wraps)
    bus = cpython_bus(start_us=(1 << 30) - 500_000)
    t0 = mb.words(bus.transact(mb.read_req(UNIT, 4, 100, 1)))[0]
    bus.idle(2_000_000)
    t1 = mb.words(bus.transact(mb.read_req(UNIT, 4, 100, 1)))[0]
    assert 18 <= t1 - t0 <= 22
    assert bus.transact(mb.read_req(UNIT, 3, 0, 1)) is not None


def test_identify_coil_and_unlocked_discrete():
    bus = cpython_bus()
    assert mb.bits(bus.transact(mb.read_req(UNIT, 2, 0, 3)), 3)[1] == 0
    _unlock(bus)
    bus.idle(200_000)
    assert mb.bits(bus.transact(mb.read_req(UNIT, 2, 0, 3)), 3)[1] == 1


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([
        mb.read_req(UNIT, 3, 0, 6),
        mb.read_req(UNIT, 4, 24, 4),
        mb.write_regs_req(UNIT, R.VOUT_SETPOINT, [R.HR_MIN[R.VOUT_SETPOINT]]),
        mb.devid_req(UNIT, 1, 0),
    ]),
    st.data(),
)
def test_split_anywhere_with_short_gaps_gives_the_same_reply(req, data):
    """The framer must not care how a frame is chopped while gaps stay under t1.5."""
    whole = cpython_bus().transact(req)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, len(req) - 1), max_size=len(req)))))
    parts = [req[a:b] for a, b in zip([0, *cuts], [*cuts, len(req)], strict=True)]
    gaps = data.draw(st.lists(st.integers(0, 700), min_size=len(parts), max_size=len(parts)))
    garbage = data.draw(st.binary(max_size=12))
    bus = cpython_bus()
    if garbage:
        assert bus.send(garbage) == []  # noise on the bus, then >= t3.5 of silence
    assert bus.send_parts(parts, gaps) == [whole]


def test_stored_baud_applied_when_uart_can_change_speed():
    flash = FakeFlash()
    bus = cpython_bus(flash=flash)
    _unlock(bus)
    ok = bus.transact(mb.write_single(UNIT, 6, R.BAUD, 2))  # b38400
    assert mb.exception_code(ok, 6) is None
    bus.transact(mb.write_single(UNIT, 6, R.COMMAND, 1))  # save_config
    bus.idle(100_000)

    import fwsim

    class SettableUart(fwsim.FakeUart):
        def set_baud(self, baud: int) -> None:
            self.baud = baud
            self.byte_us = 11_000_000 // baud

    orig = fwsim.FakeUart
    fwsim.FakeUart = SettableUart  # type: ignore[misc]
    try:
        bus2 = cpython_bus(flash=flash)
    finally:
        fwsim.FakeUart = orig  # type: ignore[misc]
    assert bus2.sim.uart.baud == 38400 and bus2.sim.board.link.baud == 38400
    plain = cpython_bus(flash=flash)  # a UART without set_baud keeps its speed
    assert plain.sim.board.link.baud == 115200



def test_link_registers_show_the_active_unit_id_and_speed():
    """modbus_address/baud read what the board runs, not the map defaults (id 1, 19200):
    a host that saves the config must not move the board to another id or speed."""
    from fwsim import SimBoard

    from rackfw import regs_common as RC
    from rackfw.board import BAUDS

    sim = SimBoard(unit_id=7, baud=115200)
    assert sim.board.bank.hr[RC.MODBUS_ADDRESS] == 7
    assert BAUDS[sim.board.bank.hr[RC.BAUD]] == 115200
