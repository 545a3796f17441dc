"""Both boards, real firmware in the MicroPython WebAssembly VM, closed around the plant models.

Each board boots from ``boards/emulated/main.py`` (Board + application), then runs
10 simulated minutes against ``rackhil.plants`` (sensor values refreshed every
``SAMPLE_S`` of virtual time).  Heap budgets are *measured* (the VM does not enforce a
heap size): live heap = ``gc.mem_alloc()`` after ``gc.collect()``.

Budgets (stated here, checked below):

* ``BOARD_BUDGET`` — the whole board: core, generated register tables, application,
  all compiled from source in the VM (a deployed build loads .mpy and needs less);
* ``APP_BUDGET`` — the application alone: its modules (io table, PID, app package)
  compiled from source plus the application object's state after 10 minutes of ticks;
* ``TICK_ALLOC`` — bytes allocated by the control tick: none.

Figures land in ``artifacts/apps_vm_<board>.json`` and as pytest user properties.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

mcu_mod = pytest.importorskip("rackhil.mcu")
plants = pytest.importorskip("rackhil.plants.cdu")
from rackfw import io_cdu, io_power  # noqa: E402
from rackfw import regs_cdu as RC  # noqa: E402
from rackfw import regs_power_shelf as RP  # noqa: E402
from rackhil.plants.cdu import Cdu  # noqa: E402
from rackhil.plants.power_shelf import PowerShelf  # noqa: E402

pytestmark = [pytest.mark.vm, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
BOARD_BUDGET = 100 * 1024
APP_BUDGET = 32 * 1024
SAMPLE_S = 0.5
MINUTES = 10


@pytest.fixture(scope="module")
def mcu(mcu_process):
    """The module's McuProcess (conftest.mcu_process)."""
    return mcu_process


def ir(node, start, n):
    return node.eval(f"list(__import__('main').board.bank.ir[{start}:{start + n}])")


def s16(v):
    return v - 0x10000 if v & 0x8000 else v


class Run:
    """A VM board closed around a plant, with a per-second trace and heap peaks."""

    def __init__(self, mcu, kind, plant):
        self.node = mcu_mod.VmNode.emulated(mcu, kind, {"board": kind, "unit_id": 1})
        self.plant = plant
        self.t_us = self.node.now_us
        self.peak = self.node.heap_used()
        self.boot_heap = self.peak

    def run(self, seconds, on_second=None):
        steps = round(seconds / SAMPLE_S)
        per_s = round(1 / SAMPLE_S)
        for k in range(steps):
            self.plant.step(SAMPLE_S, self.node.outputs)
            for ch, v in self.plant.sensors().items():
                self.node.set_sensor(ch, v)
            self.t_us += round(SAMPLE_S * 1_000_000)
            self.node.advance(self.t_us)
            if on_second is not None and k % per_s == per_s - 1:
                on_second(self)
            if k % 60 == 59:
                self.peak = max(self.peak, self.node.heap_used())


def record(name, record_property, **figures):
    for k, v in figures.items():
        record_property(k, v)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"apps_vm_{name}.json").write_text(json.dumps(figures, indent=2) + "\n")


APP_HEAP_PROBE = """
import gc, sys
sys.path.append('/lib')
from rackfw.regbank import RegBank
from rackfw import events, timebase, {regs} as R
class S:
    def __init__(self, n):
        self.v = [0] * n
    def read(self, ch):
        return self.v[ch]
    def write(self, ch, x):
        self.v[ch] = x
class E:
    def log(self, k, c, v):
        pass
class C:
    ms = 0
    def ticks_ms(self):
        return self.ms
bank = RegBank(R.IR_SIZE, R.HR_SIZE, R.COIL_SIZE, R.DI_SIZE)
for a in range(R.HR_SIZE):
    bank.hr[a] = R.HR_DEFAULT[a] & 0xFFFF
sn = S(80); out = S(40); ev = E(); clk = C()
peak = 0
def ticks(n):
    for _ in range(n):
        clk.ms += 100
        app.tick(clk.ms)
"""
# Measured in separate exec calls: garbage of the exec that compiled a script can stay
# reachable from the C stack until that exec returns, so a baseline taken inside the
# importing exec would be inflated.
PROBE_BASE = "gc.collect(); base = gc.mem_alloc()"
PROBE_APP = """
from {app_mod} import {app_cls} as App
app = App(bank, sn, out, ev, clk)
app.start()
"""
# one simulated minute per exec: each call must return well within the host's hang timeout
PROBE_MINUTE = """
ticks(600)
gc.collect()
peak = max(peak, gc.mem_alloc() - base)
"""
PROBE_ALLOC = """
gc.collect(); gc.disable()
a0 = gc.mem_alloc()
ticks(300)
alloc = gc.mem_alloc() - a0
gc.enable()
print(peak, alloc)
"""


def app_heap(mcu, kind, regs, app_mod, app_cls):
    """(peak app heap, bytes allocated by 300 ticks) in a fresh VM with no board around it."""
    name = "probe_" + kind
    mcu.load(name, mcu_mod.firmware_files("rackfw"), main=None)
    try:
        mcu.exec(name, APP_HEAP_PROBE.format(regs=regs))
        mcu.exec(name, PROBE_BASE)
        mcu.exec(name, PROBE_APP.format(app_mod=app_mod, app_cls=app_cls))
        for _ in range(MINUTES):
            mcu.exec(name, PROBE_MINUTE)
        out = mcu.exec(name, PROBE_ALLOC)
    finally:
        mcu.unload(name)
    peak, alloc = (int(x) for x in out.split())
    return peak, alloc


def test_cdu_board_in_vm_controls_the_plant_within_heap_budget(mcu, record_property):
    plant = Cdu(seed=7)
    r = Run(mcu, "cdu", plant)
    trace = []

    def sample(run):
        t = run.plant.true_sensors()
        trace.append((run.plant.t_s, t[io_cdu.S_T_SUPPLY] / 100.0))

    r.run(300, sample)  # start-up from cold, default heat load
    load_w = plant.heat_load_w
    t_step = plant.t_s
    plant.set_heat_load(load_w * 1.5)
    r.run(300, sample)
    regs = ir(r.node, RC.MODE, 17)
    sp = s16(r.node.eval(f"__import__('main').board.bank.hr[{RC.T_SUPPLY_SP}]")) / 100.0
    dp_sp = r.node.eval(f"__import__('main').board.bank.hr[{RC.DP_SP}]") / 10.0
    after = [(t, v) for t, v in trace if t >= t_step]
    peak_dev = max(abs(v - sp) for _, v in after)
    settle = max((t - t_step for t, v in after if abs(v - sp) > 0.5), default=0.0)
    startup = max((t for t, v in trace if t < t_step and abs(v - sp) > 0.5), default=0.0)
    app_peak, tick_alloc = app_heap(mcu, "cdu", "regs_cdu", "rackfw.cooling.app", "CduApp")
    record("cdu", record_property, board_heap_boot=r.boot_heap, board_heap_peak=r.peak,
           app_heap_peak=app_peak, tick_alloc_bytes_per_300_ticks=tick_alloc,
           startup_settle_s=round(startup, 1), load_step_peak_dev_K=round(peak_dev, 3),
           load_step_settle_s=round(settle, 1), final_t_supply=trace[-1][1],
           final_dp_kpa=s16(regs[RC.DP - RC.MODE]) / 10.0)
    assert regs[0] == 1, "mode should be auto"
    assert regs[RC.ALARMS - RC.MODE] == 0
    assert abs(trace[-1][1] - sp) < 0.5
    assert abs(s16(regs[RC.DP - RC.MODE]) / 10.0 - dp_sp) < 5.0
    assert r.peak < BOARD_BUDGET
    assert app_peak < APP_BUDGET
    assert tick_alloc == 0


def test_power_shelf_board_in_vm_rides_through_ac_loss_within_heap_budget(mcu, record_property):
    plant = PowerShelf(seed=7)
    r = Run(mcu, "power_shelf", plant)
    r.run(240)
    healthy = ir(r.node, RP.SHELF_STATUS, 8)
    plant.lose_feed(0)
    plant.lose_feed(1)
    r.run(30)
    outage = ir(r.node, RP.SHELF_STATUS, 1) + ir(r.node, RP.BBU_SOC, 8)
    plant.restore_feed(0)
    plant.restore_feed(1)
    r.run(330)
    final = ir(r.node, RP.SHELF_STATUS, 8) + ir(r.node, RP.BBU_SOC, 8)
    app_peak, tick_alloc = app_heap(mcu, "power_shelf", "regs_power_shelf",
                                    "rackfw.power.app", "PowerShelfApp")
    record("power_shelf", record_property, board_heap_boot=r.boot_heap, board_heap_peak=r.peak,
           app_heap_peak=app_peak, tick_alloc_bytes_per_300_ticks=tick_alloc,
           bbu_soc_after_outage=outage[1] / 10.0, bbu_cycles=final[8 + 4])
    assert healthy[0] & RP.F_SHELF_STATUS_REDUNDANCY_OK
    assert not healthy[0] & RP.F_SHELF_STATUS_ANY_FAULT
    assert healthy[RP.PSUS_ON - RP.SHELF_STATUS] == 6
    assert outage[0] & RP.F_SHELF_STATUS_ON_BATTERY
    assert outage[1 + 6] == 2  # bbu_mode discharging
    assert not final[0] & RP.F_SHELF_STATUS_ON_BATTERY
    assert final[8 + 4] == 1  # one cycle counted
    assert r.node.get_output(io_power.O_BBU_ENABLE) == 1
    assert r.peak < BOARD_BUDGET
    assert app_peak < APP_BUDGET
    assert tick_alloc == 0


def test_cdu_in_vm_fails_over_a_dead_pump_and_isolates_a_tray_leak(mcu, record_property):
    plant = Cdu(seed=11)
    r = Run(mcu, "cdu", plant)
    r.run(90)
    plant.fail_pump(0, "dead")
    t_fail = plant.t_s
    seen = {}

    def watch(run):
        if "lead2" not in seen and ir(run.node, RC.LEAD_PUMP, 1)[0] == 2:
            seen["lead2"] = run.plant.t_s - t_fail

    r.run(30, watch)
    loop = ir(r.node, RC.MODE, 17)
    pump1 = ir(r.node, RC.PUMP1_STATUS, 1)[0]
    plant.leak(io_cdu.LEAK_CDU_TRAY)
    r.run(2)
    after_leak = ir(r.node, RC.MODE, 2)
    record("cdu_failover", record_property, failover_after_s=seen.get("lead2"),
           dp_after_failover_kpa=s16(loop[RC.DP - RC.MODE]) / 10.0)
    assert seen.get("lead2") is not None and seen["lead2"] <= 5.0
    assert pump1 & RC.F_PUMP_STATUS_FAILED
    assert loop[RC.ALARMS - RC.MODE] & RC.F_ALARMS_PUMP_FAILOVER
    assert abs(s16(loop[RC.DP - RC.MODE]) / 10.0 - 100.0) < 10.0  # pressure back on pump 2
    assert after_leak[0] == 3  # fault
    assert after_leak[1] & RC.F_ALARMS_LEAK_ISOLATED
    assert r.node.get_output(io_cdu.O_PUMP_BASE + 1) == 0
    assert r.node.get_output(io_cdu.O_VALVE) == 0
