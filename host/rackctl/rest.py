"""JSON REST API over the daemon (aiohttp), described by ``rackctl.openapi``.

Reads are open; every write endpoint (register writes, alarm acks) needs the
bearer token from the daemon config. The token is checked by a middleware
*before* the handler runs, so an unauthenticated caller learns nothing — not
whether the register exists, nor whether its body would have parsed.

Register writes go through ``Daemon.write_register``, the same range and access
checks the CLI uses; errors map to HTTP codes: ``RangeError`` -> 400,
unknown device/register -> 404, protected register without ``unlock`` -> 403.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rackctl import daemon_view as view
from rackctl.openapi import openapi_document
from rackproto.errors import ModbusException, RackError, RangeError

log = logging.getLogger(__name__)

DAEMON_KEY: web.AppKey[Any] = web.AppKey("daemon", object)
TOKEN_KEY: web.AppKey[str | None] = web.AppKey("token")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _is_write(request: web.Request) -> bool:
    return request.method not in ("GET", "HEAD", "OPTIONS")


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse every write without a valid bearer token, before routing details matter."""
    if _is_write(request) and request.path.startswith("/api/"):
        token = request.app[TOKEN_KEY]
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if (
            not token
            or scheme.lower() != "bearer"
            or not hmac.compare_digest(given.strip().encode(), token.encode())
        ):
            return web.json_response(
                {"error": "a valid bearer token is required for writes"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="rackctl"'},
            )
    return await handler(request)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn library errors into JSON answers; never leak a traceback to the client."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.content_type == "application/json":
            raise
        return _error(exc.status, exc.reason)
    except RangeError as exc:
        return _error(400, str(exc))
    except view.NotFound as exc:
        return _error(404, str(exc))
    except (view.Forbidden, PermissionError) as exc:  # incl. daemon.WriteRefused
        return _error(403, str(exc))
    except ModbusException as exc:
        return _error(502, f"device refused: {exc}")
    except TimeoutError as exc:
        return _error(504, f"device did not answer: {exc}")
    except RackError as exc:
        return _error(400, str(exc))
    except Exception:  # pragma: no cover - last-resort guard
        log.exception("unhandled error in %s %s", request.method, request.path)
        return _error(500, "internal error (see the daemon log)")


def _device_id(request: web.Request) -> int:
    raw = request.match_info["id"]
    try:
        return int(raw)
    except ValueError:
        raise view.NotFound(f"no device {raw!r} (device ids are Modbus unit numbers)") from None


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


async def list_devices(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    return web.json_response([view.device_json(d) for d in view.devices(daemon)])


async def get_device(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    dev = view.device(daemon, _device_id(request))
    body = view.device_json(dev)
    body["registers"] = [view.register_json(r) for r in dev.registers]
    return web.json_response(body)


async def get_values(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    dev_id = _device_id(request)
    view.device(daemon, dev_id)
    samples = view.latest(daemon).get(dev_id, {})
    return web.json_response(
        {
            name: {"value": _json_number(s.value), "unit": s.unit, "ts": s.ts}
            for name, s in sorted(samples.items())
        }
    )


def _float_query(request: web.Request, key: str) -> float | None:
    """A finite number from the query string, None when absent; 400 otherwise."""
    raw = request.query.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise web.HTTPBadRequest(
            text=f'{{"error": "{key} must be a finite number (unix seconds)"}}',
            content_type="application/json",
        )
    return value


async def get_history(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    dev_id = _device_id(request)
    dev = view.device(daemon, dev_id)
    register = request.query.get("register")
    if not register:
        return _error(400, "query parameter 'register' is required")
    if register not in {r.name for r in dev.registers}:
        raise view.NotFound(f"device {dev_id} has no register {register!r}")
    t_to = _float_query(request, "to")
    if t_to is None:
        t_to = time.time()
    t_from = _float_query(request, "from")
    if t_from is None:
        t_from = t_to - 3600.0
    resolution = _float_query(request, "resolution")
    if t_from > t_to:
        return _error(400, "'from' must not be after 'to'")
    if resolution is not None and resolution < 0:
        return _error(400, "'resolution' must be >= 0 seconds (0 = raw samples)")
    points = view.history(daemon, dev_id, register, t_from, t_to, resolution)
    return web.json_response(
        {
            "device": dev_id,
            "register": register,
            "from": t_from,
            "to": t_to,
            "resolution": resolution,
            "points": [[row[0], *(_json_number(v) for v in row[1:])] for row in points],
        }
    )


async def list_alarms(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    active_only = request.query.get("active", "").lower() in ("1", "true", "yes")
    alarms = [a for a in view.alarms(daemon) if a.active or not active_only]
    return web.json_response([view.alarm_json(a) for a in alarms])


async def ack_alarm(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    raw = request.match_info["id"]
    try:
        alarm_id = int(raw)
    except ValueError:
        raise view.NotFound(f"no alarm {raw!r}") from None
    alarm = await view.ack_alarm(daemon, alarm_id)
    return web.json_response(view.alarm_json(alarm))


async def get_counters(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    counts = view.counters(daemon)
    return web.json_response({str(k): v for k, v in sorted(counts.items())})


async def write_register(request: web.Request) -> web.Response:
    daemon = request.app[DAEMON_KEY]
    dev_id = _device_id(request)
    name = request.match_info["name"]
    try:
        body = await request.json()
    except ValueError:
        return _error(400, 'body must be JSON: {"value": <number>, "unlock": false}')
    if not isinstance(body, dict) or "value" not in body:
        return _error(400, 'body must be a JSON object with a "value" field')
    value = body["value"]
    # bool for coils; lists for flag sets; the daemon's map checks the rest
    if not isinstance(value, bool | int | float | str | list):
        return _error(400, '"value" must be a number, true/false, an enum name or a flag list')
    unlock = body.get("unlock", False)
    if not isinstance(unlock, bool):
        return _error(400, '"unlock" must be true or false')
    written = await view.write_register(daemon, dev_id, name, value, unlock)
    log.info("REST write device %s %s = %r (unlock=%s)", dev_id, name, value, unlock)
    return web.json_response({"device": dev_id, "register": name, "value": written})


async def get_openapi(request: web.Request) -> web.Response:
    return web.json_response(openapi_document())


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/devices", list_devices)
    app.router.add_get("/api/devices/{id}", get_device)
    app.router.add_get("/api/devices/{id}/values", get_values)
    app.router.add_get("/api/devices/{id}/history", get_history)
    app.router.add_post("/api/devices/{id}/registers/{name}", write_register)
    app.router.add_get("/api/alarms", list_alarms)
    app.router.add_post("/api/alarms/{id}/ack", ack_alarm)
    app.router.add_get("/api/counters", get_counters)
    app.router.add_get("/openapi.json", get_openapi)


def create_app(daemon: Any, token: str | None) -> web.Application:
    """The REST application. ``token`` None or empty disables every write (always 401)."""
    app = web.Application(middlewares=[auth_middleware, error_middleware])
    app[DAEMON_KEY] = daemon
    app[TOKEN_KEY] = token or None
    add_routes(app)
    return app
