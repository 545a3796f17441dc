"""Hydraulic and thermal model of a coolant distribution unit (CDU) and its rack loop.

The secondary (IT) loop: two pumps in parallel (lead/lag) push coolant through the
heat exchanger and the rack's cold plates; the facility water side of the heat
exchanger is throttled by the facility valve.  Equations and parameters:
``docs/plants.md``.  In short:

* **pumps** — affinity-law curves ``H = H0 n^2 - Kp Q^2`` (``n`` = speed fraction,
  speed lagging the command), check valves, against the system curve
  ``H = (K_rack + K_hx) Q^2``; the measured differential pressure is the rack's
  share, ``K_rack Q^2``.  More speed, more flow and more ΔP.
* **heat exchange** — counter-flow ε-NTU with ``UA``; facility flow proportional
  to the valve position (the valve travels at a finite rate).  Opening the valve
  lowers the supply temperature.
* **thermal mass** — two lumped masses: supply side (heat exchanger + supply
  piping) and return side (cold plates + return piping), each
  ``M c dT/dt = in - out``, plus a small loss to the room.
* **reservoir** — volume falls with leaks; a low level lets the pumps ingest air
  (head falls) and lowers the static pressure.
* **leaks** — per zone; a wet sensor stays wet until dried; the leak flow scales
  with the square root of the driving pressure (pumps stopped: only a seep).
* **failures** — pump ``"dead"`` (no rotation), ``"overcurrent"`` (bearing: motor
  current above ``io_cdu.PUMP_I_MAX``), ``"no_tach"`` (turns, but the tachometer reads 0); a valve
  stuck at a position.

Channel numbers and units are ``rackfw.io_cdu``'s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from . import ensure_micropython_shim
from .base import Plant, clamp, first_order, noisy

ensure_micropython_shim()
from rackfw import io_cdu as io  # noqa: E402

PUMP_FAILURES = ("dead", "overcurrent", "no_tach")
CP_J_PER_KG_K = 4186.0
RHO_KG_PER_L = 0.997


@dataclass
class CduParams:
    heat_load_w: float = 100_000.0
    facility_in_c: float = 20.0
    ambient_c: float = 25.0
    # pumps (each)
    rpm_max: float = float(io.PUMP_RPM_MAX)
    pump_tau_s: float = 1.5
    h0_kpa: float = 400.0  # shut-off head at full speed
    kp_kpa_per_lpm2: float = 0.0009375  # pump's internal curve
    pump_eff: float = 0.6
    pump_idle_w: float = 80.0  # motor losses at full speed, no flow
    motor_v: float = 400.0  # three-phase
    motor_pf: float = 0.85
    # system
    k_rack_kpa_per_lpm2: float = 0.0010
    k_hx_kpa_per_lpm2: float = 0.00025
    p_static_empty_kpa: float = 50.0  # expansion-tank pressure at 0 % level ...
    p_static_full_kpa: float = 150.0  # ... and at 100 %
    # heat exchanger and facility side
    ua_w_per_k: float = 20_000.0
    facility_max_lpm: float = 300.0
    valve_stroke_s: float = 15.0  # full travel time of the valve actuator
    # thermal masses and losses
    m_supply_kg: float = 80.0
    m_return_kg: float = 120.0
    g_room_w_per_k: float = 50.0
    fac_out_tau_s: float = 5.0
    # reservoir and leaks
    reservoir_l: float = 60.0
    level_init: float = 0.8
    cavitation_level: float = 0.15  # below this the pump head falls with the level
    leak_dp_nominal_kpa: float = 100.0
    leak_seep_fraction: float = 0.1


class Pump:
    def __init__(self, index: int) -> None:
        self.index = index
        self.rpm = 0.0
        self.flow_lpm = 0.0
        self.current_a = 0.0
        self.failure: str | None = None

    def fail(self, mode: str) -> None:
        if mode not in PUMP_FAILURES:
            raise ValueError(f"pump failure must be one of {PUMP_FAILURES}, not {mode!r}")
        self.failure = mode

    def repair(self) -> None:
        self.failure = None


class Cdu(Plant):
    """The CDU and rack loop as the controller board's sensors see it."""

    OUTPUT_DEFAULTS: Mapping[int, int] = {
        **{io.O_PUMP_BASE + i: 0 for i in range(io.PUMP_COUNT)},
        io.O_VALVE: 0,
        io.O_ALARM: 0,
    }

    # Thermal masses are integrated with explicit Euler; the fastest loop time
    # constant is ~10 s (M c / (flow c) at full flow), so 0.25 s steps are accurate.
    MAX_SUBSTEP_S = 0.25

    def __init__(self, *, seed: int = 0, noise: float = 1.0, params: CduParams | None = None) -> None:
        super().__init__(seed=seed, noise=noise)
        self.p = params or CduParams()
        self.heat_load_w = self.p.heat_load_w
        self.facility_in_c = self.p.facility_in_c
        self.pumps = [Pump(i) for i in range(io.PUMP_COUNT)]
        self.t_supply_c = self.facility_in_c + 5.0
        self.t_return_c = self.facility_in_c + 5.0
        self.t_fac_out_c = self.facility_in_c
        self.valve = 0.0  # fraction open, actual position
        self.valve_stuck: float | None = None
        self.volume_l = self.p.reservoir_l * self.p.level_init
        self.head_kpa = 0.0
        self.flow_lpm = 0.0
        self.dp_kpa = 0.0
        self.q_hx_w = 0.0
        self.leaks: dict[int, float] = {}  # zone -> nominal leak flow, L/min
        self.wet = 0  # bit mask of wet leak sensors

    # ---- scenario controls -----------------------------------------------------
    def pump(self, index: int) -> Pump:
        return self.pumps[index]

    def fail_pump(self, index: int, mode: str) -> None:
        self.pumps[index].fail(mode)

    def repair_pump(self, index: int) -> None:
        self.pumps[index].repair()

    def set_heat_load(self, watts: float) -> None:
        self.heat_load_w = max(0.0, watts)

    def set_facility(self, inlet_c: float) -> None:
        self.facility_in_c = inlet_c

    def leak(self, zone: int, lpm: float = 2.0) -> None:
        """Start a leak in ``zone`` (``io.LEAK_*``) of ``lpm`` at nominal ΔP; wets its sensor."""
        if not 0 <= zone < io.LEAK_ZONES:
            raise ValueError(f"leak zone must be 0..{io.LEAK_ZONES - 1}")
        self.leaks[zone] = lpm
        self.wet |= 1 << zone

    def stop_leak(self, zone: int, *, dry: bool = False) -> None:
        """Stop the leak; the sensor stays wet until ``dry`` (someone mopped up)."""
        self.leaks.pop(zone, None)
        if dry:
            self.wet &= ~(1 << zone)

    def stick_valve(self, position: float | None = None) -> None:
        """Valve actuator stuck at ``position`` (0..1; default where it is now)."""
        self.valve_stuck = self.valve if position is None else clamp(position, 0.0, 1.0)

    def free_valve(self) -> None:
        self.valve_stuck = None

    def refill(self, level: float = 0.8) -> None:
        self.volume_l = self.p.reservoir_l * clamp(level, 0.0, 1.0)

    @property
    def level(self) -> float:
        return clamp(self.volume_l / self.p.reservoir_l, 0.0, 1.0)

    @property
    def p_return_kpa(self) -> float:
        p = self.p
        return p.p_static_empty_kpa + (p.p_static_full_kpa - p.p_static_empty_kpa) * self.level

    @property
    def p_supply_kpa(self) -> float:
        return self.p_return_kpa + self.dp_kpa

    # ---- physics ------------------------------------------------------------------
    def _integrate(self, dt_s: float, outputs: Mapping[int, int]) -> None:
        p = self.p
        for pump in self.pumps:
            cmd = clamp(outputs.get(io.O_PUMP_BASE + pump.index, 0), 0, 1000) / 1000.0
            target = 0.0 if pump.failure == "dead" else cmd * p.rpm_max
            pump.rpm = first_order(pump.rpm, target, p.pump_tau_s, dt_s)
        self._hydraulics()
        cmd_valve = clamp(outputs.get(io.O_VALVE, 0), 0, 1000) / 1000.0
        if self.valve_stuck is not None:
            cmd_valve = self.valve_stuck
        max_move = dt_s / p.valve_stroke_s
        self.valve += clamp(cmd_valve - self.valve, -max_move, max_move)
        self._thermal(dt_s)
        self._reservoir(dt_s)

    def _hydraulics(self) -> None:
        """Operating point of the parallel pumps against the system curve."""
        p = self.p
        k_sys = p.k_rack_kpa_per_lpm2 + p.k_hx_kpa_per_lpm2
        cav = min(1.0, self.level / p.cavitation_level) if p.cavitation_level > 0 else 1.0
        shutoff = [p.h0_kpa * cav * (pump.rpm / p.rpm_max) ** 2 for pump in self.pumps]

        def pumped(h: float) -> float:
            return sum(math.sqrt(max(0.0, s - h) / p.kp_kpa_per_lpm2) for s in shutoff)

        lo, hi = 0.0, max(shutoff)
        if hi > 0:
            for _ in range(50):  # pumped(h) falls, system flow sqrt(h/k) rises with h
                mid = 0.5 * (lo + hi)
                if pumped(mid) > math.sqrt(mid / k_sys):
                    lo = mid
                else:
                    hi = mid
        self.head_kpa = lo
        self.flow_lpm = math.sqrt(lo / k_sys)
        self.dp_kpa = p.k_rack_kpa_per_lpm2 * self.flow_lpm**2
        motor_va = math.sqrt(3.0) * p.motor_v * p.motor_pf
        for pump, s in zip(self.pumps, shutoff, strict=True):
            pump.flow_lpm = math.sqrt(max(0.0, s - lo) / p.kp_kpa_per_lpm2)
            hydraulic_w = lo * 1000.0 * pump.flow_lpm / 60000.0
            n = pump.rpm / p.rpm_max
            electric_w = hydraulic_w / p.pump_eff + p.pump_idle_w * n
            current = electric_w / motor_va
            if pump.failure == "overcurrent" and pump.rpm > 0:
                # failing bearing / winding: well past the board's trip level
                current = current * 1.8 + 1.25 * io.PUMP_I_MAX / 100.0
            pump.current_a = current

    def _thermal(self, dt_s: float) -> None:
        p = self.p
        c_sec = RHO_KG_PER_L * self.flow_lpm / 60.0 * CP_J_PER_KG_K
        c_fac = RHO_KG_PER_L * self.valve * p.facility_max_lpm / 60.0 * CP_J_PER_KG_K
        t_s, t_r = self.t_supply_c, self.t_return_c
        q_hx = effectiveness(p.ua_w_per_k, c_sec, c_fac) * min(c_sec, c_fac) * (t_r - self.facility_in_c)
        self.q_hx_w = q_hx
        g = p.g_room_w_per_k
        d_s = (c_sec * (t_r - t_s) - q_hx + g * (p.ambient_c - t_s)) / (p.m_supply_kg * CP_J_PER_KG_K)
        d_r = (self.heat_load_w + c_sec * (t_s - t_r) + g * (p.ambient_c - t_r)) / (
            p.m_return_kg * CP_J_PER_KG_K
        )
        self.t_supply_c = t_s + d_s * dt_s
        self.t_return_c = t_r + d_r * dt_s
        fac_target = self.facility_in_c + q_hx / c_fac if c_fac > 0 else self.facility_in_c
        self.t_fac_out_c = first_order(self.t_fac_out_c, fac_target, p.fac_out_tau_s, dt_s)

    def _reservoir(self, dt_s: float) -> None:
        if not self.leaks:
            return
        p = self.p
        drive = math.sqrt(max(0.0, self.dp_kpa) / p.leak_dp_nominal_kpa)
        factor = max(p.leak_seep_fraction, drive)
        lost = sum(self.leaks.values()) * factor * dt_s / 60.0
        self.volume_l = max(0.0, self.volume_l - lost)

    # ---- sensors ------------------------------------------------------------------
    def _readings(self) -> dict[int, tuple[float, float]]:
        r: dict[int, tuple[float, float]] = {
            io.S_BOARD_T: ((self.p.ambient_c + 10.0) * 10, 1.0),
            io.S_T_SUPPLY: (self.t_supply_c * 100, 2.0),
            io.S_T_RETURN: (self.t_return_c * 100, 2.0),
            io.S_T_FAC_IN: (self.facility_in_c * 100, 2.0),
            io.S_T_FAC_OUT: (self.t_fac_out_c * 100, 2.0),
            io.S_FLOW: noisy(self.flow_lpm * 10, 5.0),
            io.S_P_SUPPLY: noisy(self.p_supply_kpa * 10, 3.0),
            io.S_P_RETURN: noisy(self.p_return_kpa * 10, 3.0),
            io.S_DP: noisy(self.dp_kpa * 10, 3.0),
            io.S_LEVEL: noisy(self.level * 1000, 2.0),
            io.S_VALVE_FB: noisy(self.valve * 1000, 1.0),
            io.S_LEAK: (self.wet, 0.0),
        }
        for pump in self.pumps:
            base = io.pump_s(pump.index, 0)
            rpm = 0.0 if pump.failure == "no_tach" else pump.rpm
            r[base + io.S_PUMP_RPM] = noisy(rpm, 10.0)
            r[base + io.S_PUMP_I] = noisy(pump.current_a * 100, 2.0)
        return r


def effectiveness(ua: float, c1: float, c2: float) -> float:
    """Counter-flow heat-exchanger effectiveness (ε-NTU); 0 when either side is still."""
    c_min, c_max = min(c1, c2), max(c1, c2)
    if c_min <= 0:
        return 0.0
    ntu = ua / c_min
    cr = c_min / c_max
    if abs(1.0 - cr) < 1e-9:
        return ntu / (1.0 + ntu)
    e = math.exp(-ntu * (1.0 - cr))
    return (1.0 - e) / (1.0 - cr * e)
