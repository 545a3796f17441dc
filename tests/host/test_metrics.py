"""/metrics: families, units, labels, and the Prometheus naming rules.

``promtool check metrics`` runs too when a promtool binary is available (PATH or
$PROMTOOL; the Debian ``prometheus`` package ships one).
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from http_fakes import FakeAlarm, FakeDaemon
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from rackctl.metrics import UNIT_FAMILIES, RackMetrics, unit_family

pytestmark = pytest.mark.timeout(30)


def scrape(daemon: FakeDaemon) -> tuple[str, dict]:
    m = RackMetrics(daemon)
    m.observe_poll(0.03)
    m.observe_poll(0.2)
    text = m.render().decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict, family: str, **labels: str) -> float:
    hits = [
        s.value
        for s in families[family].samples
        if all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(hits) == 1, (family, labels, hits)
    return hits[0]


def test_telemetry_one_family_per_base_unit() -> None:
    _, fams = scrape(FakeDaemon())
    assert sample(fams, "rack_register_volts", device="1", board="power_shelf", register="dc_bus_v") == 48.25
    assert sample(fams, "rack_register_amperes", device="1", register="dc_bus_a") == 120.5
    assert sample(fams, "rack_register_celsius", device="1", register="psu1_temp") == 41.5
    assert sample(fams, "rack_register_ratio", device="1", register="fan_speed") == pytest.approx(0.55)
    assert sample(fams, "rack_register_rpm", device="2", board="cdu", register="pump1_rpm") == 3000
    assert sample(fams, "rack_register_pascals", device="2", register="supply_pressure") == 250000
    assert sample(fams, "rack_register_cubic_meters_per_second", device="2", register="flow") == pytest.approx(0.002)
    assert sample(fams, "rack_register_value", device="2", register="pump_enable") == 1.0
    # strings are not numbers: no series for the model register anywhere
    for fam in fams.values():
        assert all(s.labels.get("register") != "model" for s in fam.samples)
    assert fams["rack_register_volts"].type == "gauge"


def test_counters_device_state_and_alarms() -> None:
    _, fams = scrape(FakeDaemon())
    assert fams["rack_bus_timeouts"].type == "counter"
    assert sample(fams, "rack_bus_timeouts", device="2", board="cdu") == 7
    assert sample(fams, "rack_bus_crc_errors", device="1") == 2
    assert sample(fams, "rack_bus_requests", device="1") == 100
    assert sample(fams, "rack_bus_exceptions", device="2") == 3
    assert sample(fams, "rack_device_up", device="1") == 1
    assert sample(fams, "rack_device_up", device="2") == 0
    assert sample(fams, "rack_device_info", device="2", model="CDU-1", serial="B7") == 1
    assert sample(fams, "rack_alarm_active", device="1", alarm="over_temperature", severity="critical") == 1
    # two instances of low_flow (one cleared, one raised) -> one series, raised
    assert sample(fams, "rack_alarm_active", device="2", alarm="low_flow") == 1


def test_cleared_alarm_reports_zero() -> None:
    d = FakeDaemon()
    d.alarms._alarms[:] = [FakeAlarm(5, 1, "ac_loss", "warning", False)]
    _, fams = scrape(d)
    assert sample(fams, "rack_alarm_active", device="1", alarm="ac_loss") == 0


def test_poll_duration_histogram() -> None:
    _, fams = scrape(FakeDaemon())
    fam = fams["rack_poll_duration_seconds"]
    assert fam.type == "histogram"
    count = [s for s in fam.samples if s.name == "rack_poll_duration_seconds_count"]
    assert count[0].value == 2
    le_005 = [s for s in fam.samples if s.name.endswith("_bucket") and s.labels["le"] == "0.05"]
    assert le_005[0].value == 1


def test_naming_rules() -> None:
    text, fams = scrape(FakeDaemon())
    series = set()
    for fam in fams.values():
        assert fam.name.startswith("rack_")
        assert fam.documentation, fam.name
        assert f"# HELP {fam.name}" in text
        assert f"# TYPE {fam.name}" in text
        if fam.type == "counter":
            assert all(s.name.endswith("_total") for s in fam.samples)
        else:
            assert not fam.name.endswith("_total")
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in series, key
            series.add(key)


def test_device_gone_series_gone() -> None:
    d = FakeDaemon()
    del d.devices[2], d.latest[2], d.counters[2]
    d.alarms._alarms[:] = []
    _, fams = scrape(d)
    for fam in fams.values():
        assert all(s.labels.get("device") != "2" for s in fam.samples)


@given(st.sampled_from(sorted(UNIT_FAMILIES)) | st.text(max_size=12))
def test_unit_family_is_a_valid_suffix(unit: str) -> None:
    suffix, factor = unit_family(unit)
    assert suffix and suffix.replace("_", "a").isalnum() and suffix.isascii()
    assert not suffix.startswith("_") and not suffix.endswith("_")
    assert factor > 0


def _promtool() -> str | None:
    return os.environ.get("PROMTOOL") or shutil.which("promtool")


@pytest.mark.skipif(_promtool() is None, reason="promtool not installed (apt install prometheus)")
def test_promtool_check_metrics() -> None:
    text, _ = scrape(FakeDaemon())
    proc = subprocess.run(
        [_promtool(), "check", "metrics"], input=text.encode(), capture_output=True, timeout=20
    )
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    assert proc.stdout.decode().strip() == "" and proc.stderr.decode().strip() == ""


def test_grafana_dashboard_uses_exposed_metrics() -> None:
    import json
    import re
    from pathlib import Path

    dash = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    text, fams = scrape(FakeDaemon())
    exposed = {s.name for f in fams.values() for s in f.samples} | set(fams)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert exprs
    used = {m for e in exprs for m in re.findall(r"\brack_[a-z_]+", e)}
    assert used, exprs
    assert used <= exposed, sorted(used - exposed)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
