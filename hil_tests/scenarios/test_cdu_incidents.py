"""CDU incidents: what the coolant distribution unit's controller does when the loop misbehaves.

One CDU (unit 3: 100 kW heat load, two pumps lead/lag, facility water at 20 °C) on the
bus with the host.  The plant (``rackhil.plants.cdu``) is the ground truth the
assertions compare against; the registers are what the host would see.
"""

from __future__ import annotations

import pytest
from watch import watch

from rackhil.rack import Rack

pytestmark = pytest.mark.slow

CDU = 3
T_SUPPLY = "t_supply.cdu-1.plant"  # traced by every rack
FLOW = "flow.cdu-1.plant"
LOOP = ["mode", "alarms", "sensor_faults", "leak_zones", "t_supply", "flow", "dp", "valve_cmd",
        "lead_pump", "pump1_status", "pump2_status"]


def _cdu_rack(make_rack, warmup_s: float = 30.0, **plant) -> Rack:
    rack = make_rack(boards=(CDU,), plant={CDU: plant} if plant else None)
    cdu = rack.cdu(CDU).plant
    rack.trace.probe("t_return.cdu-1.plant", lambda: cdu.t_return_c, unit="°C")
    rack.trace.probe("valve.plant", lambda: cdu.valve * 100, unit="%")
    rack.trace.probe("pump_rpm.p1", lambda: cdu.pumps[0].rpm, unit="rpm")
    rack.trace.probe("pump_rpm.p2", lambda: cdu.pumps[1].rpm, unit="rpm")
    rack.run(warmup_s)
    return rack


def test_heat_load_step_settles(make_rack) -> None:
    """The IT load steps from 100 kW to 150 kW on a settled loop: the supply temperature
    is pushed up, the valve opens further, and the supply is back within ±0.5 °C of its
    30 °C set point within 180 s of the step (and stays there), with at most 1.5 °C
    overshoot, no alarm, and what the host reads agreeing with the plant."""
    rack = _cdu_rack(make_rack, warmup_s=300.0)
    cdu = rack.cdu(CDU).plant
    m = rack.master
    sp = m.read(CDU, "t_supply_sp")
    assert sp == 30.0
    assert abs(cdu.t_supply_c - sp) <= 0.2, f"not settled before the step: {cdu.t_supply_c:.2f} °C"
    valve_before = cdu.valve

    rack.cdu(CDU).heat_load(150_000)
    t_step = rack.now_s
    seen = watch(rack, CDU, LOOP, 300.0, 5.0, plot=("t_supply", "valve_cmd"))
    supply = rack.trace[T_SUPPLY]
    after = [(t, v) for t, v in zip(supply.t, supply.v, strict=True) if t >= t_step]
    peak = max(v for _, v in after)
    assert peak - sp >= 0.3, "the step did not disturb the loop: the test proves nothing"
    assert peak - sp <= 1.5, f"overshoot {peak - sp:.2f} °C"
    outside = [t for t, v in after if abs(v - sp) > 0.5]
    settle_s = (max(outside) - t_step) if outside else 0.0
    assert settle_s <= 180.0, f"supply outside ±0.5 °C until {settle_s:.0f} s after the step"
    tail = [v for t, v in after if t >= t_step + 240.0]
    assert abs(sum(tail) / len(tail) - sp) <= 0.2  # no steady-state offset (integral action)
    assert cdu.valve > valve_before + 0.05  # more cooling water for more heat
    assert all(r["alarms"] == [] and r["mode"] == "auto" for _, r in seen.rows)
    assert seen.last["t_supply"] == pytest.approx(cdu.t_supply_c, abs=0.1)  # the host sees the truth


def test_leak_isolates_the_loop(make_rack) -> None:
    """Coolant in the CDU drip tray: the controller raises the leak alarm, isolates
    (pumps stopped, valve closed, FAULT mode) within a tick and stays isolated; once the
    leak is fixed and the tray dried, the fault clear returns it to AUTO."""
    rack = _cdu_rack(make_rack)
    cdu = rack.cdu(CDU).plant
    m = rack.master
    assert m.read(CDU, "mode") == "auto"

    rack.cdu(CDU).leak("cdu_tray")
    t_leak = rack.now_s
    seen = watch(rack, CDU, LOOP, 10.0, 0.2, plot=("flow",))
    isolated = seen.first(lambda r: "leak_isolated" in r["alarms"])
    assert isolated is not None and isolated[0] - t_leak <= 0.5
    assert seen.last["mode"] == "fault"
    assert "leak" in seen.last["alarms"]
    assert seen.last["leak_zones"] == ["cdu_tray"]
    assert seen.last["valve_cmd"] == 0.0
    assert all(p.rpm < 200 for p in cdu.pumps), "pumps still turning into a leak"
    assert cdu.flow_lpm < 10.0
    # a fault clear while the tray is still wet changes nothing
    m.clear_faults(CDU)
    rack.run(1.0)
    assert m.read(CDU, "mode") == "fault"
    ev = m.events(CDU)
    assert any(e.kind == "alarm" and e.code == 0 and e.value == 1 for e in ev)  # leak, zone mask 1

    rack.cdu(CDU).stop_leak("cdu_tray", dry=True)
    rack.run(1.0)
    m.clear_faults(CDU)
    back = watch(rack, CDU, LOOP, 15.0, 0.5, plot=("flow",))
    assert back.last["mode"] == "auto"
    assert "leak" not in back.last["alarms"] and "leak_isolated" not in back.last["alarms"]
    assert back.last["flow"] > 200.0


def test_lead_pump_failure_lag_takes_over(make_rack) -> None:
    """The lead pump's motor dies: the controller sees its tach collapse, fails over to
    the lag pump and logs it; the flow dip is bounded — under 90 % of nominal for at
    most 10 s, and back above 95 % within 12 s of the failure."""
    rack = _cdu_rack(make_rack)
    cdu = rack.cdu(CDU).plant
    m = rack.master
    nominal = cdu.flow_lpm
    assert m.read(CDU, "lead_pump") == 1

    rack.cdu(CDU).pump(1).fail("dead")
    t_fail = rack.now_s
    seen = watch(rack, CDU, LOOP, 20.0, 0.5, plot=("flow", "lead_pump"))
    flow = rack.trace[FLOW]
    low = [t for t, v in zip(flow.t, flow.v, strict=True) if t >= t_fail and v < 0.9 * nominal]
    assert low, "the failure did not disturb the flow at all?"
    assert max(low) - min(low) <= 10.0, f"flow below 90 % for {max(low) - min(low):.1f} s"
    recovered = [t for t, v in zip(flow.t, flow.v, strict=True) if t > max(low) and v >= 0.95 * nominal]
    assert recovered and recovered[0] - t_fail <= 12.0
    assert seen.last["lead_pump"] == 2
    assert "failed" in seen.last["pump1_status"]
    assert "running" in seen.last["pump2_status"] and "lead" in seen.last["pump2_status"]
    assert {"pump_failover", "pump_fault"} <= set(seen.last["alarms"])
    assert seen.last["mode"] == "auto"
    ev = m.events(CDU, last=6)
    assert any(e.kind == "fault_raised" and e.code == 0x301 for e in ev)  # pump 1 failed
    assert any(e.kind == "alarm" and e.code == 2 and e.value == 2 for e in ev)  # failover to pump 2


def test_supply_sensor_open_circuit_fails_safe(make_rack) -> None:
    """The supply temperature transmitter's wire breaks (reads full scale): the
    controller must not act on it — it flags the sensor, goes to FAULT and drives the
    fail-safe outputs (pump at the safe speed, valve fully open) instead of closing the
    valve on a '327 °C' reading.  A repaired sensor plus fault clear returns to AUTO."""
    rack = _cdu_rack(make_rack)
    cdu = rack.cdu(CDU).plant
    m = rack.master
    safe_speed = m.read(CDU, "pump_safe_speed")
    safe_valve = m.read(CDU, "valve_safe_pos")

    rack.cdu(CDU).sensor("supply_temp").open_circuit()
    t_fault = rack.now_s
    seen = watch(rack, CDU, LOOP + ["pump1_speed_cmd"], 20.0, 0.5, plot=("valve_cmd",))
    faulted = seen.first(lambda r: "t_supply" in r["sensor_faults"])
    assert faulted is not None and faulted[0] - t_fault <= 1.0  # the next poll already shows it
    assert seen.last["mode"] == "fault"
    assert "sensor_fault" in seen.last["alarms"]
    assert seen.last["valve_cmd"] == safe_valve
    assert seen.last["pump1_speed_cmd"] == safe_speed
    assert cdu.valve == pytest.approx(safe_valve / 100, abs=0.01)  # the plant got it
    assert cdu.flow_lpm > 200.0  # still cooling: fail-safe is not shutdown
    assert any(e.kind == "fault_raised" and e.code == 0x200 for e in m.events(CDU, last=6))

    rack.cdu(CDU).sensor("supply_temp").repair()
    rack.run(5.0)
    m.clear_faults(CDU)
    back = watch(rack, CDU, LOOP, 5.0, 0.5, plot=("valve_cmd",))
    assert back.last["mode"] == "auto"
    assert back.last["sensor_faults"] == []
