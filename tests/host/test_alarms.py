"""Alarms from flag bits, threshold rules and device health: raise, clear, latch, ack, persist."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackctl.alarms import AlarmManager, flag_alarms
from rackctl.config import AlarmRule
from rackctl.store import Store
from rackproto import regmap
from rackproto.regtypes import decode_words


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def ps() -> Any:
    return regmap.load("power_shelf")


@pytest.fixture(scope="module")
def cdu() -> Any:
    return regmap.load("cdu")


@pytest.fixture
def store(tmp_path: Path):
    s = Store(tmp_path / "a.db")
    yield s
    s.close()


def value(m: Any, name: str, v: Any) -> Any:
    reg = m.get(name)
    return decode_words(reg, m.encode_value(reg, v))


CDU = regmap.load("cdu")
HOT = AlarmRule(name="hot", register="t_supply", op=">", limit=45.0, hysteresis=2.0,
                severity="critical", latched=False)
LOW = AlarmRule(name="low level", register="level", op="<=", limit=20.0, hysteresis=0.0,
                severity="warning", latched=True, device="cdu-1")


def test_flag_classification_of_the_real_maps(ps: Any, cdu: Any) -> None:
    psu = flag_alarms(ps.get("psu1_status"))
    assert psu["ov"] == (3, "critical", True) and psu["ot_warning"][1:] == ("warning", False)
    assert not {"present", "on", "power_good"} & set(psu)  # states, not alarms
    assert "any_fault" not in flag_alarms(ps.get("shelf_status"))  # summary bit
    assert flag_alarms(ps.get("ac_flags")) == {}
    assert set(flag_alarms(cdu.get("leak_zones"))) == {"cdu_tray", "manifold", "rack_a", "rack_b"}
    assert flag_alarms(cdu.get("leak_isolate_mask")) == {}  # a holding config mask
    assert flag_alarms(cdu.get("t_supply")) == {}


def test_flag_bits_raise_and_clear_latched_needs_ack(store: Store, ps: Any) -> None:
    clock = Clock()
    alarms = AlarmManager(store, clock=clock)
    events: list[tuple[str, str]] = []
    alarms.listeners.append(lambda a, ev: events.append((a.key, ev)))

    alarms.evaluate("shelf-1", 1, [value(ps, "psu2_status", ["present", "on", "ov", "ot_warning"])])
    assert sorted(a.key for a in alarms.active()) == ["psu2_status.ot_warning", "psu2_status.ov"]
    ov = next(a for a in alarms.list() if a.key == "psu2_status.ov")
    assert (ov.severity, ov.latched, ov.kind, ov.device) == ("critical", True, "flag", 1)

    # the same poll again raises nothing new
    alarms.evaluate("shelf-1", 1, [value(ps, "psu2_status", ["present", "on", "ov", "ot_warning"])])
    assert len(alarms.history()) == 2

    clock.t = 1010.0
    alarms.evaluate("shelf-1", 1, [value(ps, "psu2_status", ["present", "on"])])
    assert alarms.active() == []
    (still,) = alarms.list()  # the latched fault stays open until acknowledged
    assert still.key == "psu2_status.ov" and still.state == "latched" and still.cleared_at == 1010.0

    clock.t = 1020.0
    acked = alarms.ack(still.id)
    assert acked.acked_at == 1020.0 and alarms.list() == []
    assert events == [("psu2_status.ov", "raised"), ("psu2_status.ot_warning", "raised"),
                      ("psu2_status.ov", "cleared"), ("psu2_status.ot_warning", "cleared"),
                      ("psu2_status.ov", "acked")]
    with pytest.raises(KeyError):
        alarms.ack(999)


def test_ack_before_clear_lets_the_alarm_close_on_clear(store: Store, cdu: Any) -> None:
    alarms = AlarmManager(store)
    alarms.evaluate("cdu-1", 3, [value(cdu, "leak_zones", ["rack_a"])])
    (leak,) = alarms.list()
    alarms.ack(leak.id)
    assert alarms.list() == [leak] and leak.active  # acked but the leak is still there
    alarms.evaluate("cdu-1", 3, [value(cdu, "leak_zones", [])])
    assert alarms.list() == []


def test_threshold_rule_with_hysteresis_does_not_flap(store: Store, cdu: Any) -> None:
    alarms = AlarmManager(store, [HOT])
    trace = []
    for t in [44.0, 45.5, 44.9, 43.5, 45.2, 42.9, 46.0]:
        alarms.evaluate("cdu-1", 3, [value(cdu, "t_supply", t)])
        trace.append(bool(alarms.active()))
    assert trace == [False, True, True, True, True, False, True]
    assert len(alarms.history()) == 2
    a = alarms.active()[0]
    assert a.kind == "threshold" and a.message.startswith("t_supply = 46.0°C > 45.0")


def test_rule_bound_to_one_device_and_latched(store: Store, cdu: Any) -> None:
    alarms = AlarmManager(store, [LOW])
    alarms.evaluate("cdu-2", 4, [value(cdu, "level", 10.0)])
    assert alarms.list() == []
    alarms.evaluate("cdu-1", 3, [value(cdu, "level", 20.0)])  # <= includes the limit
    alarms.evaluate("cdu-1", 3, [value(cdu, "level", 50.0)])
    (a,) = alarms.list()
    assert a.state == "latched" and a.device_name == "cdu-1"


def test_dormant_device_is_an_alarm(store: Store) -> None:
    alarms = AlarmManager(store)
    alarms.device_state("shelf-2", 2, "dormant", ts=5.0)
    (a,) = alarms.active()
    assert (a.kind, a.severity, a.key, a.raised_at) == ("comm", "critical", "comm.dormant", 5.0)
    alarms.device_state("shelf-2", 2, "online", ts=9.0)
    assert alarms.list() == [] and alarms.history()[0].cleared_at == 9.0


def test_open_alarms_survive_a_restart(tmp_path: Path, ps: Any) -> None:
    s = Store(tmp_path / "p.db")
    alarms = AlarmManager(s)
    alarms.evaluate("shelf-1", 1, [value(ps, "psu1_status", ["oc"])])
    alarms.evaluate("shelf-1", 1, [value(ps, "psu1_status", [])])  # cleared, latched, unacked
    alarms.device_state("shelf-1", 1, "dormant")
    s.close()

    s = Store(tmp_path / "p.db")
    again = AlarmManager(s)
    assert sorted(a.state for a in again.list()) == ["active", "latched"]
    again.device_state("shelf-1", 1, "dormant")  # still active: no duplicate row
    assert len(again.history()) == 2
    oc = next(a for a in again.list() if a.key == "psu1_status.oc")
    again.ack(oc.id)
    assert [a.key for a in again.list()] == ["comm.dormant"]
    s.close()


def test_reraise_after_clear_is_a_new_occurrence(store: Store, ps: Any) -> None:
    alarms = AlarmManager(store)
    for bits in (["ot"], [], ["ot"]):
        alarms.evaluate("shelf-1", 1, [value(ps, "psu3_status", bits)])
    hist = alarms.history()
    assert len(hist) == 2 and hist[0].active and not hist[1].active
    assert [a.id for a in alarms.list()] == [hist[0].id]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(30.0, 60.0, allow_nan=False), min_size=1, max_size=40))
def test_threshold_state_matches_a_reference_model(temps: list[float]) -> None:
    s = Store(":memory:")
    try:
        alarms = AlarmManager(s, [HOT])
        m = CDU
        on = False
        for t in temps:
            v = value(m, "t_supply", round(t, 2))
            x = v.value
            on = True if x > 45.0 else (False if x <= 43.0 else on)
            alarms.evaluate("c", 3, [v])
            assert bool(alarms.active()) == on
    finally:
        s.close()
