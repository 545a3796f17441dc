"""The live view (rackctl.monitor_view): what is shown, what is highlighted, the summary line."""

from __future__ import annotations

from rich.console import Console

from rackctl.daemon_view import AlarmView, DeviceView, Sample
from rackctl.monitor_view import (
    SEVERITY_STYLE,
    alarming_registers,
    device_panel,
    register_cells,
    render,
    summary_line,
)

NOW = 1000.0
DEVS = [DeviceView(1, "power_shelf", "shelf-1", True), DeviceView(2, "cdu", "cdu-1", False)]
LATEST = {
    1: {
        "dc_v": Sample(51.25, "V", NOW),
        "shelf_status": Sample(["ac_lost"], "", NOW),
        "psu1_status": Sample(["ov_fault"], "", NOW),
        "alarms": Sample(["high_temp"], "", NOW),
        "sensor_faults": Sample(["t_supply"], "", NOW),
        "leak_zones": Sample([], "", NOW),
        "serial": Sample("PS1", "", NOW),
        "event1_kind": Sample("reset", "", NOW),
    },
    2: {"flow": Sample(80.0, "L/min", NOW - 60)},
}
ALARMS = [
    AlarmView(7, 1, "dc high", "rule:dc high", "critical", True, False, NOW, None, "dc_v 55 > 53"),
    AlarmView(8, 1, "ov", "psu1_status.ov_fault", "warning", True, True, NOW, None, ""),
    AlarmView(9, 2, "old", "flow.low", "warning", False, True, NOW - 99, NOW - 50, ""),
]


def text_of(renderable: object) -> str:
    console = Console(width=200, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def test_render_shows_devices_values_and_alarms() -> None:
    out = text_of(render(DEVS, LATEST, ALARMS, now=NOW, footer="press Ctrl-C"))
    assert "shelf-1" in out and "[power_shelf]" in out and "OFFLINE" in out
    assert "51.25" in out and "dc_v" in out
    assert "serial" not in out.split("alarms")[0] and "event1_kind" not in out  # bookkeeping hidden
    assert "dc high" in out and "press Ctrl-C" in out


def test_alarm_keys_map_to_registers() -> None:
    assert alarming_registers(ALARMS) == {(1, "dc high"): "critical", (1, "psu1_status"): "warning"}


def test_highlighting() -> None:
    hot = alarming_registers(ALARMS)
    styles = {k: v[1] for k, v in register_cells(DEVS[0], LATEST[1], hot, NOW).items()}
    assert styles["psu1_status"] == SEVERITY_STYLE["warning"]  # carried by an active alarm
    # flag bits set in fault/alarm registers are highlighted even before an alarm exists
    assert styles["alarms"] == SEVERITY_STYLE["warning"]
    assert styles["sensor_faults"] == SEVERITY_STYLE["critical"]
    assert styles["leak_zones"] == ""  # no bits set
    assert styles["shelf_status"] == ""  # plain status flags are not alarms
    assert styles["dc_v"] == ""
    stale = register_cells(DEVS[1], LATEST[2], hot, NOW)
    assert stale["flow"] == ("80 L/min", "dim")


def test_panel_lays_out_repeated_blocks_as_a_matrix() -> None:
    samples = {
        "dc_v": Sample(51.25, "V", NOW),
        **{f"psu{i}_out_v": Sample(50.0 + i, "V", NOW) for i in (1, 2, 3)},
        **{f"psu{i}_temp": Sample(30 + i, "°C", NOW) for i in (1, 2, 3)},
    }
    out = text_of(device_panel(DEVS[0], samples, {}, NOW))
    lines = [line.strip("│ ") for line in out.splitlines()]
    header = next(line for line in lines if line.startswith("psu "))
    assert header.split() == ["psu", "psu1", "psu2", "psu3"]
    assert next(line for line in lines if line.startswith("out_v")).split() == [
        "out_v", "51", "V", "52", "V", "53", "V"
    ]
    assert any(line.split() == ["dc_v", "51.25", "V"] for line in lines)


def test_summary_line() -> None:
    line = summary_line(DEVS, LATEST, ALARMS, {1: {"requests": 10, "timeouts": 2}, 2: {"crc_errors": 1}})
    assert line.startswith("1/2 devices online; 9 values; 10 requests, 3 errors; 2 active alarm(s)")
    assert summary_line(DEVS, {}, []).endswith("no active alarms")
