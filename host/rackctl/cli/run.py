"""``rackctl run`` (what ``make run`` calls): the whole stack on one laptop.

Starts the default emulated rack on a pty (rackhil), the daemon polling it with
history in ./var/, /metrics and the REST API on 127.0.0.1, and a live monitor.
Ctrl-C stops everything in order: monitor, HTTP, daemon (last cycle flushed),
then the rack. Without a terminal it prints a summary line every few seconds
instead of redrawing. ``--port`` skips the emulator and watches an existing bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.live import Live

from rackctl import daemon_view as view
from rackctl.cli.common import EXIT_CONFIG, CliError, cli_errors, setup_logging, stdout_console
from rackctl.cli.daemon import install_signal_handlers, serve
from rackctl.http_server import HttpServer, parse_bind
from rackctl.monitor_view import rack_overview, summary_line

log = logging.getLogger("rackctl.cli.run")

# the default rack (examples/rack.toml) when rackhil cannot say: (unit id, map, name)
DEFAULT_LAYOUT: tuple[tuple[int, str, str], ...] = (
    (1, "power_shelf", "shelf-1"),
    (2, "power_shelf", "shelf-2"),
    (3, "cdu", "cdu-1"),
    (4, "cdu", "cdu-2"),
)
# the daemon side of the default rack (poll overrides, alarm rules), if run from the repo
EXAMPLE_CONFIG = Path(__file__).resolve().parents[3] / "examples" / "daemon.toml"


@dataclass
class RackHandle:
    """What ``run`` needs from an emulated rack: a port, who is on it, how to stop it."""

    port: str
    layout: tuple[tuple[int, str, str], ...] = DEFAULT_LAYOUT
    stop: Any = field(default=lambda: None)


def default_layout() -> tuple[tuple[int, str, str], ...]:
    """Boards of the default rack spec (rackhil.rackspec), else DEFAULT_LAYOUT."""
    try:
        from rackhil.rackspec import default
    except ImportError:
        return DEFAULT_LAYOUT
    return tuple((b.id, b.map_name, b.name) for b in default().boards)


def start_emulated_rack(runtime: str | None = None) -> RackHandle:
    """Start the default software rack (``rackhil.rack.Rack.default``) in real time on
    its pty (``/tmp/rack/ttyRACK``); ``runtime`` "vm" or "cpython" overrides the spec."""
    try:
        from rackhil.rack import Rack  # lazy: only `run` and `sim` need the emulator

        rack = Rack.default(realtime=True, runtime=runtime)
        rack.start()
    except ImportError as exc:
        raise CliError(
            f"the emulated rack is not available ({exc}); "
            "watch a real bus or pty instead: rackctl run --port /dev/ttyUSB0 --ids 1:power_shelf",
            EXIT_CONFIG,
        ) from None
    if not rack.port:
        rack.stop()
        raise CliError("the emulated rack did not open its pty", EXIT_CONFIG)
    log.info("emulated rack on %s: %s", rack.port, rack.devices)
    return RackHandle(port=str(rack.port), layout=tuple(rack.devices), stop=rack.stop)


def build_config(port: str, layout: tuple[tuple[int, str, str], ...], db: str, http: str, parity: str, baud: int) -> Any:
    """The daemon config for the emulated rack (a pty: 8N1, any baud)."""
    from rackctl.config import parse

    host, http_port = parse_bind(http)
    return parse(
        {
            "buses": [{"name": "rack", "port": port, "baud": baud, "parity": parity,
                       "timeout": 0.3, "retries": 1, "reprobe": 5}],
            "devices": [{"id": unit, "map": m, "name": name} for unit, m, name in layout],
            "store": {"path": db},
            "http": {"bind": host, "port": http_port, "token": os.environ.get("RACKCTL_TOKEN", "")},
        }
    )


def links_for(cfg: Any) -> dict[str, Any] | None:
    """Bus links for the daemon; None lets it open the serial ports (tests swap this)."""
    return None


async def live_view(daemon: Any, server: HttpServer, stop: asyncio.Event, interactive: bool, every: float) -> None:
    """Redraw the monitor (TTY) or log a summary line every ``every`` seconds."""
    console = stdout_console()
    # not "rackctl monitor": the daemon holds the bus port, a second opener would fail
    footer = (
        f"REST {server.url}/api/devices   metrics {server.url}/metrics   "
        f"all values: {server.url}/api/devices/ID/values   Ctrl-C stops"
    )

    def frame() -> Any:
        return rack_overview(view.devices(daemon), view.latest(daemon), view.alarms(daemon), footer=footer)

    if interactive:
        # redraw from the loop once a second (no refresh thread): a frame of the default
        # rack renders in a few tens of ms, a pause the poll schedule absorbs
        with Live(frame(), console=console, auto_refresh=False, screen=False) as screen:
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
                screen.update(frame(), refresh=True)
        return
    click.echo(f"rackctl run: REST {server.url}/api/devices, metrics {server.url}/metrics")
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every)
        line = summary_line(view.devices(daemon), view.latest(daemon), view.alarms(daemon), view.counters(daemon))
        click.echo(f"{time.strftime('%H:%M:%S')} {line}")


async def run_stack(cfg: Any, *, interactive: bool, every: float, duration: float | None) -> None:
    from rackctl.daemon import Daemon

    daemon = Daemon(cfg, links=links_for(cfg))
    stop = asyncio.Event()
    install_signal_handlers(stop)
    tasks: list[asyncio.Task[Any]] = []

    def ready(server: HttpServer) -> None:
        tasks.append(asyncio.create_task(live_view(daemon, server, stop, interactive, every)))
        if duration is not None:
            asyncio.get_running_loop().call_later(duration, stop.set)

    try:
        await serve(daemon, cfg, stop=stop, on_ready=ready)
    finally:
        stop.set()
        for task in tasks:
            await task


def run_config(
    config: str | None, rack: RackHandle, db: str, http: str, parity: str, baud: int
) -> Any:
    """The daemon config: ``--config`` (or the repo's example for the default rack) with
    the port, database and HTTP bind of this run; else one built from the layout."""
    from rackctl.cli.daemon import apply_overrides
    from rackctl.config import load

    if config is None and EXAMPLE_CONFIG.exists() and rack.layout == default_layout():
        config = str(EXAMPLE_CONFIG)
    if config is None:
        return build_config(rack.port, rack.layout, db, http, parity, baud)
    cfg = apply_overrides(load(config), rack.port, http, db)
    token = os.environ.get("RACKCTL_TOKEN")
    if token:  # REST writes for this session without editing the config
        cfg = dataclasses.replace(cfg, http=dataclasses.replace(cfg.http, token=token))
    return cfg


@click.command()
@click.option("--port", help="Watch this bus instead of starting the emulated rack.")
@click.option("--parity", type=click.Choice(["N", "E", "O"]), default="N", show_default=True,
              help="Parity for --port (the emulator's pty needs N).")
@click.option("--baud", type=int, default=115200, show_default=True)
@click.option("--ids", default="", help="With --port: unit ids as ID:MAP,… e.g. 1:power_shelf,3:cdu.")
@click.option("--config", type=click.Path(dir_okay=False), help="Daemon config (default: examples/daemon.toml for the default rack).")
@click.option("--http", default="127.0.0.1:8080", show_default=True, help="REST + /metrics bind (port 0: any free one).")
@click.option("--db", default="var/rackctl.db", show_default=True, help="History database.")
@click.option("--every", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              help="Seconds between summary lines (no terminal).")
@click.option("--runtime", type=click.Choice(["vm", "cpython"]),
              help="Emulated boards: firmware in the MicroPython VM, or under CPython (faster start).")
@click.option("--duration", type=click.FloatRange(min=0), hidden=True, help="Stop after N seconds (CI).")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="warning")
@cli_errors
def command(port: str | None, parity: str, baud: int, ids: str, config: str | None, http: str,
            db: str, every: float, runtime: str | None, duration: float | None, log_level: str) -> None:
    """Run the emulated rack, the daemon, /metrics, REST and a live monitor (Ctrl-C stops)."""
    setup_logging(log_level)
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    rack = RackHandle(port=port, layout=_layout(ids)) if port else start_emulated_rack(runtime)
    try:
        cfg = run_config(config, rack, db, http, parity, baud)
        interactive = sys.stdout.isatty()
        boards = ", ".join(f"{unit}:{m}" for unit, m, _ in rack.layout)
        click.echo(f"rackctl run: bus {rack.port} ({boards}), history {db}")
        asyncio.run(run_stack(cfg, interactive=interactive, every=every, duration=duration))
    except KeyboardInterrupt:
        pass
    finally:
        rack.stop()


def _layout(text: str) -> tuple[tuple[int, str, str], ...]:
    if not text:
        return default_layout()
    out = []
    for part in text.split(","):
        unit, sep, map_name = part.partition(":")
        if not sep or not unit.strip().isdigit() or map_name not in ("power_shelf", "cdu"):
            raise click.BadParameter(f"{part!r}: expected ID:MAP with MAP power_shelf or cdu", param_hint="--ids")
        out.append((int(unit), map_name, f"{map_name}-{unit.strip()}"))
    return tuple(out)
