"""Closed-loop CDU control against a simple first-order plant, in CPython virtual time.

Plant (Euler, 100 ms steps, same period as the control tick):

* secondary supply temperature: ``C dTs/dt = Q_load - Q_hx``, with
  ``Q_hx = UA_max * valve * (Tr - T_fac)`` and ``Tr = Ts + Q_load / (m_dot c)`` —
  first order in ``Ts``, time constant ``C / (UA_max * valve)`` (~1 min here);
* pump: speed follows its command with a 1 s lag, flow ``= FLOW_MAX * speed`` and
  differential pressure ``= DP_MAX * speed^2`` (pump on a fixed system curve).

Measured figures (overshoot, settling time) are recorded as pytest user properties
and written to ``artifacts/closed_loop_<test>.json`` (print-free).
"""

import json
from pathlib import Path

import pytest
from app_fakes import Clock, Events, Outputs, Sensors, default_bank

from rackfw import io_cdu as io
from rackfw import regs_cdu as R
from rackfw.cooling import modes as M
from rackfw.cooling.app import CduApp

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
DT = 0.1


class Plant:
    C_KJ_PER_K = 200.0      # secondary loop water + hardware thermal mass
    UA_MAX = 15.0           # kW/K through the heat exchanger, valve fully open
    T_FAC = 20.0            # facility water inlet, degC
    FLOW_MAX = 600.0        # L/min at full pump speed
    DP_MAX = 250.0          # kPa at full pump speed
    CP = 4.18               # kJ/(L K)
    PUMP_TAU = 1.0          # s

    def __init__(self, q_kw=50.0, t0=30.0):
        self.q = q_kw
        self.ts = t0
        self.speed = 0.0
        self.valve = 0.0

    def step(self, valve_cmd, pump_cmd):
        self.valve = valve_cmd / 1000.0
        self.speed += (pump_cmd / 1000.0 - self.speed) * DT / self.PUMP_TAU
        flow = self.FLOW_MAX * self.speed
        mc = max(flow, 1.0) / 60.0 * self.CP
        tr = self.ts + self.q / mc
        q_hx = self.UA_MAX * self.valve * (tr - self.T_FAC)
        self.ts += (self.q - q_hx) / self.C_KJ_PER_K * DT
        self.q_hx = q_hx
        return flow, tr

    q_hx = 0.0
    FAC_FLOW_LPS = 3.0      # facility water flow through the exchanger

    def sensors(self, flow, tr):
        dp = self.DP_MAX * self.speed * self.speed
        return {
            io.S_T_SUPPLY: round(self.ts * 100),
            io.S_T_RETURN: round(tr * 100),
            io.S_T_FAC_IN: round(self.T_FAC * 100),
            io.S_T_FAC_OUT: round((self.T_FAC + self.q_hx / (self.FAC_FLOW_LPS * self.CP)) * 100),
            io.S_FLOW: round(flow * 10),
            io.S_P_SUPPLY: round((150 + dp) * 10),
            io.S_P_RETURN: 1500,  # held by the expansion tank
            io.S_LEVEL: 800,
            io.S_LEAK: 0,
            io.S_VALVE_FB: round(self.valve * 1000),
            io.pump_s(0, io.S_PUMP_RPM): round(self.speed * io.PUMP_RPM_MAX),
            io.pump_s(0, io.S_PUMP_I): 400,
            io.pump_s(1, io.S_PUMP_RPM): 0,
            io.pump_s(1, io.S_PUMP_I): 0,
        }


class Loop:
    """CduApp in AUTO closed around ``Plant``; ``gains`` override the register defaults."""

    def __init__(self, q_kw=50.0, gains=None):
        self.plant = Plant(q_kw)
        self.s = Sensors()
        self.o = Outputs()
        self.clk = Clock()
        self.bank = default_bank(R)
        for name, v in (gains or {}).items():
            self.bank.set_hr(getattr(R, name), v)
        self.s.v.update(self.plant.sensors(0.0, self.plant.ts))
        self.app = CduApp(self.bank, self.s, self.o, Events(), self.clk)
        self.app.start()
        self.t = 0.0
        self.trace = []  # (t_s, supply degC, valve 0..1, dp kPa)

    def run(self, seconds):
        for _ in range(round(seconds / DT)):
            flow, tr = self.plant.step(self.o.read(io.O_VALVE), self.o.read(io.O_PUMP_BASE))
            self.s.v.update(self.plant.sensors(flow, tr))
            self.clk.ms += 100
            self.t += DT
            self.app.tick(self.clk.ms)
            p = self.plant
            self.trace.append((self.t, p.ts, p.valve, p.DP_MAX * p.speed * p.speed))


def step_metrics(trace, t0, sp, band, idx=1):
    """Overshoot past ``sp`` (in the direction of travel) and settling time into ``band``."""
    after = [(t, x[idx - 1]) for t, *x in trace if t >= t0]
    start = after[0][1]
    direction = 1.0 if sp > start else -1.0
    overshoot = max(0.0, max((v - sp) * direction for _, v in after))
    peak_dev = max(abs(v - sp) for _, v in after)
    settle = 0.0
    for t, v in after:
        if abs(v - sp) > band:
            settle = t - t0
    return overshoot, settle, peak_dev


def record(name, record_property, **figures):
    for k, v in figures.items():
        record_property(k, v)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / f"closed_loop_{name}.json").write_text(json.dumps(figures, indent=2) + "\n")


TUNED = {"TEMP_KP": 8000, "TEMP_KI": 400}  # 8 %/K, 0.4 %/(K s) for this plant


@pytest.mark.parametrize("gains", [TUNED, {}], ids=["tuned", "map_defaults"])
def test_supply_temperature_settles_after_heat_load_step(gains, record_property):
    loop = Loop(q_kw=50.0, gains=gains)
    loop.run(900)  # reach steady state at 50 kW
    sp = loop.bank.get_hr_s(R.T_SUPPLY_SP) / 100.0
    assert loop.app.modes.mode == M.AUTO
    assert abs(loop.plant.ts - sp) < 0.05
    t_step = loop.t
    loop.plant.q = 80.0  # +30 kW heat-load step
    loop.run(900)
    deviation, settle, peak = step_metrics(loop.trace, t_step, sp, band=0.2)
    final_err = abs(loop.plant.ts - sp)
    name = "tuned" if gains else "map_defaults"
    record(f"temp_step_{name}", record_property, peak_deviation_K=round(peak, 3),
           settling_time_s=round(settle, 1), final_error_K=round(final_err, 4),
           kp=loop.bank.get_hr(R.TEMP_KP) / 1000, ki=loop.bank.get_hr(R.TEMP_KI) / 1000)
    assert final_err < 0.05
    if gains:
        assert peak < 1.5
        assert settle < 300
    else:
        assert settle < 900  # the conservative defaults are slow but still settle


def test_setpoint_step_overshoot_and_settling(record_property):
    loop = Loop(q_kw=60.0, gains=TUNED)
    loop.run(900)
    t_step = loop.t
    loop.bank.set_hr(R.T_SUPPLY_SP, 2700)  # 30 -> 27 degC
    loop.run(900)
    overshoot, settle, _ = step_metrics(loop.trace, t_step, 27.0, band=0.1)
    record("temp_setpoint_step", record_property, overshoot_K=round(overshoot, 3),
           settling_time_s=round(settle, 1), final_K=round(loop.plant.ts, 3))
    assert abs(loop.plant.ts - 27.0) < 0.05
    assert overshoot < 1.0
    assert settle < 400


def test_pressure_loop_follows_its_setpoint(record_property):
    loop = Loop(q_kw=50.0)
    loop.run(120)
    assert abs(loop.trace[-1][3] - 100.0) < 1.0
    t_step = loop.t
    loop.bank.set_hr(R.DP_SP, 1500)  # 100 -> 150 kPa
    loop.run(120)
    overshoot, settle, _ = step_metrics(loop.trace, t_step, 150.0, band=2.0, idx=3)
    record("dp_setpoint_step", record_property, overshoot_kPa=round(overshoot, 2),
           settling_time_s=round(settle, 1))
    assert abs(loop.trace[-1][3] - 150.0) < 1.0
    assert overshoot < 15.0
    assert settle < 60


def test_no_windup_after_long_saturation(record_property):
    """A heat load the exchanger cannot reject pins the valve open for 10 minutes; when the
    load drops the valve must leave 100 % as soon as the supply falls below setpoint."""
    loop = Loop(q_kw=50.0, gains=TUNED)
    loop.run(600)
    loop.plant.q = 500.0  # more than the exchanger can reject at 30 degC
    loop.run(600)
    assert loop.o.read(io.O_VALVE) == 1000
    sp = 30.0
    assert loop.plant.ts > sp + 2
    t_drop = loop.t
    loop.plant.q = 50.0
    loop.run(900)
    after = [(t, ts, v) for t, ts, v, _ in loop.trace if t > t_drop]
    t_cross = next(t for t, ts, _ in after if ts < sp)
    t_unsat = next(t for t, _, v in after if v < 1.0)
    undershoot = max(sp - ts for _, ts, _ in after)
    record("windup", record_property, valve_release_after_crossing_s=round(t_unsat - t_cross, 1),
           undershoot_K=round(undershoot, 3))
    # the windup signature is a valve still pinned open after the crossing; here it has
    # already left 100 % before it (proportional action) - a wound-up integrator would
    # hold it open for minutes and drive the supply towards the facility temperature
    assert t_unsat - t_cross <= 2.0
    assert undershoot < 3.0  # mostly the plant: 450 kW of load vanish in one step
    assert abs(loop.plant.ts - sp) < 0.05
