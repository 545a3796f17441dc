"""Plant models: behaviour a closed-loop controller relies on, in the firmware's units."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackhil.plants.cdu import Cdu, CduParams, effectiveness
from rackhil.plants.cdu import io as cio
from rackhil.plants.power_shelf import PowerShelf
from rackhil.plants.power_shelf import io as pio


def psu_i(s: dict[int, int], slot: int, member: int) -> int:
    return s[pio.psu_s(slot, member)]


def shelf_settled(**kw) -> PowerShelf:
    shelf = PowerShelf(noise=0, **kw)
    shelf.step(1.0)
    return shelf


# ---------------------------------------------------------------- power shelf
def test_every_io_channel_is_produced() -> None:
    shelf_s = PowerShelf().sensors()
    names = [n for n in dir(pio) if n.startswith("S_") and not n.startswith("S_PSU_")]
    assert {getattr(pio, n) for n in names} <= set(shelf_s)
    assert all(pio.psu_s(s, m) in shelf_s for s in range(pio.PSU_COUNT) for m in range(9))
    cdu_s = Cdu().sensors()
    names = [n for n in dir(cio) if n.startswith("S_") and not n.startswith("S_PUMP_")]
    assert {getattr(cio, n) for n in names} <= set(cdu_s)
    assert all(isinstance(v, int) for v in (*shelf_s.values(), *cdu_s.values()))


@pytest.mark.parametrize("load_w", [600.0, 6000.0, 12000.0])
def test_psu_load_sharing_sums_to_the_load(load_w: float) -> None:
    shelf = shelf_settled(load_w=load_w)
    s = shelf.true_sensors()
    shares = [psu_i(s, k, pio.S_PSU_OUT_I) for k in range(6)]  # 0.01 A
    load = s[pio.S_BUS_I]  # 0.1 A
    assert sum(shares) / 100 == pytest.approx(load / 10, abs=0.2)
    assert max(shares) - min(shares) <= 2  # identical PSUs share equally
    assert s[pio.S_BUS_V] * s[pio.S_BUS_I] / 1000 == pytest.approx(load_w, rel=0.01)
    assert 5050 <= s[pio.S_BUS_V] <= 5100  # droop below the 51.00 V set point


def test_removed_psu_reads_absent_and_the_rest_pick_up_its_share() -> None:
    shelf = shelf_settled(load_w=9000.0)
    before = psu_i(shelf.true_sensors(), 1, pio.S_PSU_OUT_I)
    shelf.remove_psu(0)
    shelf.step(0.1)
    s = shelf.true_sensors()
    assert [s[pio.psu_s(0, m)] for m in range(pio.S_PSU_STRIDE)] == [0] * pio.S_PSU_STRIDE
    after = psu_i(s, 1, pio.S_PSU_OUT_I)
    assert after == pytest.approx(before * 6 / 5, rel=0.02)
    assert sum(psu_i(s, k, pio.S_PSU_OUT_I) for k in range(6)) / 100 == pytest.approx(s[pio.S_BUS_I] / 10, abs=0.2)
    shelf.insert_psu(0)
    shelf.step(0.1)
    s = shelf.true_sensors()
    assert psu_i(s, 0, pio.S_PSU_PRESENT) == 1
    assert psu_i(s, 0, pio.S_PSU_OUT_I) == pytest.approx(before, rel=0.02)


def test_efficiency_is_plausible_and_worse_at_light_load() -> None:
    def eta(load_w: float) -> float:
        s = shelf_settled(load_w=load_w).true_sensors()
        ac_w = sum(s[ch_v] * s[ch_i] / 1000 for ch_v, ch_i in ((pio.S_FEED1_V, pio.S_FEED1_I), (pio.S_FEED2_V, pio.S_FEED2_I)))
        return load_w / (ac_w * 0.99)  # PF 0.99: VA -> W

    half, light = eta(9000.0), eta(600.0)
    assert 0.94 < half < 0.975
    assert light < half - 0.03


def test_feed_loss_moves_the_load_to_the_other_feed() -> None:
    shelf = shelf_settled(load_w=6000.0)
    shelf.lose_feed(0)
    shelf.step(0.1)
    s = shelf.true_sensors()
    assert s[pio.S_FEED1_V] == 0 and s[pio.S_FEED1_I] == 0 and s[pio.S_FEED1_HZ] == 0
    for k in range(3):
        assert psu_i(s, k, pio.S_PSU_AC_OK) == 0 and psu_i(s, k, pio.S_PSU_OUT_I) == 0
    carried = sum(psu_i(s, k, pio.S_PSU_OUT_I) for k in range(3, 6)) / 100
    assert carried == pytest.approx(s[pio.S_BUS_I] / 10, abs=0.2)
    assert s[pio.S_BBU_I] == 0  # feed B alone carries 6 kW: battery idle
    assert s[pio.S_FEED2_HZ] == 5000


def test_bbu_discharges_when_both_feeds_are_lost_until_the_bus_collapses() -> None:
    shelf = shelf_settled(load_w=12000.0, bbu_params=None)
    shelf.lose_feed(0)
    shelf.lose_feed(1)
    shelf.step(1.0)
    s = shelf.true_sensors()
    assert s[pio.S_BBU_I] < -2000  # > 200 A out of the pack (negative = discharging)
    assert 4700 <= s[pio.S_BUS_V] <= 4800  # the BBU converter holds ~48 V
    socs = []
    for _ in range(5):
        shelf.step(60.0)
        socs.append(shelf.true_sensors()[pio.S_BBU_SOC])
    assert socs == sorted(socs, reverse=True) and socs[0] > socs[-1]
    shelf.step(3600.0)
    s = shelf.true_sensors()
    assert s[pio.S_BBU_SOC] == 0 and s[pio.S_BUS_V] == 0 and shelf.collapsed
    shelf.restore_feed(0)
    shelf.step(0.1)
    assert shelf.collapsed  # 3 PSUs (9 kW) cannot carry 12 kW with an empty battery
    shelf.restore_feed(1)
    shelf.step(0.1)
    assert shelf.true_sensors()[pio.S_BUS_V] > 5000  # power is back


def test_bbu_charges_on_ac_when_commanded_and_tapers_when_full() -> None:
    shelf = shelf_settled(load_w=3000.0, bbu_soc=0.5)
    shelf.step(1.0, {pio.O_BBU_CHARGE_I: 100})  # 10.0 A
    s = shelf.true_sensors()
    assert s[pio.S_BBU_I] == 100  # > 0 = charging
    soc0 = s[pio.S_BBU_SOC]
    shelf.step(600.0)
    assert shelf.true_sensors()[pio.S_BBU_SOC] > soc0
    full = shelf_settled(load_w=3000.0, bbu_soc=0.99)
    full.step(1.0, {pio.O_BBU_CHARGE_I: 100})
    assert 0 < full.true_sensors()[pio.S_BBU_I] < 20  # tapering near full
    idle = shelf_settled(bbu_soc=0.5)
    assert idle.true_sensors()[pio.S_BBU_I] == 0  # no command, no charge


def hot_spot_after(load_w: float, fan: int, minutes: float = 10.0) -> float:
    shelf = PowerShelf(noise=0, load_w=load_w)
    shelf.step(minutes * 60, {pio.psu_o(k, pio.O_PSU_FAN): fan for k in range(6)})
    return shelf.true_sensors()[pio.psu_s(0, pio.S_PSU_T_HOT)] / 10


def test_psu_temperature_rises_with_load_and_falls_with_fan_speed() -> None:
    assert hot_spot_after(15000.0, 40) > hot_spot_after(6000.0, 40) + 5
    assert hot_spot_after(15000.0, 100) < hot_spot_after(15000.0, 40) - 5
    shelf = PowerShelf(noise=0)
    shelf.step(5.0, {pio.psu_o(0, pio.O_PSU_FAN): 50})
    assert shelf.true_sensors()[pio.psu_s(0, pio.S_PSU_FAN_RPM)] == pytest.approx(pio.PSU_FAN_RPM_MAX / 2, rel=0.1)


def test_fan_failure_overheats_a_loaded_psu() -> None:
    shelf = PowerShelf(noise=0, load_w=15000.0)
    shelf.fail_psu(2, "fan")
    shelf.step(600.0)
    s = shelf.true_sensors()
    assert psu_i(s, 2, pio.S_PSU_FAN_RPM) == 0
    assert psu_i(s, 2, pio.S_PSU_T_HOT) > 950  # beyond the default 95 degC trip
    assert psu_i(s, 1, pio.S_PSU_T_HOT) < 800


def test_overvoltage_failure_shows_on_the_psu_output_and_switching_it_off_ends_it() -> None:
    shelf = shelf_settled(load_w=6000.0)
    shelf.fail_psu(4, "overvoltage")
    shelf.step(0.1)
    s = shelf.true_sensors()
    assert psu_i(s, 4, pio.S_PSU_OUT_V) > 5700  # above the default OV trip
    assert psu_i(s, 4, pio.S_PSU_OUT_I) > psu_i(s, 3, pio.S_PSU_OUT_I)  # it hogs the load
    shelf.step(0.1, {pio.psu_o(4, pio.O_PSU_ON): 0})
    s = shelf.true_sensors()
    assert psu_i(s, 4, pio.S_PSU_OUT_V) == 0 and psu_i(s, 4, pio.S_PSU_OUT_I) == 0
    assert s[pio.S_BUS_V] < 5100


def test_dead_psu_and_current_limit() -> None:
    shelf = shelf_settled(load_w=6000.0)
    shelf.fail_psu(0, "dead")
    shelf.step(0.1, {pio.psu_o(1, pio.O_PSU_ILIM): 500})  # 5 A limit on slot 2
    s = shelf.true_sensors()
    assert psu_i(s, 0, pio.S_PSU_OUT_I) == 0 and psu_i(s, 0, pio.S_PSU_AC_OK) == 0
    assert psu_i(s, 1, pio.S_PSU_OUT_I) == 500
    with pytest.raises(ValueError):
        shelf.fail_psu(0, "exploded")


def test_overload_beyond_every_source_collapses_the_bus() -> None:
    shelf = PowerShelf(noise=0, load_w=40000.0, bbu_soc=0.0)
    shelf.step(0.1)
    assert shelf.collapsed and shelf.true_sensors()[pio.S_BUS_V] == 0


def test_plants_are_deterministic_given_a_seed() -> None:
    def run(seed: int, cls) -> list[dict[int, int]]:
        plant = cls(seed=seed)
        out = []
        for _ in range(5):
            plant.step(0.1)
            out.append(plant.sensors())
        return out

    for cls in (PowerShelf, Cdu):
        assert run(1, cls) == run(1, cls)
        assert run(1, cls) != run(2, cls)
    quiet = PowerShelf(noise=0)
    assert quiet.sensors() == quiet.true_sensors()


def test_large_steps_match_small_steps() -> None:
    a, b = Cdu(noise=0), Cdu(noise=0)
    out = {cio.O_PUMP_BASE: 700, cio.O_VALVE: 500}
    a.step(30.0, out)
    for _ in range(300):
        b.step(0.1, out)
    assert a.t_supply_c == pytest.approx(b.t_supply_c, abs=0.01)
    assert a.flow_lpm == pytest.approx(b.flow_lpm, rel=1e-3)
    with pytest.raises(ValueError):
        a.step(-1.0)


# ---------------------------------------------------------------- CDU
@settings(max_examples=25, deadline=None)
@given(lo=st.integers(100, 900), extra=st.integers(50, 500))
def test_more_pump_speed_more_flow_and_dp(lo: int, extra: int) -> None:
    hi = min(1000, lo + extra)
    readings = []
    for speed in (lo, hi):
        cdu = Cdu(noise=0)
        cdu.step(10.0, {cio.O_PUMP_BASE: speed})
        readings.append(cdu.true_sensors())
    assert readings[1][cio.S_FLOW] > readings[0][cio.S_FLOW]
    assert readings[1][cio.S_DP] > readings[0][cio.S_DP]
    assert readings[1][cio.pump_s(0, cio.S_PUMP_RPM)] > readings[0][cio.pump_s(0, cio.S_PUMP_RPM)]
    assert readings[1][cio.pump_s(0, cio.S_PUMP_I)] > readings[0][cio.pump_s(0, cio.S_PUMP_I)]
    s = readings[1]
    assert s[cio.S_P_SUPPLY] - s[cio.S_P_RETURN] == pytest.approx(s[cio.S_DP], abs=1)


def cdu_steady(valve: int = 500, speed: int = 700, heat_w: float = 100_000.0) -> Cdu:
    cdu = Cdu(noise=0, params=CduParams(heat_load_w=heat_w))
    cdu.step(900.0, {cio.O_PUMP_BASE: speed, cio.O_VALVE: valve})
    return cdu


def test_opening_the_valve_lowers_the_supply_temperature() -> None:
    temps = [cdu_steady(valve=v).true_sensors()[cio.S_T_SUPPLY] for v in (200, 400, 700, 1000)]
    assert temps == sorted(temps, reverse=True) and temps[0] - temps[-1] > 300  # > 3 degC
    assert all(t > 2000 for t in temps)  # never below the 20 degC facility water


def test_steady_state_energy_balance_and_loop_delta_t() -> None:
    cdu = cdu_steady()
    s = cdu.true_sensors()
    assert cdu.q_hx_w == pytest.approx(100_000.0, rel=0.02)  # heat in = heat out
    flow_kg_s = s[cio.S_FLOW] / 10 / 60 * 0.997
    dt = (s[cio.S_T_RETURN] - s[cio.S_T_SUPPLY]) / 100
    assert dt == pytest.approx(100_000.0 / (flow_kg_s * 4186.0), rel=0.03)
    assert s[cio.S_T_FAC_OUT] > s[cio.S_T_FAC_IN]


def test_more_heat_load_warmer_return() -> None:
    low = cdu_steady(heat_w=50_000.0).true_sensors()
    high = cdu_steady(heat_w=150_000.0).true_sensors()
    assert high[cio.S_T_RETURN] > low[cio.S_T_RETURN] + 300
    assert high[cio.S_T_SUPPLY] > low[cio.S_T_SUPPLY]


def test_thermal_mass_makes_temperature_lag() -> None:
    cdu = cdu_steady()
    before = cdu.t_supply_c
    cdu.set_heat_load(200_000.0)
    cdu.step(1.0)
    one_second = cdu.t_supply_c - before
    cdu.step(120.0)
    assert 0 < one_second < (cdu.t_supply_c - before) / 5


def test_dead_pump_stops_and_the_other_restores_flow() -> None:
    cdu = cdu_steady()
    flow = cdu.flow_lpm
    cdu.fail_pump(0, "dead")
    cdu.step(15.0)
    s = cdu.true_sensors()
    assert s[cio.pump_s(0, cio.S_PUMP_RPM)] == 0 and s[cio.S_FLOW] == 0
    cdu.step(10.0, {cio.O_PUMP_BASE: 0, cio.O_PUMP_BASE + 1: 700})  # spin-up, tau 1.5 s
    assert cdu.flow_lpm == pytest.approx(flow, rel=0.01)
    with pytest.raises(ValueError):
        cdu.fail_pump(1, "melted")


def test_no_tach_and_overcurrent_pump_faults() -> None:
    cdu = cdu_steady()
    current = cdu.true_sensors()[cio.pump_s(0, cio.S_PUMP_I)]
    cdu.fail_pump(0, "no_tach")
    cdu.step(0.1)
    s = cdu.true_sensors()
    assert s[cio.pump_s(0, cio.S_PUMP_RPM)] == 0 and s[cio.S_FLOW] > 2000  # still pumping
    cdu.fail_pump(0, "overcurrent")
    cdu.step(0.1)
    assert cdu.true_sensors()[cio.pump_s(0, cio.S_PUMP_I)] > max(2 * current, cio.PUMP_I_MAX)
    assert current < cio.PUMP_I_MAX  # a healthy pump is well inside the trip level


def test_leak_wets_its_zone_drains_the_reservoir_and_slows_when_pumps_stop() -> None:
    cdu = cdu_steady()
    level0 = cdu.true_sensors()[cio.S_LEVEL]
    cdu.leak(cio.LEAK_RACK_A, lpm=3.0)
    cdu.step(60.0)
    s = cdu.true_sensors()
    assert s[cio.S_LEAK] == 1 << cio.LEAK_RACK_A
    pumped_loss = level0 - s[cio.S_LEVEL]
    assert pumped_loss > 20  # > 2 % of the reservoir in a minute
    cdu.step(60.0, {cio.O_PUMP_BASE: 0})  # isolation: pumps off
    cdu.step(60.0)
    seep_loss = s[cio.S_LEVEL] - cdu.true_sensors()[cio.S_LEVEL]
    assert seep_loss < pumped_loss
    cdu.stop_leak(cio.LEAK_RACK_A)
    assert cdu.true_sensors()[cio.S_LEAK] == 1 << cio.LEAK_RACK_A  # still wet
    cdu.stop_leak(cio.LEAK_RACK_A, dry=True)
    assert cdu.true_sensors()[cio.S_LEAK] == 0
    with pytest.raises(ValueError):
        cdu.leak(9)


def test_low_reservoir_starves_the_pumps() -> None:
    cdu = cdu_steady()
    flow = cdu.flow_lpm
    p_ret = cdu.true_sensors()[cio.S_P_RETURN]
    cdu.refill(0.05)
    cdu.step(1.0)
    assert cdu.flow_lpm < 0.7 * flow
    assert cdu.true_sensors()[cio.S_P_RETURN] < p_ret


def test_valve_travels_at_a_finite_rate_and_can_stick() -> None:
    cdu = Cdu(noise=0)
    cdu.step(3.0, {cio.O_VALVE: 1000})
    assert cdu.true_sensors()[cio.S_VALVE_FB] == pytest.approx(200, abs=2)  # 15 s full stroke
    cdu.stick_valve()
    cdu.step(30.0)
    assert cdu.true_sensors()[cio.S_VALVE_FB] == pytest.approx(200, abs=2)
    cdu.free_valve()
    cdu.step(30.0)
    assert cdu.true_sensors()[cio.S_VALVE_FB] == 1000


@given(ua=st.floats(1.0, 1e6), c1=st.floats(1.0, 1e6), c2=st.floats(1.0, 1e6))
def test_effectiveness_is_a_fraction(ua: float, c1: float, c2: float) -> None:
    e = effectiveness(ua, c1, c2)
    assert 0.0 < e <= 1.0
    assert effectiveness(ua, 0.0, c2) == 0.0


def test_noise_never_drives_a_non_negative_reading_below_zero():
    """Noise around a small positive value must not produce negative readings (u16 wrap)."""
    from rackhil.plants.base import Plant

    class Tiny(Plant):
        def _integrate(self, dt_s, outputs):
            pass

        def _readings(self):
            return {0: (0.5, 50.0), 1: (-20.0, 1.0)}

    plant = Tiny(seed=3)
    readings = [plant.sensors() for _ in range(500)]
    assert min(r[0] for r in readings) == 0
    assert max(r[0] for r in readings) > 10  # the noise is still there
    assert any(r[1] != -20 for r in readings)  # a negative quantity keeps its noise
