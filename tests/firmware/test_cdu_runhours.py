"""CDU pump run hours that survive a reboot, and the limits that became registers.

App-level tests drive ``CduApp`` through the fakes (``test_cdu_app.Cdu``); the
board-level ones run the real Board on a ``FakeFlash`` that outlives the board,
which is what a power cycle is. Saving is the board core's job: the app only sets
``save_request``, which the board must take (see ``_board_takes_save_requests``).
"""

from __future__ import annotations

import inspect

import fwsim
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modbus_client import exception_code, read_req, words, write_regs_req, write_single
from test_cdu_app import Cdu

from rackfw import board as board_module
from rackfw import io_cdu as io
from rackfw import regs_cdu as R
from rackfw.cooling import modes as M
from rackfw.cooling.app import CduApp
from rackfw.cooling.runhours import HOURS_MAX, SAVE_EVERY_MS
from rackfw.events import EV_ALARM
from rackfw.unlock import KEY, KEY_COMPLEMENT

HOUR_S = 3600
DAY_S = 24 * HOUR_S
P1 = R.PUMP_HOURS_BASE
P2 = R.PUMP_HOURS_BASE + R.PUMP_HOURS_STRIDE


def hr32(c: Cdu, addr: int) -> int:
    return c.bank.get_hr32(addr)


def ir32(c: Cdu, addr: int) -> int:
    return (c.bank.get_ir(addr) << 16) | c.bank.get_ir(addr + 1)


def run_counting_saves(c: Cdu, seconds: int) -> int:
    """Run ``seconds`` in 1 s ticks; take every save request the way the board does."""
    saves = 0
    for _ in range(seconds):
        c.step(dt=1000)
        if c.app.save_request:
            c.app.save_request = False
            saves += 1
    return saves


# ------------------------------------------------------------------ map

def test_limit_registers_default_to_the_former_constants():
    assert R.HR_DEFAULT[R.PUMP_OC_LIMIT] == io.PUMP_I_MAX == 1200
    assert R.HR_DEFAULT[R.ROTATE_HOURS] == 24
    assert R.HR_DEFAULT[R.HIGH_DP_PCT] == 150
    assert R.HR_DEFAULT[R.PROCESS_ALARM_DELAY] == 5000
    for a in (R.PUMP_OC_LIMIT, R.ROTATE_HOURS, R.HIGH_DP_PCT, R.PROCESS_ALARM_DELAY, P1, P1 + 1, P2, P2 + 1):
        assert R.HR_ACCESS[a] == 2 and R.HR_PERSIST[a] == 1  # protected, stored


# ------------------------------------------------------------------ run hours, app level

def test_run_hours_mirror_into_the_persisted_registers():
    c = Cdu()
    c.step(20 * 10, dt=100)   # 20 s
    assert hr32(c, P1) == 0
    c.step(20 * 10, dt=100)   # 40 s of which ~39.9 s turning: one 0.01 h step
    assert hr32(c, P1) == 1 == ir32(c, R.PUMP1_RUN_HOURS)
    assert hr32(c, P2) == 0
    assert not c.app.save_request  # a 0.01 h step is not worth a flash write


def test_boot_continues_from_the_stored_hours():
    c2 = Cdu()
    c2.bank.set_hr32(P1, 123456)   # what the board core restored from flash ...
    c2.bank.set_hr32(P2, 123000)   # (4.56 h behind: no rotation due)
    c2.app.start()                 # ... before it starts the app
    c2.step(3)
    assert ir32(c2, R.PUMP1_RUN_HOURS) == 123456 and ir32(c2, R.PUMP2_RUN_HOURS) == 123000
    c2.step(40 * 10)
    assert ir32(c2, R.PUMP1_RUN_HOURS) == 123457 == hr32(c2, P1)


def test_one_save_request_per_hour_of_pump_running_over_a_day():
    c = Cdu()
    saves = run_counting_saves(c, DAY_S)
    assert 23 <= saves <= DAY_S * 1000 // SAVE_EVERY_MS == 24  # the first tick only starts the pump
    h = hr32(c, P1) + hr32(c, P2)
    assert 2399 <= h <= 2400  # 24 h of running, in 0.01 h
    saves += run_counting_saves(c, 60)
    assert saves == 24


def test_no_save_requests_while_the_pumps_stand_still():
    c = Cdu(mode=M.STANDBY)
    assert run_counting_saves(c, 6 * HOUR_S) == 0
    assert hr32(c, P1) == hr32(c, P2) == 0


def test_operator_presets_the_counter_with_both_words():
    c = Cdu()
    c.step(5)
    value = 150_000_00  # 150 000 h
    assert c.write(P1, value >> 16) == 0
    assert c.write(P1 + 1, value & 0xFFFF) == 0
    c.step()
    assert ir32(c, R.PUMP1_RUN_HOURS) == value == hr32(c, P1)
    # a new pump: back to zero
    assert c.write(P1, 0) == 0 and c.write(P1 + 1, 0) == 0
    c.step()
    assert ir32(c, R.PUMP1_RUN_HOURS) == 0


def test_preset_over_the_maximum_is_refused():
    c = Cdu()
    assert c.write(P2, (HOURS_MAX >> 16) + 1) == 3
    c.write(P2, HOURS_MAX >> 16)
    assert c.write(P2 + 1, (HOURS_MAX & 0xFFFF) + 1) == 3
    assert c.write(P2 + 1, HOURS_MAX & 0xFFFF) == 0
    c.step()
    assert ir32(c, R.PUMP2_RUN_HOURS) == HOURS_MAX


@settings(max_examples=60, deadline=None)
@given(old=st.integers(0, HOURS_MAX), new=st.integers(0, HOURS_MAX))
def test_any_valid_fc16_preset_lands_exactly(old, new):
    c = Cdu()
    c.bank.set_hr32(P1, old)
    c.app.start()
    assert c.write(P1, new >> 16) == 0       # FC 16 writes the high word first
    assert c.write(P1 + 1, new & 0xFFFF) == 0
    assert c.app.pumps.run_s[0] == new * 36 and hr32(c, P1) == new


def test_factory_defaults_do_not_erase_the_pumps_life():
    c = Cdu()
    c.bank.set_hr32(P1, 5000)
    c.app.start()
    c.step(2)
    c.bank.set_hr32(P1, 0)  # the factory-defaults command resets every persisted register
    c.step()
    assert hr32(c, P1) == 5000 and c.app.save_request  # put back, and saved again


# ------------------------------------------------------------------ the limits

def test_lower_overcurrent_limit_trips_failover():
    c = Cdu()
    c.amps = 900  # 9 A: healthy against the 12 A default
    c.step(50)
    assert c.ir(R.LEAD_PUMP) == 1 and not c.ir(R.ALARMS) & R.F_ALARMS_PUMP_FAILOVER
    assert c.write(R.PUMP_OC_LIMIT, 800) == 0
    c.step(c.bank.get_hr(R.FAILOVER_DELAY) // 100 + 1)
    assert c.ir(R.LEAD_PUMP) == 2
    assert c.ir(R.PUMP1_STATUS) & R.F_PUMP_STATUS_OVERCURRENT
    assert c.ir(R.ALARMS) & R.F_ALARMS_PUMP_FAILOVER


def test_rotation_interval_register():
    c = Cdu()
    c.bank.set_hr32(P1, 200)   # pump 1 has run 2 h more than pump 2
    c.app.start()
    c.step(10)
    assert c.ir(R.LEAD_PUMP) == 1   # default: rotate after 24 h
    c.write(R.ROTATE_HOURS, 0)       # 0: never
    c.step(10)
    assert c.ir(R.LEAD_PUMP) == 1
    c.write(R.ROTATE_HOURS, 2)
    c.step(2)
    assert c.ir(R.LEAD_PUMP) == 2
    assert (2, 0x102) in c.ev.of(EV_ALARM)  # logged as a rotation, not a failover


def _dp_at(c: Cdu, dp: int) -> None:
    c.s.v[io.S_P_RETURN] = 1500
    c.s.v[io.S_P_SUPPLY] = 1500 + dp


def test_high_dp_alarm_level_register():
    c = Cdu()
    _dp_at(c, 1400)  # 140 % of the 100 kPa setpoint
    c.step(60)
    assert not c.ir(R.ALARMS) & R.F_ALARMS_HIGH_DP
    c.write(R.HIGH_DP_PCT, 130)
    c.step(49)
    assert not c.ir(R.ALARMS) & R.F_ALARMS_HIGH_DP  # still debounced
    c.step(2)
    assert c.ir(R.ALARMS) & R.F_ALARMS_HIGH_DP


def test_process_alarm_delay_register():
    def hot_for(delay_ms: int | None, ticks: int) -> bool:
        c = Cdu()
        if delay_ms is not None:
            c.write(R.PROCESS_ALARM_DELAY, delay_ms)
        c.step(5)
        c.s.v[io.S_T_SUPPLY] = 4600  # over the 45 degC alarm level
        c.step(ticks)
        return bool(c.ir(R.ALARMS) & R.F_ALARMS_HIGH_TEMP)

    assert not hot_for(None, 10) and hot_for(None, 50)   # default 5 s
    assert not hot_for(1000, 9) and hot_for(1000, 10)    # 1 s


# ------------------------------------------------------------------ with the Board

def _board_takes_save_requests() -> bool:
    return "save_request" in inspect.getsource(board_module)


needs_board_hook = pytest.mark.xfail(
    not _board_takes_save_requests(), strict=True,
    reason="rackfw.board does not take the app's save_request yet (board core change)")


class CduSecondTick(CduApp):
    """The CDU app ticking once a second: the same logic (the tick's dt is taken from
    the clock), 10x fewer ticks, so hours of virtual time run in seconds."""

    PERIOD_MS = 1000


TURNING = {io.S_T_SUPPLY: 3000, io.S_T_RETURN: 3500, io.S_T_FAC_IN: 2000, io.S_T_FAC_OUT: 2800,
           io.S_FLOW: 3000, io.S_P_SUPPLY: 2500, io.S_P_RETURN: 1500, io.S_LEVEL: 800,
           io.pump_s(0, io.S_PUMP_RPM): 3000, io.pump_s(0, io.S_PUMP_I): 400}
UNIT = 1


def _boot(flash: fwsim.FakeFlash) -> tuple[fwsim.SimBoard, fwsim.Transactor]:
    sim = fwsim.SimBoard(app=CduSecondTick, unit_id=UNIT, flash=flash)
    sim.sensors.values.update(TURNING)
    return sim, fwsim.Transactor(sim, sim.byte_us, lambda: sim.now)


def _read32(t: fwsim.Transactor, fc: int, addr: int) -> int:
    hi, lo = words(t.transact(read_req(UNIT, fc, addr, 2)))
    return (hi << 16) | lo


@needs_board_hook
def test_run_hours_survive_a_power_cycle():
    flash = fwsim.FakeFlash()
    sim, t = _boot(flash)
    t.idle(int(2.5 * HOUR_S * 1_000_000))
    live = _read32(t, 4, R.PUMP1_RUN_HOURS)
    assert 249 <= live <= 250
    # power cut: the flash is all that is left
    sim2, t2 = _boot(flash)
    t2.idle(2_000_000)
    after = _read32(t2, 4, R.PUMP1_RUN_HOURS)
    assert _read32(t2, 3, P1) == after
    assert live - 100 < after <= live   # saved every hour of running: < 1 h lost
    assert after >= 200


class SectorCountingFlash(fwsim.FakeFlash):
    """Counts erases per 4 KiB sector (the wear that matters)."""

    def __init__(self) -> None:
        super().__init__()
        self.sector_erases: dict[int, int] = {}

    def erase(self, offset: int, n: int) -> None:
        for s in range(offset // 4096, (offset + n) // 4096):
            self.sector_erases[s] = self.sector_erases.get(s, 0) + 1
        super().erase(offset, n)


@needs_board_hook
@pytest.mark.slow
def test_config_saves_over_a_day_of_running_stay_within_the_wear_budget():
    flash = SectorCountingFlash()
    sim, t = _boot(flash)
    seq0 = words(t.transact(read_req(UNIT, 4, R.CONFIG_VERSION, 1)))[0]
    t.idle(DAY_S * 1_000_000)
    seq1 = words(t.transact(read_req(UNIT, 4, R.CONFIG_VERSION, 1)))[0]
    assert 23 <= seq1 - seq0 <= 24
    t.idle(60_000_000)  # the first seconds after boot the pump was only starting
    seq1 = words(t.transact(read_req(UNIT, 4, R.CONFIG_VERSION, 1)))[0]
    assert seq1 - seq0 == 24
    # the two config copies (sectors 0 and 1) take the saves in turn: 12 erases each a day,
    # ~8 300 days to the 100 000 cycles of the RP2040 boards' NOR flash
    assert flash.sector_erases.get(0, 0) == flash.sector_erases.get(1, 0) == 12


def test_preset_over_modbus_needs_unlock_and_is_stored():
    flash = fwsim.FakeFlash()
    sim, t = _boot(flash)
    t.idle(1_000_000)
    reply = t.transact(write_regs_req(UNIT, P2, [0, 4200]))
    assert exception_code(reply, 0x10) == 4   # protected: locked host refused
    t.transact(write_single(UNIT, 6, R.UNLOCK_KEY, KEY))
    t.transact(write_single(UNIT, 6, R.UNLOCK_KEY, KEY_COMPLEMENT))
    assert exception_code(t.transact(write_regs_req(UNIT, P2, [0, 4200])), 0x10) is None
    t.idle(2_000_000)  # the board saves a persisted register 1 s after the write
    assert _read32(t, 4, R.PUMP2_RUN_HOURS) == 4200
    sim2, t2 = _boot(flash)
    t2.idle(2_000_000)
    assert _read32(t2, 4, R.PUMP2_RUN_HOURS) == 4200
