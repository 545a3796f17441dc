"""``rackctl monitor``: a live table of a bus (or some devices on it), straight from Modbus.

For use without the daemon — commissioning, a laptop on a shelf's RS-485 port.
Polls each device's telemetry (input registers and discrete bits) once per
``--interval``; fault and alarm flags with bits set are highlighted, a device
that stops answering turns red. Without a terminal it prints one summary line
per interval instead of redrawing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import click
from rich.live import Live

from rackctl.cli.common import (
    EXIT_TIMEOUT,
    BusOptions,
    CliError,
    IdList,
    bus_options,
    cli_errors,
    identify,
    open_link,
    read_values,
    stdout_console,
)
from rackctl.daemon_view import DeviceView, Sample
from rackctl.monitor_view import rack_overview, render, summary_line
from rackproto.errors import CrcError, DeviceTimeout, ModbusException


def telemetry(regmap: Any) -> list[Any]:
    """The registers worth watching: input/discrete telemetry, no identity or logs."""
    return [
        r
        for r in regmap.registers
        if r.table in ("input", "discrete")
        and r.block not in ("identity",)
        and not r.name.startswith(("event", "update_"))
        and r.type not in ("bytes", "string")
    ]


class BusPoller:
    """Identity once per device, then telemetry every cycle; tracks who answers."""

    def __init__(self, link: Any, ids: list[int]) -> None:
        self.link = link
        self.ids = ids
        self.maps: dict[int, Any] = {}
        self.names: dict[int, str] = {}
        self.online: dict[int, bool] = {}
        self.latest: dict[int, dict[str, Sample]] = {}
        self.errors = 0
        self.regs: dict[int, list[Any]] = {}

    def devices(self) -> list[DeviceView]:
        return [
            DeviceView(i, self.maps[i].name, self.names[i], self.online.get(i, False))
            for i in self.ids
            if i in self.maps
        ]

    async def cycle(self) -> None:
        for unit in self.ids:
            try:
                if unit not in self.maps:
                    ident, self.maps[unit] = await identify(self.link, unit)
                    self.names[unit] = str(ident.get("serial") or ident.get("model") or self.maps[unit].name)
                regmap = self.maps[unit]
                regs = self.regs.setdefault(unit, telemetry(regmap))
                values = await read_values(self.link, unit, regmap, regs, skip_missing=True)
                if len(values) < len(regs):  # older firmware: stop asking for what it lacks
                    have = {v.name for v in values}
                    self.regs[unit] = [r for r in regs if r.name in have]
            except (DeviceTimeout, TimeoutError, CrcError, ModbusException):
                self.errors += 1
                self.online[unit] = False
                continue
            now = time.time()
            self.latest[unit] = {v.name: Sample(v.value, v.unit, now) for v in values}
            self.online[unit] = True


DISCOVER_IDS = range(1, 33)


async def discover(link: Any) -> list[int]:
    """Unit ids that answer among 1..32 (the same probe as ``rackctl scan``)."""
    from rackctl.scheduler import scan

    found = [res.unit for res in await scan(link, list(DISCOVER_IDS))]
    if not found:
        raise CliError(
            "no board answered on ids 1-32 — check wiring, --baud and --parity "
            "(a pty needs --parity N), or name the ids with --ids",
            EXIT_TIMEOUT,
        )
    return found


def pick_view(view: str, ndevices: int) -> str:
    """``auto``: every register of one board, the compact rack table for several."""
    if view != "auto":
        return view
    return "detail" if ndevices == 1 else "rack"


async def monitor_loop(
    bus: BusOptions, ids: list[int] | None, interval: float, count: int | None, live: bool,
    view_mode: str = "auto",
) -> None:
    console = stdout_console()
    if ids is None:  # a short probe like `rackctl scan`: ~3 s for an empty 1-32
        probe = BusOptions(bus.port, bus.baud, bus.parity, min(bus.timeout, 0.1), 0)
        async with open_link(probe) as link:
            ids = await discover(link)
    async with open_link(bus) as link:
        poller = BusPoller(link, ids)
        done = 0
        mode = pick_view(view_mode, len(ids))

        def view() -> Any:
            footer = f"{bus.port} @ {bus.baud} {bus.parity} — every {interval:g} s — Ctrl-C to stop"
            if mode == "rack":
                return rack_overview(poller.devices(), poller.latest, footer=footer)
            return render(poller.devices(), poller.latest, footer=footer)

        if live and console.is_terminal:
            with Live(view(), console=console, auto_refresh=False, transient=False) as screen:
                while count is None or done < count:
                    started = time.monotonic()
                    await poller.cycle()
                    screen.update(view(), refresh=True)
                    done += 1
                    await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))
            return
        while count is None or done < count:
            started = time.monotonic()
            await poller.cycle()
            done += 1
            if live:
                click.echo(f"{time.strftime('%H:%M:%S')} {summary_line(poller.devices(), poller.latest)}")
            else:
                console.print(view())
            if count is None or done < count:
                await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))


@click.command()
@bus_options
@click.option("--ids", type=IdList(), help="Unit ids, e.g. 1-3,7 (default: the boards answering on 1-32).")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True, help="Seconds between cycles.")
@click.option("--once", is_flag=True, help="Poll once, print the table and exit.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many cycles.")
@click.option(
    "--view", "view_mode", type=click.Choice(["auto", "rack", "detail"]), default="auto", show_default=True,
    help="rack: one row per board, key readings; detail: every register; auto: detail for one board.",
)
@cli_errors
def command(
    bus: BusOptions, ids: list[int] | None, interval: float, once: bool, count: int | None, view_mode: str
) -> None:
    """Watch boards live, straight from Modbus (Ctrl-C stops).

    Faults and alarm flags are highlighted; a board that stops answering turns red.
    Example:

        rackctl monitor --port /dev/ttyUSB0 --ids 3 --view detail
    """
    try:
        asyncio.run(monitor_loop(bus, ids, interval, 1 if once else count, live=not once, view_mode=view_mode))
    except KeyboardInterrupt:
        pass
