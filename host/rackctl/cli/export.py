"""``rackctl export``: every stored sample of a time range as CSV or JSON.

Long format — one row per ``(time, device, register, unit, value)`` — because
it loads straight into pandas, a spreadsheet pivot or another database without
knowing the register set in advance.
"""

from __future__ import annotations

import csv
import json
from typing import Any

import click

from rackctl.cli.common import (
    check_range,
    cli_errors,
    db_option,
    iso,
    open_store,
    store_device,
    time_range_options,
)


def export_rows(
    store: Any,
    devices: list[str],
    registers: set[str] | None,
    t_from: float,
    t_to: float,
    resolution: float | None,
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for dev in devices:
        for reg, unit in store.registers(dev):
            if registers is not None and reg not in registers:
                continue
            for row in store.history(dev, reg, t_from, t_to, resolution):
                out.append(
                    {"time": iso(row[0]), "ts": row[0], "device": dev, "register": reg, "unit": unit, "value": row[1]}
                )
    out.sort(key=lambda r: (r["ts"], r["device"], r["register"]))
    return out


@click.command()
@db_option
@time_range_options
@click.option("--device", "-d", "devices", multiple=True, help="Device name or id (repeatable; default all).")
@click.option("--register", "-r", "registers", multiple=True, help="Register name (repeatable; default all).")
@click.option("--resolution", type=click.FloatRange(min=0), help="Bucket seconds (averages); 0 = raw.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True)
@click.option("-o", "--output", type=click.File("w"), default="-", help="Write here (default stdout).")
@cli_errors
def command(
    db_path: str,
    t_from: float,
    t_to: float,
    devices: tuple[str, ...],
    registers: tuple[str, ...],
    resolution: float | None,
    fmt: str,
    output: Any,
) -> None:
    """Export the history of a time range (all devices and registers unless narrowed)."""
    check_range(t_from, t_to)
    store = open_store(db_path)
    try:
        names = [store_device(store, d) for d in devices] or [n for n, _u, _m in store.devices()]
        rows = export_rows(store, names, set(registers) or None, t_from, t_to, resolution)
    finally:
        store.close()
    if fmt == "json":
        output.write(json.dumps(rows, indent=1) + "\n")
    else:
        writer = csv.DictWriter(
            output, ["time", "ts", "device", "register", "unit", "value"], lineterminator="\n"
        )
        writer.writeheader()
        writer.writerows(rows)
    if output.name != "<stdout>":
        click.echo(f"{len(rows)} rows -> {output.name}", err=True)
