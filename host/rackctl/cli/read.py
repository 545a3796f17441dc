"""``rackctl read``: read registers by name or address and print them decoded."""

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
    load_map,
    open_link,
    read_values,
    resolve,
    run,
    stdout_console,
)


async def read_registers(
    bus: BusOptions, unit: int, names: tuple[str, ...], map_name: str | None
) -> list:
    async with open_link(bus) as link:
        if map_name:
            regmap = load_map(map_name)
        else:
            _, regmap = await identify(link, unit)
        if names:
            regs = [resolve(regmap, n) for n in names]
        else:  # everything the host polls: telemetry blocks
            regs = [r for r in regmap.registers if r.table == "input" and r.type != "bytes"]
        return await read_values(link, unit, regmap, regs)


@click.command()
@bus_options
@click.option("--unit", "-u", type=click.IntRange(1, 247), required=True, help="Unit id.")
@click.option(
    "--map",
    "map_name",
    type=click.Choice(["common", "power_shelf", "cdu"]),
    help="Register map (default: read the board's identity to choose).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.argument("registers", nargs=-1)
@cli_errors
def command(
    bus: BusOptions, unit: int, map_name: str | None, as_json: bool, registers: tuple[str, ...]
) -> None:
    """Read REGISTERS (names, or addresses like ir:100, hr:0x10) and print them decoded.

    With no REGISTERS, reads every input register of the board. Example:

        rackctl read --port /dev/ttyUSB0 -u 1 dc_v psu1_out_v bbu_soc
    """
    values = run(read_registers(bus, unit, registers, map_name))
    if as_json:
        body = {v.name: {"value": json_value(v.value), "unit": v.unit, "raw": json_value(v.raw)} for v in values}
        click.echo(json.dumps(body, indent=2))
        return
    table = Table(title=f"unit {unit}")
    table.add_column("register")
    table.add_column("value", justify="right")
    table.add_column("raw", justify="right")
    table.add_column("address")
    for v in values:
        r = v.register
        table.add_row(r.name, shown_value(v), shown_raw(v), f"{r.table}:{r.address}")
    stdout_console().print(table)


def shown_value(v: Any) -> str:
    """The decoded value as an operator reads it (fw_version 0x0102 is "1.2")."""
    if v.register.name.endswith("fw_version") and isinstance(v.value, int):
        return fw_text(v.value)
    return format_value(v.value, v.unit, v.register.digits)


def shown_raw(v: Any) -> str:
    """Raw words, except for text: a string's hex dump only widens the table."""
    if v.register.type in ("string", "bytes"):
        return ""
    raw = json_value(v.raw)
    if isinstance(raw, int) and v.register.type in ("flags16", "enum"):
        return f"0x{raw:04x}" if v.register.type == "flags16" else str(raw)
    return format_value(raw)
