"""Per-PSU protection rules, BBU supervision and N+1 redundancy, one behaviour per test."""

from rackfw.power import bbu as B
from rackfw.power.protection import (
    F_OC,
    F_OT,
    F_OV,
    FAN_FAIL_MS,
    W_AC,
    W_FAN,
    W_OT,
    PsuProtection,
)
from rackfw.power.redundancy import Redundancy

OV, OC, DELAY, WARN, FAULT = 5600, 6000, 500, 650, 800  # 56 V, 60 A, 0.5 s, 65 / 80 degC


def ev(p, on=1, v=5400, i=3000, t=400, fan_cmd=50, rpm=8000, ac=1, dt=100):
    return p.evaluate(dt, on, v, i, t, fan_cmd, rpm, ac, OV, OC, DELAY, WARN, FAULT)


def test_healthy_psu_has_no_status_bits():
    assert ev(PsuProtection()) == 0


def test_overvoltage_trips_on_the_first_sample_and_latches():
    p = PsuProtection()
    assert ev(p, v=OV + 1) & F_OV
    assert p.raised == F_OV
    # PSU is off now (output collapses) - the fault stays
    assert ev(p, on=0, v=0, i=0) & F_OV


def test_overcurrent_trips_only_after_the_delay():
    p = PsuProtection()
    for _ in range(DELAY // 100 - 1):
        assert not ev(p, i=OC + 100) & F_OC
    assert ev(p, i=OC + 100) & F_OC


def test_short_overcurrent_bursts_do_not_trip_but_sustained_flicker_does():
    p = PsuProtection()
    for _ in range(50):  # 200 ms over, 200 ms under: net zero
        ev(p, i=OC + 1)
        ev(p, i=OC + 1)
        ev(p, i=OC - 1)
        ev(p, i=OC - 1)
    assert not p.status & F_OC
    p2 = PsuProtection()
    tripped = False
    for _ in range(20):  # 300 ms over, 100 ms under: leaky timer still reaches the delay
        for _ in range(3):
            tripped |= bool(ev(p2, i=OC + 1) & F_OC)
        ev(p2, i=OC - 1)
    assert tripped


def test_overtemperature_warns_and_derates_then_trips():
    p = PsuProtection()
    assert ev(p, t=WARN + 10) == W_OT
    rated = 6000
    mid = (WARN + FAULT) // 2
    ev(p, t=mid)
    lim = p.current_limit(rated, mid, WARN, FAULT)
    assert rated // 2 < lim < rated
    assert p.current_limit(rated, WARN + 1, WARN, FAULT) > lim  # less derating when cooler
    assert ev(p, t=FAULT) & F_OT


def test_ot_warning_clears_with_hysteresis():
    p = PsuProtection()
    ev(p, t=WARN + 1)
    assert ev(p, t=WARN - 5) & W_OT  # inside the hysteresis band
    assert not ev(p, t=WARN - 30) & W_OT


def test_no_derating_without_warning():
    p = PsuProtection()
    ev(p, t=300)
    assert p.current_limit(6000, 300, WARN, FAULT) == 6000


def test_fan_failure_is_a_warning_after_its_delay():
    p = PsuProtection()
    for _ in range(FAN_FAIL_MS // 100 - 1):
        assert not ev(p, rpm=0) & W_FAN
    st = ev(p, rpm=0)
    assert st & W_FAN and not st & (F_OV | F_OC | F_OT)  # warning, not a trip
    assert not ev(p, rpm=6000) & W_FAN


def test_fan_not_commanded_is_not_a_failure():
    p = PsuProtection()
    for _ in range(50):
        ev(p, rpm=0, fan_cmd=0)
    assert not p.status & W_FAN


def test_ac_bad_is_reported():
    assert ev(PsuProtection(), ac=0) & W_AC


def test_clear_only_when_condition_gone():
    p = PsuProtection()
    ev(p, t=FAULT + 10)
    assert p.status & F_OT
    assert p.clear(0, 0, FAULT + 10, OV, OC, WARN) == 0  # still hot: stays latched
    assert p.status & F_OT
    ev(p, on=0, t=WARN - 50)
    assert p.clear(0, 0, WARN - 50, OV, OC, WARN) == F_OT
    assert not p.status & F_OT


def test_latched_fault_survives_condition_going_away_without_clear():
    p = PsuProtection()
    ev(p, v=OV + 50)
    for _ in range(10):
        ev(p, on=0, v=0, i=0)
    assert p.status & F_OV


# ---- BBU ---------------------------------------------------------------------


def bbu_update(b, ac=True, v=5000, i=0, t=250, soc=1000, soh=950):
    return b.update(ac, v, i, t, soc, soh)


def test_bbu_idle_when_full_on_ac():
    assert bbu_update(B.Bbu()) == B.MODE_IDLE


def test_bbu_discharges_when_ac_lost_and_counts_a_cycle_on_return():
    b = B.Bbu()
    bbu_update(b)
    assert bbu_update(b, ac=False, i=-400, soc=900) == B.MODE_DISCHARGING
    assert b.enable() == 1
    assert bbu_update(b, ac=True, soc=890) == B.MODE_CHARGING
    assert b.cycles == 1
    assert b.charge_current(50) == 50


def test_bbu_charging_has_hysteresis():
    b = B.Bbu()
    assert bbu_update(b, soc=960) == B.MODE_IDLE  # above the recharge level: rest
    assert bbu_update(b, soc=940) == B.MODE_CHARGING
    assert bbu_update(b, soc=970) == B.MODE_CHARGING  # keeps charging until full
    assert bbu_update(b, soc=B.SOC_FULL) == B.MODE_IDLE
    assert b.charge_current(50) == 0


def test_bbu_fault_on_overtemperature_disarms():
    b = B.Bbu()
    assert bbu_update(b, t=B.T_MAX + 1) == B.MODE_FAULT
    assert b.enable() == 0


# ---- redundancy -----------------------------------------------------------------


def red(caps, load):
    r = Redundancy(len(caps))
    for i, c in enumerate(caps):
        r.cap_w[i] = c
    r.update(load)
    return r


def test_n_plus_1_ok_when_load_fits_after_losing_largest():
    assert red([3000, 3000, 3000, 0, 0, 0], 6000).n_plus_1()
    assert not red([3000, 3000, 3000, 0, 0, 0], 6001).n_plus_1()
    assert not red([3000, 0, 0, 0, 0, 0], 100).n_plus_1()  # one PSU is never N+1


def test_turning_off_a_needed_psu_is_refused():
    r = red([3000, 3000, 0, 0, 0, 0], 4000)
    assert not r.may_turn_off(0)
    r = red([3000, 3000, 3000, 0, 0, 0], 4000)
    assert r.may_turn_off(0)


def test_turning_off_a_non_contributing_psu_is_allowed():
    r = red([3000, 0, 0, 0, 0, 0], 2900)
    assert r.may_turn_off(1)


def test_fan_of_an_unpowered_psu_is_not_a_failure():
    p = PsuProtection()
    for _ in range(50):
        ev(p, rpm=0, ac=0, v=0, i=0)
    assert not p.status & W_FAN
