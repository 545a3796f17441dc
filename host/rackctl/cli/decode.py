"""``rackctl decode``: explain one captured Modbus RTU frame.

Useful with a bus sniffer or a log line: paste the hex, get the function, the
addresses and — with ``--map`` (and ``--start`` for read responses, whose frame
does not carry the address) — the register names, scaled values and units.
"""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from rackproto.decode import Decoded, Interpretation, decode_frame, parse_hex
from rackproto.errors import CrcError, FrameError, MapError
from rackproto.regmap import RegisterMap, load


def _load_map(name: str | None) -> RegisterMap | None:
    if name is None:
        return None
    try:
        return load(name)
    except MapError as exc:
        raise click.BadParameter(str(exc), param_hint="--map") from None


def _format_value(value: object, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, list | tuple | set):
        return ", ".join(str(v) for v in value) or "-"
    if isinstance(value, dict):
        on = [k for k, v in value.items() if v]
        return ", ".join(on) or "-"
    return str(value)


def _register_table(it: Interpretation) -> Table:
    table = Table(title=f"{it.register_table} registers", title_justify="left")
    table.add_column("address", justify="right")
    table.add_column("register")
    table.add_column("raw", justify="right")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for v in it.registers:
        raw = v.raw if not isinstance(v.raw, int) else f"{v.raw} (0x{v.raw & 0xFFFFFFFF:X})"
        table.add_row(str(v.register.address), v.register.name, str(raw), _format_value(v.value, v.register.digits), v.unit)
    return table


def _print(console: Console, decoded: Decoded, start: int | None, map_name: str | None) -> None:
    its = decoded.interpretations
    if decoded.same_both_ways:
        console.print(f"{its[0].summary}")
        console.print("  (a request and its echo response are the same bytes for this function)")
        its = its[:1]
    else:
        for it in its:
            console.print(f"As a {it.role}: {it.summary}")
        for role, why in decoded.rejected.items():
            console.print(f"  [dim]not a valid {role}: {why}[/dim]")
    for it in its:
        for label, text in it.details:
            console.print(f"  {label}: {text}")
        if it.registers:
            console.print(_register_table(it))
        elif map_name and start is None and it.role == "response" and it.adu.pdu.function in (1, 2, 3, 4):
            console.print("  [dim]pass --start ADDR (the request's address) to name the registers[/dim]")


@click.command(name="decode")
@click.argument("hex_bytes", metavar="HEX", nargs=-1, required=True)
@click.option("--map", "map_name", help="register map to name registers (power_shelf, cdu, common)")
@click.option(
    "--start",
    type=click.IntRange(0, 0xFFFF),
    help="start address of the request a read response answers",
)
@click.option("--json", "as_json", is_flag=True, help="print machine-readable JSON")
def command(hex_bytes: tuple[str, ...], map_name: str | None, start: int | None, as_json: bool) -> None:
    """Decode one Modbus RTU frame given as HEX (spaces allowed), e.g. 01030000000AC5CD.

    The frame is tried as a request and as a response; every valid reading is shown.
    """
    regmap = _load_map(map_name)
    try:
        raw = parse_hex(" ".join(hex_bytes))
        decoded = decode_frame(raw, regmap, start)
    except CrcError as exc:
        raise click.BadParameter(f"bad CRC — {exc}", param_hint="HEX") from None
    except FrameError as exc:
        raise click.BadParameter(str(exc), param_hint="HEX") from None
    if as_json:
        click.echo(json.dumps(decoded.to_dict(), indent=2, default=str))
        return
    _print(Console(highlight=False, soft_wrap=True), decoded, start, map_name)
