"""``rackctl daemon``: poll the configured buses, store history, serve /metrics and REST.

Command-line flags override the config file (``--port``, ``--http``, ``--db``) so
one file serves both the unit file and a quick manual run. Runs until SIGINT or
SIGTERM, then stops polling, flushes the last cycle and closes the ports. Under
systemd (``Type=notify``) it reports READY once the HTTP server listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import click

from rackctl.cli.common import EXIT_CONFIG, EXIT_USAGE, CliError, cli_errors, setup_logging
from rackctl.http_server import HttpServer, parse_bind

log = logging.getLogger("rackctl.cli.daemon")


def apply_overrides(cfg: Any, port: str | None, http: str | None, db: str | None) -> Any:
    """Return ``cfg`` with the command-line overrides applied (Config is frozen)."""
    if port:
        bus_name, sep, path = port.partition("=")
        if not sep:
            if len(cfg.buses) != 1:
                names = ", ".join(b.name for b in cfg.buses)
                raise CliError(f"--port: the config has {len(cfg.buses)} buses ({names}); use --port BUS=PATH", EXIT_USAGE)
            bus_name, path = cfg.buses[0].name, port
        if bus_name not in {b.name for b in cfg.buses}:
            raise CliError(f"--port: no bus {bus_name!r} in the config", EXIT_USAGE)
        buses = tuple(dataclasses.replace(b, port=path) if b.name == bus_name else b for b in cfg.buses)
        cfg = dataclasses.replace(cfg, buses=buses)
    if http:
        try:
            host, number = parse_bind(http)
        except ValueError as exc:
            raise CliError(f"--http: {exc}", EXIT_USAGE) from None
        cfg = dataclasses.replace(cfg, http=dataclasses.replace(cfg.http, bind=host, port=number))
    if db:
        cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, path=db))
    return cfg


def sd_notify(message: str) -> None:
    """Tell systemd about our state (no-op outside a Type=notify unit)."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), addr)


async def serve(
    daemon: Any,
    cfg: Any,
    *,
    stop: asyncio.Event,
    on_ready: Callable[[HttpServer], Awaitable[None] | None] | None = None,
) -> None:
    """Start the daemon and its HTTP server; run until ``stop`` is set; stop both."""
    server = HttpServer(daemon, cfg.http.token, cfg.http.bind, cfg.http.port)
    # bind first: a second daemon started by mistake must fail before it opens the
    # serial port and steals replies from the one already polling that bus
    try:
        await server.start()
    except OSError as exc:
        daemon.store.close()
        raise CliError(
            f"cannot listen on {cfg.http.bind}:{cfg.http.port}: {exc.strerror or exc} "
            "— choose another with --http HOST:PORT (or is a daemon already running?)",
            EXIT_CONFIG,
        ) from None
    try:
        await daemon.start()
        if cfg.http.bind not in ("127.0.0.1", "::1", "localhost"):
            log.warning("HTTP API bound to %s: reachable from the network", cfg.http.bind)
        if not cfg.http.token:
            log.warning(
                "no [http] token configured: REST writes and alarm acks are disabled "
                "(set [http] token, or RACKCTL_TOKEN for `rackctl run`)"
            )
        if on_ready is not None:
            result = on_ready(server)
            if asyncio.iscoroutine(result):
                await result
        await stop.wait()
    finally:
        await server.stop()
        await daemon.stop()
        daemon.store.close()


def install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


async def _main(cfg: Any) -> None:
    from rackctl.daemon import Daemon

    daemon = Daemon(cfg)
    stop = asyncio.Event()
    install_signal_handlers(stop)

    def ready(server: HttpServer) -> None:
        log.info("serving %s (metrics %s/metrics)", server.url, server.url)
        sd_notify("READY=1")

    await serve(daemon, cfg, stop=stop, on_ready=ready)
    sd_notify("STOPPING=1")


@click.command()
@click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), required=True,
    envvar="RACKCTL_CONFIG", help="TOML config (env RACKCTL_CONFIG).",
)
@click.option("--port", help="Serial port for the bus (PATH, or BUS=PATH with several buses).")
@click.option("--http", help="HTTP bind HOST:PORT (default from [http], 127.0.0.1:8080).")
@click.option("--db", help="History database file (default from [store] path).")
@click.option(
    "--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default="info",
    show_default=True,
)
@cli_errors
def command(config_path: str, port: str | None, http: str | None, db: str | None, log_level: str) -> None:
    """Run the monitoring daemon (polling, history, alarms, /metrics, REST)."""
    from rackctl.config import load

    setup_logging(log_level)
    cfg = apply_overrides(load(config_path), port, http, db)
    try:
        asyncio.run(_main(cfg))
    except KeyboardInterrupt:
        pass
