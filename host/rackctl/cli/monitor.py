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
    BusOptions,
    IdList,
    bus_options,
    cli_errors,
    identify,
    open_link,
    read_values,
    stdout_console,
)
from rackctl.daemon_view import DeviceView, Sample
from rackctl.monitor_view import render, summary_line
from rackproto.errors import CrcError, DeviceTimeout, ModbusException


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
                    self.names[unit] = str(ident.get("model") or self.maps[unit].name)
                regmap = self.maps[unit]
                regs = [
                    r
                    for r in regmap.registers
                    if r.table in ("input", "discrete")
                    and r.block not in ("identity",)
                    and not r.name.startswith(("event", "update_"))
                    and r.type not in ("bytes", "string")
                ]
                values = await read_values(self.link, unit, regmap, regs)
            except (DeviceTimeout, TimeoutError, CrcError, ModbusException):
                self.errors += 1
                self.online[unit] = False
                continue
            now = time.time()
            self.latest[unit] = {v.name: Sample(v.value, v.unit, now) for v in values}
            self.online[unit] = True


async def monitor_loop(bus: BusOptions, ids: list[int], interval: float, count: int | None, live: bool) -> None:
    console = stdout_console()
    async with open_link(bus) as link:
        poller = BusPoller(link, ids)
        done = 0

        def view() -> Any:
            footer = f"{bus.port} @ {bus.baud} {bus.parity} — every {interval:g} s — Ctrl-C to stop"
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
@click.option("--ids", type=IdList(), default="1", show_default=True, help="Unit ids, e.g. 1-3,7.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=1.0, show_default=True, help="Seconds between cycles.")
@click.option("--once", is_flag=True, help="Poll once, print the table and exit.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many cycles.")
@cli_errors
def command(bus: BusOptions, ids: list[int], interval: float, once: bool, count: int | None) -> None:
    """Watch devices live (Ctrl-C stops)."""
    try:
        asyncio.run(monitor_loop(bus, ids, interval, 1 if once else count, live=not once))
    except KeyboardInterrupt:
        pass
