"""Rich rendering of live rack state, shared by ``rackctl monitor`` and ``rackctl run``.

Pure functions from state to renderables: the callers own the polling and the
``rich.live.Live`` loop, and tests can render to a string without a terminal.
Anything alarming is highlighted: an offline device, a register that carries an
active alarm, a fault/alarm flag register with bits set.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from rich import box
from rich.columns import Columns
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from rackctl.daemon_view import AlarmView, DeviceView, Sample

# registers that are bookkeeping, not telemetry: left out of the live view
HIDDEN_PREFIXES = ("event", "update_", "unlock_")
HIDDEN = {"vendor", "model", "serial", "hw_rev", "fw_version", "board_type", "map_version",
          "event_select", "command"}  # fmt: skip
ALARM_WORDS = ("fault", "alarm", "warn", "trip", "leak")
SEVERITY_STYLE = {"critical": "bold white on red", "warning": "bold yellow", "info": "cyan"}


def shown(name: str, sample: Sample) -> bool:
    if name in HIDDEN or name.startswith(HIDDEN_PREFIXES):
        return False
    return not isinstance(sample.value, bytes)


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:.3f}".rstrip("0").rstrip(".") if abs(value) < 1e6 else f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) or "-"
    return str(value)


def alarming_registers(alarms: Iterable[AlarmView]) -> dict[tuple[int, str], str]:
    """(device, register) -> severity for every active alarm keyed on a register."""
    out: dict[tuple[int, str], str] = {}
    for a in alarms:
        if a.active:
            reg = a.key.split(".", 1)[0].removeprefix("rule:")
            out[(a.device, reg)] = a.severity
    return out


def _flag_alarm(name: str, value: Any) -> bool:
    return isinstance(value, list | tuple) and bool(value) and any(w in name for w in ALARM_WORDS)


_REPEATED = re.compile(r"^([a-z]+)(\d+)_(.+)$")


def _style(dev: DeviceView, name: str, s: Sample, hot: Mapping[tuple[int, str], str],
           now: float, stale_after: float) -> str:
    severity = hot.get((dev.id, name))
    if severity is not None:
        return SEVERITY_STYLE.get(severity, "bold red")
    if _flag_alarm(name, s.value):
        return SEVERITY_STYLE["critical"] if "fault" in name else SEVERITY_STYLE["warning"]
    if now - s.ts > stale_after:
        return "dim"
    return ""


def register_cells(
    dev: DeviceView,
    samples: Mapping[str, Sample],
    hot: Mapping[tuple[int, str], str],
    now: float,
    stale_after: float = 10.0,
) -> dict[str, tuple[str, str]]:
    """register -> (formatted value with unit, style) for the telemetry worth showing."""
    telemetry = {r.name for r in dev.registers if r.table in ("input", "discrete")}
    cells: dict[str, tuple[str, str]] = {}
    for name, s in sorted(samples.items()):
        if not shown(name, s) or (telemetry and name not in telemetry):
            continue
        text = f"{_format(s.value)} {s.unit}".rstrip()
        cells[name] = (text, _style(dev, name, s, hot, now, stale_after))
    return cells


MAX_CELL = 14  # a matrix cell wider than this (a long flag list) is clipped with …
ROWS_PER_COLUMN = 10  # single registers fold into side-by-side columns past this


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _single_lines(body: Text, singles: list[tuple[str, tuple[str, str]]]) -> None:
    """``name value`` pairs folded into up to three columns, so a whole board fits a
    120x40 terminal instead of one long list."""
    if not singles:
        return
    ncols = min(3, -(-len(singles) // ROWS_PER_COLUMN))
    nrows = -(-len(singles) // ncols)
    cols = [singles[i * nrows:(i + 1) * nrows] for i in range(ncols)]
    limit = 24 if ncols > 1 else 80
    widths = [
        (max(len(n) for n, _ in col), min(limit, max(len(c[0]) for _, c in col))) for col in cols if col
    ]
    for row in range(nrows):
        for ci, col in enumerate(cols):
            if row >= len(col):
                continue
            name, (text, style) = col[row]
            wn, wv = widths[ci]
            if ci:
                body.append("   ")
            body.append(f"{name:<{wn}} ", style="bold")
            body.append(f"{_clip(text, wv):>{wv}}", style=style)
        body.append("\n")


def device_panel(
    dev: DeviceView,
    samples: Mapping[str, Sample],
    hot: Mapping[tuple[int, str], str],
    now: float,
    stale_after: float = 10.0,
) -> Panel:
    """One device: single registers as ``name value`` lines, repeated blocks (psu1..psu6,
    pump1..pump2) as one matrix; red/yellow for alarms, dim when stale.

    Laid out as one pre-formatted ``Text`` rather than nested rich tables: a full
    power shelf as tables took ~50 ms to render, far too much for a live view that
    shares the daemon's event loop; as text it is well under a millisecond.
    """
    cells = register_cells(dev, samples, hot, now, stale_after)
    singles: list[tuple[str, tuple[str, str]]] = []
    groups: dict[str, dict[str, dict[int, tuple[str, str]]]] = {}
    for name, cell in cells.items():
        m = _REPEATED.match(name)
        if m:
            groups.setdefault(m.group(1), {}).setdefault(m.group(3), {})[int(m.group(2))] = cell
        else:
            singles.append((name, cell))
    body = Text(no_wrap=True)
    _single_lines(body, singles)
    for prefix, members in groups.items():
        indexes = sorted({i for row in members.values() for i in row})
        wn = max(len(prefix), *(len(m) for m in members))
        wv = max(len(f"{prefix}{i}") for i in indexes)
        wv = min(MAX_CELL, max(wv, *(len(c[0]) for row in members.values() for c in row.values())))
        body.append(f"{prefix:<{wn}}" + "".join(f" {prefix + str(i):>{wv}}" for i in indexes) + "\n", style="bold underline")
        for member, row in members.items():
            body.append(f"{member:<{wn}}", style="bold")
            for i in indexes:
                text, style = row.get(i, ("", ""))
                body.append(" ")
                body.append(f"{_clip(text, wv):>{wv}}", style=style)
            body.append("\n")
    body.rstrip()
    state = Text("online", style="green") if dev.online else Text("OFFLINE", style="bold red")
    title = Text.assemble(f"{dev.id} {dev.name} ", (f"[{dev.board}] ", "cyan"), state)
    return Panel(body, title=title, border_style="green" if dev.online else "red", expand=False)


def alarm_table(
    alarms: Iterable[AlarmView], limit: int = 10, names: Mapping[int, str] | None = None
) -> Table:
    """Newest active alarms first; ``names`` (unit id -> device name) labels the device,
    since an operator thinks "cdu-1", not "3"."""
    table = Table(title="alarms", expand=False, title_justify="left")
    for col in ("id", "device", "alarm", "severity", "state", "raised", "message"):
        table.add_column(col, no_wrap=col != "message")
    rows = sorted(alarms, key=lambda a: (not a.active, -(a.raised_at or 0)))
    for a in rows[:limit]:
        state = "active" if a.active else "cleared"
        if a.acked:
            state += " acked"
        style = SEVERITY_STYLE.get(a.severity, "") if a.active else "dim"
        device = f"{names[a.device]} ({a.device})" if names and a.device in names else str(a.device)
        raised = time.strftime("%H:%M:%S", time.localtime(a.raised_at)) if a.raised_at else ""
        table.add_row(str(a.id), device, a.name, a.severity, state, raised, a.message, style=style)
    if len(rows) > limit:
        table.caption = f"{len(rows) - limit} more: rackctl alarms"
    return table


def render(
    devices: Iterable[DeviceView],
    latest: Mapping[int, Mapping[str, Sample]],
    alarms: Iterable[AlarmView] = (),
    now: float | None = None,
    footer: str = "",
) -> RenderableType:
    """The whole live view: device panels side by side, then the alarm table."""
    now = time.time() if now is None else now
    alarms = list(alarms)
    devices = list(devices)
    hot = alarming_registers(alarms)
    panels = [device_panel(d, latest.get(d.id, {}), hot, now) for d in devices]
    parts: list[RenderableType] = [Columns(panels) if panels else Text("no devices yet", style="dim")]
    if alarms:
        parts.append(alarm_table(alarms, names={d.id: d.name for d in devices}))
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)


# the readings an operator scans first, per board type (the rest: rackctl monitor)
HEADLINE: dict[str, tuple[str, ...]] = {
    "power_shelf": ("dc_v", "dc_i", "dc_p", "psus_on", "psus_present", "bbu_mode", "bbu_soc",
                    "shelf_status"),
    "cdu": ("mode", "t_supply", "t_return", "flow", "dp", "valve_pos", "lead_pump", "alarms",
            "leak_zones"),
}


def _cell(sample: Sample | None) -> str:
    if sample is None:
        return "-"
    text = _format(sample.value)
    return f"{text} {sample.unit}" if sample.unit and text != "-" else text


def rack_overview(
    devices: Iterable[DeviceView],
    latest: Mapping[int, Mapping[str, Sample]],
    alarms: Iterable[AlarmView] = (),
    footer: str = "",
) -> RenderableType:
    """A compact rack view: one table per board type, one row per device, key readings
    only, then the alarm table. Fits a normal terminal for a whole rack."""
    alarms = list(alarms)
    hot = alarming_registers(alarms)
    devices = list(devices)
    parts: list[RenderableType] = []
    for board, names in HEADLINE.items():
        rows = [d for d in devices if d.board == board]
        if not rows:
            continue
        # no vertical rules: 13 columns of a CDU then fit 120 characters unclipped
        table = Table(title=board, expand=False, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
        for col in ("id", "name", "state", *names):
            table.add_column(col, justify="right" if col in names[:5] else "left", no_wrap=True)
        for dev in rows:
            values = latest.get(dev.id, {})
            state = Text("online", style="green") if dev.online else Text(dev.state, style="bold red")
            cells: list[Any] = [str(dev.id), dev.name, state]
            for name in names:
                sample = values.get(name)
                style = ""
                if (dev.id, name) in hot:
                    style = SEVERITY_STYLE.get(hot[(dev.id, name)], "bold red")
                elif sample is not None and _flag_alarm(name, sample.value):
                    style = "bold red"
                cells.append(Text(_cell(sample), style=style))
            table.add_row(*cells)
        parts.append(table)
    others = [d for d in devices if d.board not in HEADLINE]
    if others:
        parts.append(Text("other devices: " + ", ".join(f"{d.id} {d.name}" for d in others)))
    if not devices:
        parts.append(Text("no devices yet", style="dim"))
    if alarms:
        parts.append(alarm_table(alarms, names={d.id: d.name for d in devices}))
    if footer:
        parts.append(Text(footer, style="dim"))
    return Group(*parts)


def summary_line(
    devices: Iterable[DeviceView],
    latest: Mapping[int, Mapping[str, Sample]],
    alarms: Iterable[AlarmView] = (),
    counters: Mapping[int, Mapping[str, int]] | None = None,
) -> str:
    """One line for logs and non-TTY output: devices up, values, active alarms, errors."""
    devices = list(devices)
    active = [a for a in alarms if a.active]
    up = sum(1 for d in devices if d.online)
    values = sum(len(latest.get(d.id, {})) for d in devices)
    parts = [f"{up}/{len(devices)} devices online", f"{values} values"]
    if counters:
        req = sum(c.get("requests", 0) for c in counters.values())
        err = sum(c.get(k, 0) for c in counters.values() for k in ("crc_errors", "timeouts", "exceptions"))
        parts.append(f"{req} requests, {err} errors")
    if active:
        names = ", ".join(f"{a.device}:{a.name}" for a in active[:5])
        more = f" +{len(active) - 5}" if len(active) > 5 else ""
        parts.append(f"{len(active)} active alarm(s): {names}{more}")
    else:
        parts.append("no active alarms")
    return "; ".join(parts)
