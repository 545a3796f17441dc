"""CDU building blocks on their own: sensor checks, leak latching, lead/lag pumps, modes."""

from app_fakes import Events
from hypothesis import given
from hypothesis import strategies as st

from rackfw.cooling import modes as M
from rackfw.cooling import sensorcheck as SC
from rackfw.cooling.leak import LeakMonitor
from rackfw.cooling.pumps import PF_NO_TACH, PF_OC, PumpPair
from rackfw.events import EV_MODE
from rackfw.io_cdu import SENSOR_OPEN, SENSOR_SHORT

# ---- sensor checks ----------------------------------------------------------------


def checker():
    c = SC.SensorCheck(2)
    c.configure(0, -1000, 9000)
    c.configure(1, 0, 1000)
    return c


def test_open_short_and_range_faults_are_detected_immediately():
    for bad, kind in ((SENSOR_OPEN, SC.KIND_OPEN), (SENSOR_SHORT, SC.KIND_SHORT),
                      (9001, SC.KIND_RANGE), (-1001, SC.KIND_RANGE)):
        c = checker()
        assert c.check(0, 2500, 100, -1)
        assert not c.check(0, bad, 100, -1)
        assert c.kind[0] == kind and c.mask == 1


def test_fault_clears_only_after_recovery_time():
    c = checker()
    c.check(0, SENSOR_OPEN, 100, -1)
    n_false = 0
    while not c.check(0, 2500 + n_false, 100, -1):
        n_false += 1
    assert n_false == SC.RECOVER_MS // 100 - 1
    assert c.mask == 0 and c.kind[0] == SC.KIND_OK


def test_stuck_needs_a_moving_actuator():
    c = checker()
    for _ in range(SC.STUCK_MS // 100 + 10):  # steady process, steady actuator: fine
        assert c.check(0, 2500, 100, 300)
    c = checker()
    ok = True
    for t in range(SC.STUCK_MS // 100 + 10):  # actuator ramps 0 -> 100 %, value frozen
        ok = c.check(0, 2500, 100, min(1000, t))
    assert not ok and c.kind[0] == SC.KIND_STUCK


def test_a_live_sensor_with_moving_actuator_is_not_stuck():
    c = checker()
    for t in range(SC.STUCK_MS // 100 + 10):
        assert c.check(0, 2500 + (t // 50) % 2, 100, min(1000, t))


@given(st.lists(st.integers(-1000, 9000), min_size=1, max_size=100))
def test_in_range_values_never_fault_without_stuck(values):
    c = checker()
    for v in values:
        assert c.check(0, v, 100, -1)


# ---- leak ---------------------------------------------------------------------------


def test_any_wet_zone_latches():
    lk = LeakMonitor()
    assert lk.update(0b0100) == 0b0100
    assert lk.update(0) == 0
    assert lk.latched == 0b0100


def test_isolation_only_for_zones_in_the_mask():
    lk = LeakMonitor()
    lk.update(0b0100)  # rack A
    assert not lk.isolating(0b0011)
    lk.update(0b0001)  # CDU tray
    assert lk.isolating(0b0011)


def test_clear_releases_dry_zones_only():
    lk = LeakMonitor()
    lk.update(0b0011)
    lk.update(0b0010)  # tray dried, manifold still wet
    assert lk.clear() == 0b0001
    assert lk.latched == 0b0010


# ---- pumps --------------------------------------------------------------------------


def run(p, ticks, demand, rpm=(3000, 3000), cur=(500, 500), oc=1200, fail_ms=2000, rot=0,
        dead=()):
    for _ in range(ticks):
        for i in range(2):
            running = p.cmd[i] > 0 and i not in dead
            p.sample(i, rpm[i] if running else 0, cur[i] if running else 0)
        p.update(100, demand, oc, fail_ms, rot)


def test_lead_runs_lag_stands_by():
    p = PumpPair()
    run(p, 5, 600)
    assert p.cmd == [600, 0]


def test_failover_when_lead_has_no_tach_within_the_delay():
    p = PumpPair()
    run(p, 5, 600)
    run(p, 19, 600, dead=(0,))
    assert p.lead == 0  # 1.9 s without tach: not yet
    run(p, 1, 600, dead=(0,))
    assert p.lead == 1 and p.failover
    assert p.fail[0] & PF_NO_TACH
    assert p.cmd == [0, 600]


def test_failover_on_overcurrent():
    p = PumpPair()
    run(p, 25, 600, cur=(2000, 500))
    assert p.fail[0] & PF_OC and p.lead == 1


def test_both_failed_is_reported_and_nothing_runs():
    p = PumpPair()
    run(p, 45, 600, dead=(0, 1))  # 2 s to fail the lead, 2 s more for the lag
    assert p.all_failed()
    assert p.cmd == [0, 0]


def test_rotation_by_run_hours():
    p = PumpPair()
    p.run_s[0] = 3600 * 10
    p.run_s[1] = 3600 * 9
    run(p, 1, 600, rot=3600 * 2)
    assert p.lead == 0  # 1 h ahead: no swap yet
    p.run_s[0] = 3600 * 11 + 1
    run(p, 1, 600, rot=3600 * 2)
    assert p.lead == 1 and p.rotated and not p.failover


def test_run_time_counts_only_while_turning():
    p = PumpPair()
    run(p, 51, 600)  # the first tick only starts the lead: 5.0 s of turning
    assert p.run_s == [5, 0]


def test_failed_pump_is_not_selectable_until_cleared():
    p = PumpPair()
    run(p, 25, 600, dead=(0,))
    assert not p.select_lead(0)
    p.clear()
    assert p.select_lead(0)


# ---- modes ---------------------------------------------------------------------------


def test_transitions_are_logged_with_old_and_new_mode():
    ev = Events()
    m = M.ModeMachine(ev)
    assert m.request(M.AUTO) == 0
    assert m.request(M.MANUAL) == 0
    assert ev.log_ == [(EV_MODE, M.AUTO, M.STANDBY), (EV_MODE, M.MANUAL, M.AUTO)]


def test_fault_cannot_be_commanded():
    m = M.ModeMachine(Events())
    assert m.request(M.FAULT) == 3


def test_fault_is_left_only_when_causes_are_gone_and_returns_to_requested_mode():
    m = M.ModeMachine(Events())
    m.request(M.AUTO)
    m.fault(M.FC_LEAK)
    assert m.request(M.MANUAL) == 0  # remembered, not applied
    assert m.mode == M.FAULT
    assert not m.recover(M.FC_LEAK)
    assert m.mode == M.FAULT
    assert m.recover(0)
    assert m.mode == M.MANUAL


def test_a_pump_far_below_its_commanded_speed_counts_as_not_turning():
    p = PumpPair()
    run(p, 5, 1000, rpm=(1700, 3000))  # 100 % asks for 3600 rpm; 1700 is under half
    assert p.lead == 0
    run(p, 20, 1000, rpm=(1700, 3000))
    assert p.fail[0] & PF_NO_TACH and p.lead == 1
    q = PumpPair()
    run(q, 40, 1000, rpm=(1900, 3000))  # slow but turning: no failover
    assert q.lead == 0 and not q.fail[0]
