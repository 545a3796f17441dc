"""``rackctl info``: identity, status and settings of one board."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.table import Table

from rackctl.cli.common import (
    BusOptions,
    bus_options,
    cli_errors,
    format_value,
    fw_text,
    identify,
    json_value,
    open_link,
    read_values,
    run,
    stdout_console,
)


async def board_info(bus: BusOptions, unit: int) -> tuple[dict[str, Any], Any, list[Any]]:
    """(identity, map, values of the status block and every holding setting)."""
    async with open_link(bus) as link:
        ident, regmap = await identify(link, unit)
        wanted = [
            r
            for r in regmap.registers
            if (r.block == "status" or r.table == "holding")
            and r.type not in ("bytes",)
            and not r.name.startswith("update_")
        ]
        values = await read_values(link, unit, regmap, wanted, skip_missing=True)
        missing = [r.name for r in wanted if r.name not in {v.name for v in values}]
        if missing:
            ident["not on this board"] = ", ".join(missing) + " (firmware older than the host's map?)"
    return ident, regmap, values


@click.command()
@bus_options
@click.option("--unit", "-u", type=click.IntRange(1, 247), required=True, help="Unit id.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@cli_errors
def command(bus: BusOptions, unit: int, as_json: bool) -> None:
    """Show who a board is, its health counters and its settings."""
    ident, regmap, values = run(board_info(bus, unit))
    if as_json:
        body = {
            "id": unit,
            "board": regmap.name,
            "identity": {k: json_value(v) for k, v in ident.items()},
            "registers": {v.name: {"value": json_value(v.value), "unit": v.unit} for v in values},
        }
        click.echo(json.dumps(body, indent=2))
        return
    console = stdout_console()
    head = Table(title=f"unit {unit}: {regmap.name}", show_header=False)
    head.add_column("key", style="bold")
    head.add_column("value")
    for key, val in ident.items():
        head.add_row(key, fw_text(val) if key == "fw_version" else str(val))
    console.print(head)
    settings = Table(title="status and settings")
    for col in ("register", "value", "access", "writable range"):
        settings.add_column(col)
    for v in values:
        r = v.register
        settings.add_row(r.name, format_value(v.value, v.unit, r.digits), r.access, allowed(r))
    console.print(settings)


def allowed(r: Any) -> str:
    """What a write may set, in the operator's terms; empty for read-only registers
    (the full u32 span of a counter tells nobody anything)."""
    if r.access == "ro" or r.table not in ("holding", "coil"):
        return ""
    if r.type == "enum" and r.enum:
        return "|".join(r.enum)
    if r.type == "flags16" and r.bits:
        return "flags: " + ",".join(r.bits)
    if r.type == "bool" or r.table == "coil":
        return "on|off"
    if r.min is None and r.max is None:
        return ""
    lo = format_value(r.min, "", r.digits) if r.min is not None else ""
    hi = format_value(r.max, "", r.digits) if r.max is not None else ""
    return f"{lo}..{hi} {r.unit}".rstrip()
