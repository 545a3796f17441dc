"""``rackctl history``: stored samples of one register, as a table, CSV or JSON.

Reads the daemon's SQLite file directly (WAL lets it do so while the daemon
writes). With no REGISTER it lists what is recorded for DEVICE; with no DEVICE,
the devices.
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from rackctl.cli.common import (
    check_range,
    cli_errors,
    db_option,
    format_value,
    iso,
    open_store,
    stdout_console,
    store_device,
    store_register,
    time_range_options,
)


def rows_to_csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def history_rows(rows: list[tuple[Any, ...]]) -> tuple[list[str], list[list[Any]]]:
    """Header and rows for raw ``(ts, value)`` or bucketed ``(ts, avg, min, max)`` samples."""
    if rows and len(rows[0]) == 4:
        return ["time", "ts", "avg", "min", "max"], [[iso(r[0]), round(r[0], 3), r[1], r[2], r[3]] for r in rows]
    return ["time", "ts", "value"], [[iso(r[0]), round(r[0], 3), r[1]] for r in rows]


@click.command()
@db_option
@click.argument("device", required=False)
@click.argument("register", required=False)
@time_range_options
@click.option(
    "--resolution",
    type=click.FloatRange(min=0),
    help="Bucket seconds (avg/min/max); 0 = raw samples; default: automatic.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
)
@click.option("-o", "--output", type=click.File("w"), default="-", help="Write here (default stdout).")
@cli_errors
def command(
    db_path: str,
    device: str | None,
    register: str | None,
    t_from: float,
    t_to: float,
    resolution: float | None,
    fmt: str,
    output: Any,
) -> None:
    """Show the stored history of REGISTER on DEVICE (name or unit id)."""
    store = open_store(db_path)
    try:
        if device is None:
            listing = [[n, u, m] for n, u, m in store.devices()]
            _emit(["device", "id", "map"], listing, fmt, output, "devices")
            return
        name = store_device(store, device)
        if register is None:
            _emit(["register", "unit"], [list(r) for r in store.registers(name)], fmt, output, name)
            return
        store_register(store, name, register)
        check_range(t_from, t_to)
        rows = store.history(name, register, t_from, t_to, resolution)
    finally:
        store.close()
    header, body = history_rows(rows)
    _emit(header, body, fmt, output, f"{name} {register}")


def _cell(v: Any) -> str:
    """Table text; unix seconds stay whole numbers (``%g`` would print 1.79562e+09)."""
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) >= 1e6:
        return f"{v:.3f}"
    return format_value(v)


def _emit(header: list[str], rows: list[list[Any]], fmt: str, output: Any, title: str) -> None:
    if fmt == "csv":
        output.write(rows_to_csv(header, rows))
    elif fmt == "json":
        output.write(json.dumps([dict(zip(header, r, strict=True)) for r in rows], indent=1) + "\n")
    else:
        table = Table(title=f"{title} ({len(rows)} rows)")
        for col in header:
            table.add_column(col, justify="left" if col in ("time", "device", "register", "map", "unit") else "right")
        for r in rows:
            table.add_row(*(_cell(v) for v in r))
        console = stdout_console() if output.name == "<stdout>" else Console(file=output, width=120)
        console.print(table)
