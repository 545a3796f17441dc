"""A read/write view of the running daemon for the HTTP API, /metrics and the monitor.

The REST API, the Prometheus collector and the live monitor all need the same
things from the daemon (device list, latest values, counters, alarms, history,
writes). Routing them through one small module keeps those three consumers
independent of the daemon's internal data structures: when the daemon changes
shape, only this file changes.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rackproto.errors import RackError


class NotFound(RackError, LookupError):
    """An unknown device, register or alarm."""


class Forbidden(RackError, PermissionError):
    """A protected register written without the unlock flag."""


@dataclass(frozen=True)
class Sample:
    value: Any
    unit: str
    ts: float


@dataclass(frozen=True)
class DeviceView:
    id: int
    board: str
    name: str
    online: bool
    identity: dict[str, Any] = field(default_factory=dict)
    registers: tuple[Any, ...] = ()
    bus: str = ""
    state: str = ""
    last_seen: float | None = None


@dataclass(frozen=True)
class AlarmView:
    id: int
    device: int
    name: str
    key: str
    severity: str
    active: bool
    acked: bool
    raised_at: float | None
    cleared_at: float | None
    message: str


def _get(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


def _first(obj: Any, names: tuple[str, ...], default: Any = None) -> Any:
    for n in names:
        v = _get(obj, n, None)
        if v is not None:
            return v
    return default


def _device_view(dev_id: int, dev: Any) -> DeviceView:
    regmap = _first(dev, ("regmap", "map", "register_map"))
    registers = tuple(getattr(regmap, "registers", ()) or ())
    board = _first(dev, ("board", "board_type", "kind"), None)
    if board is None and regmap is not None:
        board = getattr(regmap, "name", None)
    online = _first(dev, ("online", "up"), None)
    if online is None:
        state = str(_get(dev, "state", "online")).lower()
        online = state not in ("dormant", "offline", "down", "lost")
    return DeviceView(
        id=int(dev_id),
        board=str(board or "unknown"),
        name=str(_get(dev, "name", None) or f"{board or 'device'}-{dev_id}"),
        online=bool(online),
        identity=dict(_get(dev, "identity", None) or {}),
        registers=registers,
        bus=str(_get(dev, "bus", "") or ""),
        state=str(_get(dev, "state", "") or ("online" if online else "dormant")),
        last_seen=_get(dev, "last_seen", None),
    )


def devices(daemon: Any) -> list[DeviceView]:
    devs = daemon.devices
    items = devs.items() if isinstance(devs, Mapping) else ((_get(d, "id"), d) for d in devs)
    return sorted((_device_view(i, d) for i, d in items), key=lambda d: d.id)


def device(daemon: Any, dev_id: int) -> DeviceView:
    for d in devices(daemon):
        if d.id == dev_id:
            return d
    raise NotFound(f"no device {dev_id} on this bus (GET /api/devices lists them)")


def _sample(raw: Any) -> Sample:
    if isinstance(raw, Sample):
        return raw
    if isinstance(raw, tuple | list):
        value, unit, ts = (tuple(raw) + (None, None, None))[:3]
        return Sample(value, unit or "", float(ts or 0.0))
    return Sample(_get(raw, "value"), _get(raw, "unit", "") or "", float(_get(raw, "ts", 0.0)))


def latest(daemon: Any) -> dict[int, dict[str, Sample]]:
    return {
        int(dev): {name: _sample(s) for name, s in regs.items()}
        for dev, regs in (daemon.latest or {}).items()
    }


def counters(daemon: Any) -> dict[int, dict[str, int]]:
    raw = daemon.counters
    if callable(raw):
        raw = raw()
    out: dict[int, dict[str, int]] = {}
    for dev, c in (raw or {}).items():
        if not isinstance(c, Mapping):
            as_dict = getattr(c, "as_dict", None)
            c = as_dict() if callable(as_dict) else {
                k: getattr(c, k, 0) for k in ("requests", "crc_errors", "timeouts", "exceptions")
            }
        # plain integer counters only (exception_codes, last_ok are not counters)
        out[int(dev)] = {
            k: int(v) for k, v in c.items() if isinstance(v, int) and not isinstance(v, bool)
        }
    return out


def _alarm_view(a: Any) -> AlarmView:
    active = _get(a, "active", None)
    if active is None:
        active = str(_get(a, "state", "")).lower() in ("active", "raised", "latched")
    return AlarmView(
        id=int(_get(a, "id")),
        device=int(_first(a, ("device", "device_id"), 0)),
        name=str(_first(a, ("name", "kind", "code"), "")),
        key=str(_first(a, ("key", "name", "kind", "code"), "")),
        severity=str(_get(a, "severity", "warning")),
        active=bool(active),
        acked=bool(_first(a, ("acked", "acknowledged"), False)),
        raised_at=_get(a, "raised_at"),
        cleared_at=_get(a, "cleared_at"),
        message=str(_get(a, "message", "") or ""),
    )


def alarms(daemon: Any) -> list[AlarmView]:
    src = daemon.alarms
    lister = getattr(src, "list", None)
    items = lister() if callable(lister) else src
    return [_alarm_view(a) for a in items]


async def _maybe_await(v: Any) -> Any:
    return await v if inspect.isawaitable(v) else v


async def ack_alarm(daemon: Any, alarm_id: int) -> AlarmView:
    try:
        result = await _maybe_await(daemon.alarms.ack(alarm_id))
    except (KeyError, LookupError):
        raise NotFound(f"no alarm {alarm_id} (GET /api/alarms lists them)") from None
    if result is None or isinstance(result, bool):
        return next(a for a in alarms(daemon) if a.id == alarm_id)
    return _alarm_view(result)


def history(
    daemon: Any, dev_id: int, register: str, t_from: float, t_to: float, resolution: float | None
) -> list[tuple[Any, ...]]:
    """``(ts, value)`` raw rows or ``(ts, avg, min, max)`` buckets, oldest first.

    ``resolution`` None lets the store choose, 0 forces raw samples.
    """
    try:
        rows = daemon.store.history(dev_id, register, t_from, t_to, resolution)
    except KeyError:  # the store has not recorded this device yet
        return []
    return [(float(r[0]), *r[1:]) for r in rows]


async def write_register(daemon: Any, dev_id: int, name: str, value: Any, unlock: bool) -> Any:
    dev = device(daemon, dev_id)
    reg = next((r for r in dev.registers if r.name == name), None)
    if reg is None:
        raise NotFound(f"device {dev_id} ({dev.board}) has no register {name!r}")
    access = str(getattr(reg, "access", "rw"))
    if access == "ro" or getattr(reg, "table", "holding") not in ("holding", "coil"):
        raise Forbidden(f"register {name!r} is read-only")
    if access == "protected" and not unlock:
        raise Forbidden(f"register {name!r} is protected: repeat the write with unlock=true")
    result = await daemon.write_register(dev_id, name, value, unlock=unlock)
    return value if result is None else result


def device_json(d: DeviceView) -> dict[str, Any]:
    return {
        "id": d.id,
        "board": d.board,
        "name": d.name,
        "online": d.online,
        "state": d.state,
        "bus": d.bus,
        "last_seen": d.last_seen,
        "identity": {k: (v.hex() if isinstance(v, bytes) else v) for k, v in d.identity.items()},
    }


def register_json(r: Any) -> dict[str, Any]:
    return {
        "name": r.name,
        "table": r.table,
        "address": r.address,
        "type": str(r.type),
        "unit": r.unit or "",
        "access": r.access,
        "min": getattr(r, "min", None),
        "max": getattr(r, "max", None),
        "description": getattr(r, "description", "") or "",
    }


def alarm_json(a: AlarmView) -> dict[str, Any]:
    return {
        "id": a.id,
        "device": a.device,
        "name": a.name,
        "key": a.key,
        "severity": a.severity,
        "active": a.active,
        "acked": a.acked,
        "raised_at": a.raised_at,
        "cleared_at": a.cleared_at,
        "message": a.message,
    }
