"""The compact rack overview that ``rackctl run`` shows in a terminal."""

from __future__ import annotations

from rich.console import Console

from rackctl.daemon_view import AlarmView, DeviceView, Sample
from rackctl.monitor_view import rack_overview


def _text(renderable) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_one_row_per_device_with_headline_values_and_units():
    devices = [
        DeviceView(1, "power_shelf", "shelf-1", True, state="online"),
        DeviceView(3, "cdu", "cdu-1", False, state="dormant"),
    ]
    latest = {
        1: {"dc_v": Sample(50.75, "V", 0.0), "bbu_mode": Sample("idle", "", 0.0),
            "shelf_status": Sample(["redundancy_ok"], "", 0.0)},
        3: {"t_supply": Sample(30.12, "°C", 0.0), "leak_zones": Sample(["cdu_tray"], "", 0.0)},
    }
    out = _text(rack_overview(devices, latest))
    shelf_row = next(line for line in out.splitlines() if "shelf-1" in line)
    assert "50.75 V" in shelf_row and "idle" in shelf_row and "redundancy_ok" in shelf_row
    cdu_row = next(line for line in out.splitlines() if "cdu-1" in line)
    assert "dormant" in cdu_row and "30.12 °C" in cdu_row and "cdu_tray" in cdu_row
    # registers that are not headline values stay out of the overview
    assert "event1_seq" not in out


def test_active_alarms_are_listed_under_the_tables():
    devices = [DeviceView(1, "power_shelf", "shelf-1", True, state="online")]
    alarm = AlarmView(7, 1, "PSU 3 over-voltage", "psu3_status.ov", "critical", True, False,
                      1.0, None, "psu3_status: ov set")
    out = _text(rack_overview(devices, {1: {}}, [alarm], footer="Ctrl-C stops"))
    assert "PSU 3 over-voltage" in out and "critical" in out
    assert out.rstrip().endswith("Ctrl-C stops")


def test_empty_rack_says_so():
    assert "no devices yet" in _text(rack_overview([], {}))
