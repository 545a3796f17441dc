"""PowerShelfApp behaviour with fake sensors: telemetry, protection, BBU, redundancy, hot-swap.

A tiny "echo plant" closes the loop just enough: an enabled PSU outputs its voltage
setpoint and the load current is shared by the PSUs that are on.  Every test drives
the condition through the sensors and checks outputs, registers and the event log.
"""

import pytest
from app_fakes import Clock, Events, Outputs, Sensors, default_bank

from rackfw import io_power as io
from rackfw import regs_power_shelf as R
from rackfw.events import (
    EV_FAULT_CLEARED,
    EV_FAULT_RAISED,
    EV_HOTSWAP,
    EV_MODE,
    EV_WARNING,
)
from rackfw.power.app import SETTLE_TICKS, PowerShelfApp
from rackfw.power.bbu import MODE_CHARGING, MODE_DISCHARGING


class Shelf:
    """App + fakes + echo plant.  ``load_a`` in 0.01 A on the DC bus."""

    def __init__(self, present=6, load_a=6000):
        self.s = Sensors()
        self.o = Outputs()
        self.ev = Events()
        self.clk = Clock(1000)
        self.bank = default_bank(R)
        self.load_a = load_a
        self.feeds = [2300, 2300]
        self.override = {}  # (slot, member) -> forced sensor value
        v = self.s.v
        v[io.S_BBU_V] = 5200
        v[io.S_BBU_T] = 250
        v[io.S_BBU_SOC] = 1000
        v[io.S_BBU_SOH] = 950
        for i in range(6):
            v[io.psu_s(i, io.S_PSU_PRESENT)] = 1 if i < present else 0
        self.app = PowerShelfApp(self.bank, self.s, self.o, self.ev, self.clk)
        self.plant()
        self.app.start()
        self.step(SETTLE_TICKS)

    def plant(self):
        v = self.s.v
        v[io.S_FEED1_V], v[io.S_FEED2_V] = self.feeds
        ac = any(f > 1800 for f in self.feeds)
        on = [i for i in range(6) if v[io.psu_s(i, io.S_PSU_PRESENT)]
              and self.o.read(io.psu_o(i, io.O_PSU_ON)) and ac]
        vset = self.bank.get_hr(R.VOUT_SETPOINT)
        share = self.load_a // len(on) if on else 0
        for i in range(6):
            psu_on = i in on
            vals = {
                io.S_PSU_IN_V: self.feeds[i % 2],
                io.S_PSU_IN_I: 1400 if psu_on else 10,
                io.S_PSU_OUT_V: vset if psu_on else 0,
                io.S_PSU_OUT_I: share if psu_on else 0,
                io.S_PSU_T_INLET: 250,
                io.S_PSU_T_HOT: 450,
                io.S_PSU_FAN_RPM: 9000 if self.o.read(io.psu_o(i, io.O_PSU_FAN)) else 0,
                io.S_PSU_AC_OK: 1 if self.feeds[i % 2] > 1800 else 0,
            }
            for m, x in vals.items():
                v[io.psu_s(i, m)] = self.override.get((i, m), x)
        if on:
            v[io.S_BUS_V] = vset
            v[io.S_BUS_I] = self.load_a // 10
            v[io.S_BBU_I] = 0
        elif self.o.read(io.O_BBU_ENABLE):
            v[io.S_BUS_V] = 5000
            v[io.S_BUS_I] = self.load_a // 10
            v[io.S_BBU_I] = -(self.load_a // 10)
            v[io.S_BBU_SOC] -= 1
        else:
            v[io.S_BUS_V] = 0
            v[io.S_BUS_I] = 0

    def step(self, n=1):
        for _ in range(n):
            self.clk.ms += 100
            self.plant()
            self.app.tick(self.clk.ms)

    def ir(self, addr):
        return self.bank.get_ir(addr)

    def psu_on_out(self, i):
        return self.o.read(io.psu_o(i, io.O_PSU_ON))

    def status(self, i):
        return self.ir(R.PSU_BASE + i * R.PSU_STRIDE + R.PSU_STATUS)


def code(slot, flag):
    return (slot << 8) | (flag.bit_length() - 1)


def test_telemetry_is_scaled_and_totalled():
    sh = Shelf(present=6, load_a=12000)  # 120 A
    sh.step(2)
    assert sh.ir(R.PSUS_PRESENT) == 6 and sh.ir(R.PSUS_ON) == 6
    assert sh.ir(R.PSU1_OUT_V) == 5100  # default setpoint 51.00 V
    assert sh.ir(R.PSU1_OUT_I) == 2000
    assert sh.ir(R.PSU1_OUT_P) == 1020  # 51 V * 20 A
    assert sh.ir(R.PSU1_IN_P) == 2300 * 1400 // 1000
    assert sh.ir(R.DC_V) == 5100 and sh.ir(R.DC_I) == 1200
    assert (sh.ir(R.DC_P) << 16 | sh.ir(R.DC_P + 1)) == 61200  # 6120.0 W
    assert sh.status(0) & R.F_PSU_STATUS_POWER_GOOD
    assert sh.ir(R.PSU1_OUT_LIMIT) == 1000
    assert sh.ir(R.FEED1_STATE) == 1 and sh.ir(R.AC_FLAGS) == 0b1111
    assert sh.bank.get_di(R.PSU1_PRESENT_BIT) == 1 and sh.bank.get_di(R.PSU1_GOOD_BIT) == 1
    assert sh.ir(R.SHELF_STATUS) & R.F_SHELF_STATUS_REDUNDANCY_OK


def test_overvoltage_switches_that_psu_off_at_once_and_latches():
    sh = Shelf()
    sh.step()
    sh.override[(1, io.S_PSU_OUT_V)] = sh.bank.get_hr(R.OV_THRESHOLD) + 10
    sh.step()
    assert sh.psu_on_out(1) == 0
    assert sh.psu_on_out(0) == 1
    assert sh.status(1) & R.F_PSU_STATUS_OV
    assert (code(2, R.F_PSU_STATUS_OV), 5710) in sh.ev.of(EV_FAULT_RAISED)
    assert sh.ir(R.SHELF_STATUS) & R.F_SHELF_STATUS_ANY_FAULT
    assert sh.o.read(io.O_ALARM) == 1
    del sh.override[(1, io.S_PSU_OUT_V)]
    sh.step(10)
    assert sh.psu_on_out(1) == 0  # latched: stays off without the fault-clear command


def test_overcurrent_trips_after_the_configured_delay():
    sh = Shelf()
    sh.bank.set_hr(R.PSU1_OC_DELAY, 500)
    sh.step()
    sh.override[(0, io.S_PSU_OUT_I)] = sh.bank.get_hr(R.OC_THRESHOLD) + 100
    sh.step(4)
    assert sh.psu_on_out(0) == 1  # 400 ms over: not yet
    sh.step()
    assert sh.psu_on_out(0) == 0
    assert sh.status(0) & R.F_PSU_STATUS_OC
    assert [c for c, _ in sh.ev.of(EV_FAULT_RAISED)] == [code(1, R.F_PSU_STATUS_OC)]


def test_overtemperature_derates_then_trips():
    sh = Shelf()
    warn = sh.bank.get_hr_s(R.OT_WARNING)
    fault = sh.bank.get_hr_s(R.OT_FAULT)
    sh.override[(2, io.S_PSU_T_HOT)] = (warn + fault) // 2
    sh.step()
    assert sh.status(2) & R.F_PSU_STATUS_OT_WARNING
    assert sh.psu_on_out(2) == 1
    assert io.PSU_RATED_I // 2 < sh.o.read(io.psu_o(2, io.O_PSU_ILIM)) < io.PSU_RATED_I
    assert sh.ir(R.PSU3_OUT_LIMIT) < 1000
    assert sh.ir(R.SHELF_STATUS) & R.F_SHELF_STATUS_DERATING
    assert (code(3, R.F_PSU_STATUS_OT_WARNING), 1) in sh.ev.of(EV_WARNING)
    sh.override[(2, io.S_PSU_T_HOT)] = fault + 1
    sh.step()
    assert sh.psu_on_out(2) == 0
    assert sh.status(2) & R.F_PSU_STATUS_OT


def test_fan_failure_warns_and_keeps_the_psu_running():
    sh = Shelf()
    sh.override[(4, io.S_PSU_FAN_RPM)] = 0
    sh.step(25)
    assert sh.status(4) & R.F_PSU_STATUS_FAN_FAIL
    assert sh.psu_on_out(4) == 1
    assert sh.ir(R.SHELF_STATUS) & R.F_SHELF_STATUS_ANY_WARNING
    assert not sh.ir(R.SHELF_STATUS) & R.F_SHELF_STATUS_ANY_FAULT


def test_latched_fault_clears_only_by_command_and_only_when_gone():
    sh = Shelf()
    fault = sh.bank.get_hr_s(R.OT_FAULT)
    sh.override[(0, io.S_PSU_T_HOT)] = fault + 20
    sh.step()
    assert sh.psu_on_out(0) == 0
    sh.app.clear_faults()  # still hot: refused
    sh.step()
    assert sh.status(0) & R.F_PSU_STATUS_OT and sh.psu_on_out(0) == 0
    assert not sh.ev.of(EV_FAULT_CLEARED)
    sh.override[(0, io.S_PSU_T_HOT)] = 400
    sh.step(5)
    assert sh.psu_on_out(0) == 0  # cool, but nobody cleared it
    sh.app.clear_faults()
    assert (code(1, R.F_PSU_STATUS_OT), 0) in sh.ev.of(EV_FAULT_CLEARED)
    sh.step()
    assert sh.psu_on_out(0) == 1
    assert not sh.status(0) & R.F_PSU_STATUS_OT


def test_both_feeds_lost_runs_on_battery_and_recharges_on_return():
    sh = Shelf(load_a=6000)
    sh.step()
    sh.feeds = [0, 0]
    sh.step(3)
    assert sh.ir(R.BBU_MODE) == MODE_DISCHARGING
    assert sh.ir(R.SHELF_STATUS) & R.F_SHELF_STATUS_ON_BATTERY
    assert sh.o.read(io.O_BBU_ENABLE) == 1
    assert sh.ir(R.BBU_SOC) < 1000
    assert 0 < sh.ir(R.BBU_RUNTIME) < 0xFFFF
    assert (MODE_DISCHARGING, 0) in sh.ev.of(EV_MODE)
    sh.feeds = [2300, 2300]
    sh.step(2)
    assert sh.ir(R.BBU_MODE) == MODE_CHARGING
    assert sh.o.read(io.O_BBU_CHARGE_I) == sh.bank.get_hr(R.BBU_CHARGE_CURRENT)
    assert sh.ir(R.BBU_CYCLES) == 1
    assert not sh.ir(R.SHELF_STATUS) & R.F_SHELF_STATUS_ON_BATTERY


def test_one_feed_lost_reports_degraded_redundancy_not_battery():
    sh = Shelf()
    sh.feeds = [2300, 0]
    sh.step(2)
    st = sh.ir(R.SHELF_STATUS)
    assert st & R.F_SHELF_STATUS_DEGRADED_FEED
    assert not st & R.F_SHELF_STATUS_ON_BATTERY
    assert sh.ir(R.FEED2_STATE) == 0
    assert sh.ir(R.AC_FLAGS) == R.F_AC_FLAGS_FEED_A_PRESENT | R.F_AC_FLAGS_FEED_A_IN_RANGE
    assert (1, 1) in sh.ev.of(EV_WARNING)  # shelf-level degraded_feed raised
    assert sh.status(1) & R.F_PSU_STATUS_AC_FAIL


def test_redundancy_status_follows_load():
    sh = Shelf(present=3, load_a=5000)
    sh.step()
    assert sh.ir(R.SHELF_STATUS) & R.F_SHELF_STATUS_REDUNDANCY_OK
    sh.load_a = 15000  # 150 A: two 60 A PSUs cannot carry it, so no spare
    sh.step()
    assert not sh.ir(R.SHELF_STATUS) & R.F_SHELF_STATUS_REDUNDANCY_OK


def test_turning_off_a_needed_psu_is_refused_with_exception_4():
    sh = Shelf(present=2, load_a=9000)  # 90 A: one 60 A PSU cannot carry it
    sh.step()
    assert sh.app.on_write(R.PSU1_ON_CMD, 0) == 4
    assert sh.app.on_write(R.PSU1_ON_CMD, 1) == 0
    sh.load_a = 3000
    sh.step()
    assert sh.app.on_write(R.PSU1_ON_CMD, 0) == 0
    assert sh.app.on_write(R.PSU1_OC_DELAY, 0) == 0  # other registers in the block pass


def test_turning_off_is_honoured_on_the_next_tick():
    sh = Shelf(present=6, load_a=3000)
    sh.step()
    assert sh.app.on_write(R.PSU6_ON_CMD, 0) == 0
    sh.bank.set_hr(R.PSU6_ON_CMD, 0)  # the board stores an accepted write
    sh.step()
    assert sh.psu_on_out(5) == 0
    assert sh.ir(R.PSUS_ON) == 5


@pytest.mark.parametrize(
    "addr,value",
    [
        (R.VOUT_SETPOINT, 5700),  # at the default OV threshold (57.00 V)
        (R.OV_THRESHOLD, 5100),  # at the default setpoint
        (R.OT_WARNING, 950),  # at the default OT fault level
        (R.OT_FAULT, 850),  # at the default OT warning level
    ],
)
def test_inconsistent_thresholds_are_illegal_values(addr, value):
    sh = Shelf()
    assert sh.app.on_write(addr, value) == 3


def test_hot_swap_is_detected_and_logged():
    sh = Shelf(present=6)
    sh.step()
    assert not sh.ev.of(EV_HOTSWAP)  # the boot inventory is not a hot-swap
    sh.s.v[io.psu_s(2, io.S_PSU_PRESENT)] = 0
    sh.step()
    assert sh.ev.of(EV_HOTSWAP) == [(3, 0)]
    assert sh.ir(R.PSUS_PRESENT) == 5
    assert sh.psu_on_out(2) == 0
    assert sh.bank.get_di(R.PSU3_PRESENT_BIT) == 0
    sh.s.v[io.psu_s(2, io.S_PSU_PRESENT)] = 1
    sh.step(2)
    assert sh.ev.of(EV_HOTSWAP) == [(3, 0), (3, 1)]
    assert sh.psu_on_out(2) == 1


def test_removing_a_faulted_psu_forgets_its_fault():
    sh = Shelf()
    sh.override[(3, io.S_PSU_OUT_V)] = 6000
    sh.step()
    assert sh.status(3) & R.F_PSU_STATUS_OV
    del sh.override[(3, io.S_PSU_OUT_V)]
    sh.s.v[io.psu_s(3, io.S_PSU_PRESENT)] = 0
    sh.step()
    sh.s.v[io.psu_s(3, io.S_PSU_PRESENT)] = 1
    sh.step(2)
    assert sh.psu_on_out(3) == 1
    assert (code(4, R.F_PSU_STATUS_OV), 0) in sh.ev.of(EV_FAULT_CLEARED)


def test_psu_not_answering_is_flagged_comms_and_not_counted():
    sh = Shelf(present=6)
    sh.step()
    sh.override[(0, io.S_PSU_OUT_V)] = io.SENSOR_OPEN
    sh.step()
    st = sh.status(0)
    assert st & R.F_PSU_STATUS_COMMS and not st & R.F_PSU_STATUS_POWER_GOOD
    assert sh.psu_on_out(0) == 1  # keeps its last command
    assert sh.app.red.cap_w[0] == 0
    assert (code(1, R.F_PSU_STATUS_COMMS), 1) in sh.ev.of(EV_WARNING)
    del sh.override[(0, io.S_PSU_OUT_V)]
    sh.step()
    assert not sh.status(0) & R.F_PSU_STATUS_COMMS
    assert (code(1, R.F_PSU_STATUS_COMMS), 0) in sh.ev.of(EV_WARNING)


def test_boot_settle_takes_inventory_silently():
    """Sensors still reading 0 at boot (first ADC/PMBus reads) must not look like
    six hot-swaps and a dead battery."""
    s, o, ev, clk = Sensors(), Outputs(), Events(), Clock(1000)
    bank = default_bank(R)
    app = PowerShelfApp(bank, s, o, ev, clk)
    app.start()  # everything still reads 0
    clk.ms += 100
    app.tick(clk.ms)
    s.v.update({io.S_FEED1_V: 2300, io.S_FEED2_V: 2300, io.S_BBU_V: 5200, io.S_BBU_T: 250,
                io.S_BBU_SOC: 1000, io.S_BBU_SOH: 950})
    for i in range(6):
        for m, x in ((io.S_PSU_PRESENT, 1), (io.S_PSU_AC_OK, 1), (io.S_PSU_OUT_V, 5100),
                     (io.S_PSU_FAN_RPM, 9000), (io.S_PSU_T_HOT, 400)):
            s.v[io.psu_s(i, m)] = x
    for _ in range(SETTLE_TICKS + 3):
        clk.ms += 100
        app.tick(clk.ms)
    assert ev.log_ == []
    assert bank.get_ir(R.PSUS_PRESENT) == 6
    assert o.read(io.O_BBU_ENABLE) == 1
