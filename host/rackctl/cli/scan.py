"""``rackctl scan``: find the boards on a bus by reading each unit's identity block."""

from __future__ import annotations

import logging
from typing import Any

import click
from rich.table import Table

from rackctl.cli.common import (
    EXIT_TIMEOUT,
    BusOptions,
    CliError,
    IdList,
    bus_options,
    cli_errors,
    fw_text,
    open_link,
    run,
    stdout_console,
)

log = logging.getLogger(__name__)


async def scan_bus(bus: BusOptions, ids: list[int]) -> list[dict[str, Any]]:
    """Identity of every unit that answers (the daemon's discovery, rackctl.scheduler.scan)."""
    from rackctl.scheduler import scan

    async with open_link(bus) as link:
        results = await scan(link, ids)
    found = []
    for res in results:
        ident = res.identity
        found.append(
            {
                "id": res.unit,
                "board": res.map_name or res.board_type or "?",
                "vendor": ident.get("vendor", ""),
                "model": ident.get("model", ""),
                "serial": ident.get("serial", ""),
                "fw": fw_text(ident.get("fw_version", "")),
                "hw": ident.get("hw_rev", ""),
                "note": ident.get("error", ""),
            }
        )
    return found


@click.command()
@bus_options
@click.option(
    "--ids", type=IdList(), default="1-32", show_default=True, help="Unit ids to probe, e.g. 1-10,20."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@cli_errors
def command(bus: BusOptions, ids: list[int], as_json: bool) -> None:
    """Probe unit ids and list the boards that answer.

    Uses a short timeout per id (--timeout, default 0.5 s) and no retries, so a
    full 1-247 scan of an empty bus takes about two minutes; narrow it with --ids.
    """
    bus = BusOptions(bus.port, bus.baud, bus.parity, bus.timeout, 0)
    found = run(scan_bus(bus, ids))
    if as_json:
        import json

        click.echo(json.dumps(found, indent=2))
        return
    if not found:
        raise CliError(
            f"no board answered on {bus.port} (ids {ids[0]}..{ids[-1]}) — check wiring, "
            "--baud and --parity (a pty needs --parity N)",
            EXIT_TIMEOUT,
        )
    table = Table(title=f"{bus.port}: {len(found)} board(s)")
    for col in ("id", "board", "vendor", "model", "serial", "fw", "hw", "note"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for row in found:
        table.add_row(*(str(row.get(c, "")) for c in ("id", "board", "vendor", "model", "serial", "fw", "hw", "note")))
    stdout_console().print(table)
