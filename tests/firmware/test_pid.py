"""Integer PID: limits, slew, anti-windup, bumpless transfer, derivative on measurement."""

from hypothesis import given
from hypothesis import strategies as st

from rackfw.pid import Pid


def make(kp=1000, ki=0, kd=0, lo=0, hi=1000, rate=0, direct=True):
    p = Pid(lo, hi, rate, direct)
    p.set_gains(kp, ki, kd)
    return p


def test_proportional_only_is_gain_times_error():
    p = make(kp=2500)  # 2.5 output units per input unit
    assert p.update(100, 60, 100) == 100  # 2.5 * 40
    assert p.update(100, 100, 100) == 0


def test_reverse_acting_opens_when_measurement_is_above_setpoint():
    p = make(kp=1000, direct=False)
    assert p.update(2500, 2600, 100) == 100
    assert p.update(2500, 2400, 100) == 0  # clamped at out_min


def test_integral_accumulates_per_second():
    p = make(kp=0, ki=1000)  # 1 output unit per input unit per second
    out = 0
    for _ in range(10):  # 1 s of 100 ms ticks, error 50
        out = p.update(50, 0, 100)
    assert out == 50


def test_output_is_clamped_to_limits():
    p = make(kp=100000, lo=200, hi=800)
    assert p.update(1000, 0, 100) == 800
    assert p.update(0, 1000, 100) == 200


def test_slew_rate_limits_change_per_second():
    p = make(kp=100000, rate=100)  # 100 units/s -> 10 per 100 ms tick
    outs = [p.update(1000, 0, 100) for _ in range(5)]
    assert outs == [10, 20, 30, 40, 50]


def test_no_windup_after_long_saturation():
    """After minutes pinned at the limit, the output leaves it as soon as the error flips."""
    p = make(kp=500, ki=2000, hi=1000)
    outs = [p.update(1000, 0, 100) for _ in range(6000)]  # 10 minutes saturated high
    assert outs[-1] == 1000 and outs[10:] == [1000] * (6000 - 10)
    assert p.integ <= 1000 * 1000
    # error reverses: a wound-up integrator would hold the output at max for a long time
    out = p.update(0, 100, 100)
    assert out < 1000
    for _ in range(20):
        out = p.update(0, 100, 100)
    assert out == 0


def test_slew_limited_output_does_not_wind_the_integrator():
    p = make(kp=0, ki=10000, rate=10)  # integral wants to race ahead, slew holds it back
    for _ in range(100):
        p.update(1000, 0, 100)
    # integral stays near the actually applied output, not the unconstrained value
    assert p.integ // 1000 <= p.out + 100


def test_track_gives_bumpless_transfer():
    p = make(kp=2000, ki=500)
    p.track(430, 2500, 2700)  # manual output 43.0 % while sp - pv = 200
    # only this tick's integral (0.5 * 200 * 0.1 s = 10) is added: no proportional jump
    assert p.update(2700, 2500, 100) == 440


def test_derivative_on_measurement_has_no_setpoint_kick():
    p = make(kp=0, kd=5000)
    p.update(0, 100, 100)
    # setpoint step, measurement unchanged: derivative term stays zero
    assert p.update(500, 100, 100) == 0


def test_derivative_opposes_measurement_rise():
    p = make(kp=1000, kd=10000, lo=-1000, hi=1000)
    p.update(0, 0, 100)
    p.update(0, 0, 100)
    with_kick = p.update(0, 10, 100)  # pv rising -> derivative pushes output down
    assert with_kick < -10


def test_zero_dt_keeps_output():
    p = make(kp=1000)
    first = p.update(100, 0, 100)
    assert p.update(500, 0, 0) == first


@given(
    sp=st.integers(-5000, 5000),
    pvs=st.lists(st.integers(-5000, 5000), min_size=1, max_size=50),
    kp=st.integers(0, 20000),
    ki=st.integers(0, 20000),
    kd=st.integers(0, 20000),
    rate=st.integers(0, 500),
    direct=st.booleans(),
)
def test_output_always_within_limits_and_slew(sp, pvs, kp, ki, kd, rate, direct):
    p = make(kp, ki, kd, lo=-300, hi=700, rate=rate, direct=direct)
    prev = p.out
    for pv in pvs:
        out = p.update(sp, pv, 100)
        assert -300 <= out <= 700
        if rate:
            assert abs(out - prev) <= max(1, rate * 100 // 1000)
        assert -300 * 1000 <= p.integ <= 700 * 1000
        prev = out


def test_gain_divider_scales_every_term():
    p = Pid(-1000, 1000, 0, True, 10)
    p.set_gains(2000, 0, 0)  # register 2.000 in units ten times coarser than the loop's
    assert p.update(100, 0, 100) == 20


def test_tiny_errors_still_integrate_without_bias():
    up = make(kp=0, ki=1, lo=-10, hi=10)  # 0.001 per unit per second
    down = make(kp=0, ki=1, lo=-10, hi=10)
    for _ in range(10000):  # 1000 s of error +-1: integral exactly +-1
        a = up.update(1, 0, 100)
        b = down.update(0, 1, 100)
    assert (a, b) == (1, -1)
