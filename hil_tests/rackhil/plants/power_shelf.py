"""Electrical model of a rack power shelf: six PSUs on two AC feeds, a DC bus, a BBU.

What it is honest about (equations and parameters: ``docs/plants.md``):

* **load sharing** — PSUs are droop-regulated sources behind ORing diodes,
  ``I_i = clamp((Vset_i - V) / R_droop, 0, Ilim_i)``; the BBU is a regulated
  source at a lower voltage, so it only carries the bus when the PSUs cannot.
  The bus voltage solves ``sum(I_i(V)) + I_bbu(V) = P_load / V`` (constant-power
  IT load); if no voltage above the load's UVLO satisfies it, the bus collapses.
* **efficiency** — ``P_loss = P0 + k1 P + k2 P^2`` per PSU (~96 % at half load,
  lower at light load); AC input current ``(P + P_loss) / (V_ac * PF)``.
* **temperature** — hot spot ``C dT/dt = P_loss - G(fan) (T - T_inlet)``, ``G``
  rising with fan speed; fan speed lags its duty command.
* **AC feeds** — slots 1-3 on feed A, 4-6 on feed B; a lost feed takes its PSUs'
  output away and the others pick up the load (or the BBU does).
* **BBU** — open-circuit voltage linear in state of charge, internal resistance,
  coulomb counting for charge and discharge, charge tapering near full.
* **PSU insert/remove and failures** — ``"dead"`` (no output, fan stopped),
  ``"overvoltage"`` (regulator runaway: set point + ``ov_runaway_v``), ``"fan"``
  (fan stuck: the PSU overheats under load).

Channel numbers and units are ``rackfw.io_power``'s.  Deterministic: the only
randomness is sensor noise from the seeded generator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from . import ensure_micropython_shim
from .base import Plant, clamp, first_order
from .base import noisy as _n

ensure_micropython_shim()
from rackfw import io_power as io  # noqa: E402

PSU_FAILURES = ("dead", "overvoltage", "fan")
FEED_OF_SLOT = (0, 0, 0, 1, 1, 1)  # slots 1-3 on feed A, 4-6 on feed B


@dataclass
class PsuParams:
    rated_w: float = float(io.PSU_RATED_W)
    i_max_a: float = 65.0  # hardware current limit whatever the command
    droop_ohm: float = 0.0083  # 0.5 V droop at 60 A
    p0_w: float = 15.0  # no-load loss
    k1: float = 0.015  # loss proportional to output power
    k2_per_w: float = 0.02 / 3000.0  # conduction loss ~ P^2
    standby_w: float = 5.0  # loss when AC is present but the output is off
    pf: float = 0.99
    ac_ok_min_v: float = 180.0
    fan_rpm_max: float = float(io.PSU_FAN_RPM_MAX)
    fan_tau_s: float = 2.0
    c_th_j_per_k: float = 200.0  # hot-spot thermal capacity
    g0_w_per_k: float = 0.6  # convection with the fan stopped
    g_fan_w_per_k: float = 5.0  # extra conductance at full fan speed
    ov_runaway_v: float = 7.0  # an "overvoltage" failure adds this to the set point


@dataclass
class BbuParams:
    capacity_ah: float = io.BBU_CAPACITY_WH / 48.0  # 1500 Wh at the 48 V mid-charge voltage
    v_empty: float = 44.0  # open-circuit pack voltage at 0 % SOC
    v_full: float = 52.0  # ... and at 100 %
    r_int_ohm: float = 0.02
    v_reg: float = 48.0  # bus voltage the BBU's converter holds when it carries the bus
    droop_ohm: float = 0.002
    i_max_a: float = 300.0  # bus-side current limit
    eff_discharge: float = 0.97
    eff_charge: float = 0.95
    coulomb_eff: float = 0.98
    taper_from: float = 0.9  # charge current tapers linearly to 0 between this SOC and full
    c_th_j_per_k: float = 20000.0
    g_w_per_k: float = 5.0


class Psu:
    """State of one slot (the PSU in it, if any)."""

    def __init__(self, slot: int, params: PsuParams, ambient_c: float, present: bool = True) -> None:
        self.slot = slot
        self.feed = FEED_OF_SLOT[slot]
        self.p = params
        self.present = present
        self.failure: str | None = None
        self.t_hot_c = ambient_c
        self.fan_rpm = 0.0
        self.i_out = 0.0
        self.v_out = 0.0
        self.p_loss = 0.0
        self.p_in = 0.0
        self.vset = 0.0
        self.ilim = 0.0
        self.sourcing = False  # able to drive the bus this step

    def fail(self, mode: str) -> None:
        if mode not in PSU_FAILURES:
            raise ValueError(f"PSU failure must be one of {PSU_FAILURES}, not {mode!r}")
        self.failure = mode

    def repair(self) -> None:
        self.failure = None

    def current_at(self, v: float) -> float:
        if not self.sourcing:
            return 0.0
        return clamp((self.vset - v) / self.p.droop_ohm, 0.0, self.ilim)


class PowerShelf(Plant):
    """The power shelf as the controller board's sensors see it."""

    OUTPUT_DEFAULTS: Mapping[int, int] = {
        **{io.psu_o(s, io.O_PSU_ON): 1 for s in range(io.PSU_COUNT)},
        **{io.psu_o(s, io.O_PSU_VSET): 5100 for s in range(io.PSU_COUNT)},
        **{io.psu_o(s, io.O_PSU_ILIM): io.PSU_RATED_I for s in range(io.PSU_COUNT)},
        **{io.psu_o(s, io.O_PSU_FAN): 30 for s in range(io.PSU_COUNT)},
        io.O_BBU_ENABLE: 1,
        io.O_BBU_CHARGE_I: 0,
        io.O_ALARM: 0,
    }
    # Fans and temperatures use exact first-order updates, the BBU's charge is linear
    # in time: only the held outputs limit the step, so it can be long.
    MAX_SUBSTEP_S = 0.5
    V_UVLO = 40.0  # the IT load's power supplies drop out below this bus voltage
    FEED_NOMINAL_V = 230.0
    FEED_HZ = 50.0

    def __init__(
        self,
        *,
        seed: int = 0,
        noise: float = 1.0,
        load_w: float = 9000.0,
        ambient_c: float = 25.0,
        psus: int = io.PSU_COUNT,
        bbu_soc: float = 1.0,
        psu_params: PsuParams | None = None,
        bbu_params: BbuParams | None = None,
    ) -> None:
        super().__init__(seed=seed, noise=noise)
        self.load_w = load_w
        self.ambient_c = ambient_c
        self.psu_params = psu_params or PsuParams()
        self.bbu_params = bbu_params or BbuParams()
        self.psus = [Psu(s, self.psu_params, ambient_c, present=s < psus) for s in range(io.PSU_COUNT)]
        self.feed_v = [self.FEED_NOMINAL_V, self.FEED_NOMINAL_V]
        self.bus_v = 0.0
        self.collapsed = False
        self.bbu_soc = bbu_soc
        self.bbu_soh = 1.0
        self.bbu_t_c = ambient_c
        self.bbu_present = True
        self.bbu_i_bus = 0.0  # > 0: the BBU sources the bus
        self.bbu_i_pack = 0.0  # > 0 charging, < 0 discharging (the fuel gauge's sign)
        self._solve(self.outputs)

    # ---- scenario controls -----------------------------------------------------
    def psu(self, slot: int) -> Psu:
        """PSU in 0-based ``slot``."""
        return self.psus[slot]

    def set_load(self, watts: float) -> None:
        self.load_w = max(0.0, watts)

    def set_feed(self, feed: int, volts: float) -> None:
        """Set AC feed ``feed`` (0 = A, 1 = B) to ``volts`` (0 = lost)."""
        self.feed_v[feed] = max(0.0, volts)

    def lose_feed(self, feed: int) -> None:
        self.set_feed(feed, 0.0)

    def restore_feed(self, feed: int) -> None:
        self.set_feed(feed, self.FEED_NOMINAL_V)

    def remove_psu(self, slot: int) -> None:
        self.psus[slot].present = False

    def insert_psu(self, slot: int) -> None:
        """Seat a fresh PSU in ``slot`` (cold, no failure)."""
        self.psus[slot] = Psu(slot, self.psu_params, self.ambient_c, present=True)

    def fail_psu(self, slot: int, mode: str) -> None:
        self.psus[slot].fail(mode)

    def repair_psu(self, slot: int) -> None:
        self.psus[slot].repair()

    @property
    def load_i(self) -> float:
        return self.load_w / self.bus_v if self.bus_v > 0 else 0.0

    # ---- physics ------------------------------------------------------------------
    def _ac_ok(self, psu: Psu) -> bool:
        return psu.present and self.feed_v[psu.feed] >= self.psu_params.ac_ok_min_v

    def _prepare(self, outputs: Mapping[int, int]) -> None:
        for psu in self.psus:
            s = psu.slot
            on = outputs.get(io.psu_o(s, io.O_PSU_ON), 0) != 0
            psu.vset = outputs.get(io.psu_o(s, io.O_PSU_VSET), 0) / 100.0
            if psu.failure == "overvoltage":
                psu.vset += psu.p.ov_runaway_v
            psu.ilim = clamp(outputs.get(io.psu_o(s, io.O_PSU_ILIM), 0) / 100.0, 0.0, psu.p.i_max_a)
            psu.sourcing = on and self._ac_ok(psu) and psu.failure != "dead" and psu.vset > 0

    def _bbu_current_at(self, v: float, enabled: bool) -> float:
        b = self.bbu_params
        if not (enabled and self.bbu_present and self.bbu_soc > 0.0):
            return 0.0
        return clamp((b.v_reg - v) / b.droop_ohm, 0.0, b.i_max_a)

    def _bbu_v_oc(self) -> float:
        b = self.bbu_params
        return b.v_empty + (b.v_full - b.v_empty) * self.bbu_soc

    def _charge_pack_a(self, outputs: Mapping[int, int]) -> float:
        b = self.bbu_params
        cmd = max(0, outputs.get(io.O_BBU_CHARGE_I, 0)) / 10.0
        if not self.bbu_present or cmd <= 0 or self.bbu_soc >= 1.0:
            return 0.0
        if self.bbu_soc > b.taper_from:
            cmd *= (1.0 - self.bbu_soc) / (1.0 - b.taper_from)
        return cmd

    def _solve(self, outputs: Mapping[int, int]) -> None:
        """Find the bus voltage and every source's current for this instant."""
        self._prepare(outputs)
        enabled = outputs.get(io.O_BBU_ENABLE, 0) != 0
        psu_supply = any(p.sourcing for p in self.psus)
        charge_a = self._charge_pack_a(outputs) if psu_supply else 0.0
        charge_w = charge_a * self._bbu_v_oc() / self.bbu_params.eff_charge
        demand_w = self.load_w + charge_w

        def surplus(v: float) -> float:
            supply = sum(p.current_at(v) for p in self.psus) + self._bbu_current_at(v, enabled)
            return supply - demand_w / v

        # Supply is piecewise linear in V (kinks where a source starts conducting or
        # hits its current limit); the constant-power demand P/V is smooth.  Several
        # voltages can balance (e.g. PSUs current-limited just above the BBU's
        # regulation point); the physical one is the highest, so walk the kinks down
        # from the top and bisect inside the first segment where surplus turns >= 0.
        kinks = {self.V_UVLO}
        for p in self.psus:
            if p.sourcing:
                kinks.update((p.vset, p.vset - p.p.droop_ohm * p.ilim))
        if self._bbu_current_at(0.0, enabled) > 0:
            b = self.bbu_params
            kinks.update((b.v_reg, b.v_reg - b.droop_ohm * b.i_max_a))
        points = sorted((k for k in kinks if k >= self.V_UVLO), reverse=True)
        v = 0.0
        if demand_w <= 0:
            v = points[0] if len(points) > 1 else 0.0  # open circuit: the highest source
        else:
            for hi, lo in zip(points, points[1:], strict=False):
                if surplus(lo) >= 0:
                    if surplus(hi) >= 0:
                        v = hi
                        break
                    for _ in range(40):
                        mid = 0.5 * (lo + hi)
                        if surplus(mid) >= 0:
                            lo = mid
                        else:
                            hi = mid
                    v = lo
                    break
        self.collapsed = v == 0.0 and demand_w > 0
        self.bus_v = v
        for p in self.psus:
            p.i_out = p.current_at(v) if v > 0 else 0.0
            p.v_out = p.vset - p.p.droop_ohm * p.i_out if p.sourcing and v > 0 else 0.0
        self.bbu_i_bus = self._bbu_current_at(v, enabled) if v > 0 else 0.0
        if self.bbu_i_bus > 0:
            b = self.bbu_params
            self.bbu_i_pack = -v * self.bbu_i_bus / (b.eff_discharge * max(self._bbu_v_oc(), 1.0))
        else:
            self.bbu_i_pack = charge_a if v > 0 else 0.0

    def _integrate(self, dt_s: float, outputs: Mapping[int, int]) -> None:
        self._solve(outputs)
        for p in self.psus:
            self._psu_thermal(p, dt_s, outputs)
        self._bbu_integrate(dt_s)

    def _psu_thermal(self, p: Psu, dt_s: float, outputs: Mapping[int, int]) -> None:
        pp = p.p
        if not p.present:
            p.p_loss = p.p_in = 0.0
            p.fan_rpm = 0.0
            p.t_hot_c = self.ambient_c
            return
        p_out = p.v_out * p.i_out
        if p.sourcing:
            p.p_loss = pp.p0_w + pp.k1 * p_out + pp.k2_per_w * p_out * p_out
        elif self._ac_ok(p) and p.failure != "dead":
            p.p_loss = pp.standby_w
        else:
            p.p_loss = 0.0
        p.p_in = p_out + p.p_loss
        powered = self._ac_ok(p) and p.failure != "dead"
        duty = clamp(outputs.get(io.psu_o(p.slot, io.O_PSU_FAN), 0), 0, 100) if powered else 0
        if p.failure == "fan":
            duty = 0
        p.fan_rpm = first_order(p.fan_rpm, duty / 100.0 * pp.fan_rpm_max, pp.fan_tau_s, dt_s)
        g = pp.g0_w_per_k + pp.g_fan_w_per_k * p.fan_rpm / pp.fan_rpm_max
        t_eq = self.ambient_c + p.p_loss / g
        p.t_hot_c = first_order(p.t_hot_c, t_eq, pp.c_th_j_per_k / g, dt_s)

    def _bbu_integrate(self, dt_s: float) -> None:
        b = self.bbu_params
        i = self.bbu_i_pack
        if i < 0:
            self.bbu_soc = max(0.0, self.bbu_soc + i * dt_s / (3600.0 * b.capacity_ah))
        elif i > 0:
            self.bbu_soc = min(1.0, self.bbu_soc + i * b.coulomb_eff * dt_s / (3600.0 * b.capacity_ah))
        heat = i * i * b.r_int_ohm
        if i < 0:
            heat += self.bus_v * self.bbu_i_bus * (1.0 - b.eff_discharge)
        t_eq = self.ambient_c + heat / b.g_w_per_k
        self.bbu_t_c = first_order(self.bbu_t_c, t_eq, b.c_th_j_per_k / b.g_w_per_k, dt_s)

    # ---- sensors ------------------------------------------------------------------
    def _readings(self) -> dict[int, tuple[float, float]]:
        r: dict[int, tuple[float, float]] = {io.S_BOARD_T: ((self.ambient_c + 8.0) * 10, 1.0)}
        feed_i = [0.0, 0.0]
        for p in self.psus:
            if p.present and self.feed_v[p.feed] > 0:
                feed_i[p.feed] += p.p_in / (self.feed_v[p.feed] * p.p.pf)
        for f, (ch_v, ch_i, ch_hz) in enumerate(
            ((io.S_FEED1_V, io.S_FEED1_I, io.S_FEED1_HZ), (io.S_FEED2_V, io.S_FEED2_I, io.S_FEED2_HZ))
        ):
            v = self.feed_v[f]
            r[ch_v] = _n(v * 10, 2.0)
            r[ch_i] = _n(feed_i[f] * 100, 2.0)
            r[ch_hz] = _n(self.FEED_HZ * 100 if v > 0 else 0.0, 1.0)
        r[io.S_BUS_V] = _n(self.bus_v * 100, 1.0)
        r[io.S_BUS_I] = _n(self.load_i * 10, 1.0)
        v_pack = self._bbu_v_oc() + self.bbu_i_pack * self.bbu_params.r_int_ohm if self.bbu_present else 0.0
        r[io.S_BBU_V] = _n(v_pack * 100, 1.0)
        r[io.S_BBU_I] = _n(self.bbu_i_pack * 10, 1.0)
        r[io.S_BBU_T] = _n(self.bbu_t_c * 10, 1.0)
        r[io.S_BBU_SOC] = (round(self.bbu_soc * 1000), 0.0)
        r[io.S_BBU_SOH] = (round(self.bbu_soh * 1000), 0.0)
        for p in self.psus:
            ch = io.psu_s(p.slot, 0)
            if not p.present:
                for m in range(io.S_PSU_STRIDE):
                    r[ch + m] = (0, 0.0)
                continue
            ac_v = self.feed_v[p.feed]
            r[ch + io.S_PSU_PRESENT] = (1, 0.0)
            r[ch + io.S_PSU_IN_V] = _n(ac_v * 10, 2.0)
            r[ch + io.S_PSU_IN_I] = _n(p.p_in / (ac_v * p.p.pf) * 100 if ac_v > 0 else 0.0, 2.0)
            r[ch + io.S_PSU_OUT_V] = _n(p.v_out * 100, 1.0)
            r[ch + io.S_PSU_OUT_I] = _n(p.i_out * 100, 5.0)
            r[ch + io.S_PSU_T_INLET] = _n(self.ambient_c * 10, 1.0)
            r[ch + io.S_PSU_T_HOT] = _n(p.t_hot_c * 10, 1.0)
            r[ch + io.S_PSU_FAN_RPM] = _n(p.fan_rpm, 20.0)
            r[ch + io.S_PSU_AC_OK] = (1 if self._ac_ok(p) and p.failure != "dead" else 0, 0.0)
        return r

