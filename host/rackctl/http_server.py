"""One aiohttp server for the REST API and Prometheus /metrics.

One listening socket keeps deployment simple (one port to firewall, one
systemd socket) and lets /metrics and /api share the daemon without locking:
everything runs on the daemon's event loop. Binds 127.0.0.1 unless told
otherwise — the API can write registers, so exposing it is a deliberate choice.
"""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from rackctl import rest
from rackctl.metrics import CONTENT_TYPE, RackMetrics

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080  # same as rackctl.config.HttpConfig

METRICS_KEY: web.AppKey[RackMetrics] = web.AppKey("metrics", RackMetrics)


async def _metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS_KEY].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def _index(request: web.Request) -> web.Response:
    return web.json_response(
        {"metrics": "/metrics", "api": "/api/devices", "openapi": "/openapi.json"}
    )


def create_app(daemon: Any, token: str | None, metrics: RackMetrics | None = None) -> web.Application:
    """The combined application: /metrics, /openapi.json and /api/*."""
    app = rest.create_app(daemon, token)
    app[METRICS_KEY] = metrics or RackMetrics(daemon)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/", _index)
    app[METRICS_KEY].instrument(daemon)
    return app


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``:PORT`` or ``PORT`` -> (host, port); host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    host = host.strip("[]") or DEFAULT_HOST
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"bad HTTP bind {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"bad HTTP port {number}: must be 0..65535")
    return host, number


class HttpServer:
    """Runs the combined app on the current event loop; ``port`` is known after start()."""

    def __init__(
        self,
        daemon: Any,
        token: str | None,
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
        metrics: RackMetrics | None = None,
    ) -> None:
        self.app = create_app(daemon, token, metrics)
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    @property
    def metrics(self) -> RackMetrics:
        return self.app[METRICS_KEY]

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = getattr(site, "_server", None)
        sockets = getattr(server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("HTTP API on http://%s:%d (metrics at /metrics)", self.host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
