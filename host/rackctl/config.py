"""The daemon's TOML configuration: buses, devices, store, http and alarm rules.

Everything is validated once, at load time, into frozen dataclasses, so the rest of
the daemon never sees a half-valid value. A bad value raises
:class:`rackproto.errors.ConfigError` whose message starts with the dotted key path,
e.g. ``buses[0].baud: expected one of 1200, 2400, ...`` — an operator can find the
line without reading a traceback.

Durations accept a number of seconds or a string with a unit: ``"250ms"``, ``"10s"``,
``"5m"``, ``"2h"``, ``"14d"``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rackproto.errors import ConfigError

BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)
PARITIES = ("N", "E", "O")
SEVERITIES = ("info", "warning", "critical")
OPS = (">", ">=", "<", "<=")
CHANGES_ONLY = ("none", "slow", "all")
KNOWN_MAPS = ("power_shelf", "cdu", "common")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


@dataclass(frozen=True)
class BusConfig:
    """One RS-485 bus: a serial port (or the sim pty) with its line settings and policy."""

    name: str
    port: str
    baud: int = 19200
    parity: str = "E"
    bytesize: int = 8
    stopbits: int = 1
    timeout: float = 0.5  # response timeout per attempt, seconds
    retries: int = 2  # extra attempts after the first
    dormant_after: int = 3  # consecutive failed polls before a device goes dormant
    reprobe: float = 30.0  # seconds between probes of a dormant device
    max_gap: int = 4  # unmapped addresses a merged block read may bridge
    max_bridge: int = 24  # words in all (incl. registers polled at other rates) it may bridge


@dataclass(frozen=True)
class DeviceConfig:
    """One board on a bus; ``poll`` overrides per-register (or per-block) intervals."""

    id: int
    map: str
    name: str
    bus: str
    poll: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StoreConfig:
    """History database and its retention policy (see docs/host-config.md)."""

    path: str = "var/rackctl.db"
    raw_retention: float = 2 * 3600.0
    downsample_retention: float = 14 * 86400.0
    changes_only: str = "slow"  # which registers are stored only when they change
    slow_poll: float = 5.0  # a register polled at >= this interval counts as slow
    heartbeat: float = 600.0  # an unchanged value is still stored at least this often
    maintenance: float = 60.0  # seconds between downsample/retention passes


@dataclass(frozen=True)
class HttpConfig:
    """REST/metrics listener. Writes are refused unless a token is configured."""

    bind: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None


@dataclass(frozen=True)
class AlarmRule:
    """A threshold rule: raise when ``value op limit``; clear once back past the hysteresis."""

    name: str
    register: str
    op: str
    limit: float
    hysteresis: float = 0.0
    severity: str = "warning"
    latched: bool = False
    device: str | None = None  # device name; None = every device whose map has the register


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    buses: tuple[BusConfig, ...]
    devices: tuple[DeviceConfig, ...]
    store: StoreConfig = StoreConfig()
    http: HttpConfig = HttpConfig()
    alarms: tuple[AlarmRule, ...] = ()

    def bus(self, name: str) -> BusConfig:
        for bus in self.buses:
            if bus.name == name:
                return bus
        raise KeyError(name)

    def devices_on(self, bus: str) -> tuple[DeviceConfig, ...]:
        return tuple(d for d in self.devices if d.bus == bus)


def parse_duration(value: Any, key: str, allow_zero: bool = False) -> float:
    """Seconds from a number or a ``"<n><unit>"`` string; ConfigError names ``key``."""
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
    else:
        raise ConfigError(f"{key}: expected a duration like 10, \"500ms\", \"5m\", got {value!r}")
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise ConfigError(f"{key}: must be > 0, got {value!r}")
    return seconds


class _Table:
    """A TOML table being read: tracks the key path and rejects unknown keys."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a table, got {type(data).__name__}")
        self.data = data
        self.path = path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(self, name: str, default: Any = ..., types: type | tuple[type, ...] = object) -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise ConfigError(f"{self.key(name)}: required key missing")
            return default
        value = self.data[name]
        bad_bool = isinstance(value, bool) and bool not in _as_tuple(types)
        if not isinstance(value, types) or bad_bool:
            expected = " or ".join(t.__name__ for t in _as_tuple(types))
            raise ConfigError(f"{self.key(name)}: expected {expected}, got {value!r}")
        return value

    def choice(self, name: str, choices: tuple, default: Any = ...) -> Any:
        value = self.get(name, default)
        if isinstance(value, str) and all(isinstance(c, str) for c in choices):
            value = value.strip()
            match = [c for c in choices if c.lower() == value.lower()]
            if match:
                return match[0]
        elif value in choices and not isinstance(value, bool):
            return value
        listed = ", ".join(str(c) for c in choices)
        raise ConfigError(f"{self.key(name)}: expected one of {listed}, got {value!r}")

    def integer(self, name: str, default: Any = ..., lo: int = 0, hi: int | None = None) -> int:
        value = self.get(name, default, int)
        if value < lo or (hi is not None and value > hi):
            span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise ConfigError(f"{self.key(name)}: expected an integer in {span}, got {value!r}")
        return value

    def duration(self, name: str, default: Any = ..., allow_zero: bool = False) -> float:
        value = self.get(name, default)
        return parse_duration(value, self.key(name), allow_zero)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(f"{self.key(unknown[0])}: unknown key")


def _as_tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


def _array(root: _Table, name: str) -> list[Any]:
    value = root.get(name, [], list)
    return value


def _bus(data: Any, path: str) -> BusConfig:
    t = _Table(data, path)
    bus = BusConfig(
        name=t.get("name", "bus" + path[len("buses[") : -1], str),
        port=t.get("port", types=str),
        baud=t.choice("baud", BAUD_RATES, 19200),
        parity=t.choice("parity", PARITIES, "E"),
        bytesize=t.choice("bytesize", (7, 8), 8),
        stopbits=t.choice("stopbits", (1, 2), 1),
        timeout=t.duration("timeout", 0.5),
        retries=t.integer("retries", 2, 0, 10),
        dormant_after=t.integer("dormant_after", 3, 1, 1000),
        reprobe=t.duration("reprobe", 30.0),
        max_gap=t.integer("max_gap", 4, 0, 124),
        max_bridge=t.integer("max_bridge", 24, 0, 124),
    )
    t.done()
    return bus


def _device(data: Any, path: str, buses: tuple[BusConfig, ...]) -> DeviceConfig:
    t = _Table(data, path)
    unit = t.integer("id", lo=1, hi=247)
    map_name = t.choice("map", KNOWN_MAPS)
    default_bus = buses[0].name if len(buses) == 1 else ...
    bus = t.get("bus", default_bus, str)
    if bus not in {b.name for b in buses}:
        names = ", ".join(b.name for b in buses)
        raise ConfigError(f"{t.key('bus')}: expected one of {names}, got {bus!r}")
    name = t.get("name", f"{bus}-{unit}", str)
    poll_table = _Table(t.get("poll", {}, dict), t.key("poll"))
    poll = {k: poll_table.duration(k, allow_zero=True) for k in list(poll_table.data)}
    poll_table.done()
    t.done()
    return DeviceConfig(id=unit, map=map_name, name=name, bus=bus, poll=poll)


def _store(data: Any) -> StoreConfig:
    t = _Table(data, "store")
    store = StoreConfig(
        path=t.get("path", StoreConfig.path, str),
        raw_retention=t.duration("raw_retention", StoreConfig.raw_retention),
        downsample_retention=t.duration("downsample_retention", StoreConfig.downsample_retention),
        changes_only=t.choice("changes_only", CHANGES_ONLY, StoreConfig.changes_only),
        slow_poll=t.duration("slow_poll", StoreConfig.slow_poll),
        heartbeat=t.duration("heartbeat", StoreConfig.heartbeat),
        maintenance=t.duration("maintenance", StoreConfig.maintenance),
    )
    t.done()
    if store.downsample_retention < store.raw_retention:
        raise ConfigError("store.downsample_retention: must be >= store.raw_retention")
    return store


def _http(data: Any) -> HttpConfig:
    t = _Table(data, "http")
    http = HttpConfig(
        bind=t.get("bind", HttpConfig.bind, str),
        port=t.integer("port", HttpConfig.port, 0, 65535),
        token=t.get("token", None, str) or None,
    )
    t.done()
    return http


def _rule(data: Any, path: str, devices: tuple[DeviceConfig, ...]) -> AlarmRule:
    t = _Table(data, path)
    register = t.get("register", types=str)
    device = t.get("device", None, (str, int))
    if isinstance(device, int):
        matches = [d.name for d in devices if d.id == device]
        if len(matches) != 1:
            raise ConfigError(f"{t.key('device')}: no unique device with id {device}")
        device = matches[0]
    elif device is not None and device not in {d.name for d in devices}:
        raise ConfigError(f"{t.key('device')}: unknown device {device!r}")
    hysteresis = float(t.get("hysteresis", 0.0, (int, float)))
    if hysteresis < 0:
        raise ConfigError(f"{t.key('hysteresis')}: must be >= 0, got {hysteresis!r}")
    rule = AlarmRule(
        name=t.get("name", f"{register} {data.get('op', '?')} {data.get('limit', '?')}", str),
        register=register,
        op=t.choice("op", OPS),
        limit=float(t.get("limit", types=(int, float))),
        hysteresis=hysteresis,
        severity=t.choice("severity", SEVERITIES, "warning"),
        latched=t.get("latched", False, bool),
        device=device,
    )
    t.done()
    return rule


def parse(data: Mapping[str, Any]) -> Config:
    """Validate a decoded TOML document into a :class:`Config`."""
    root = _Table(dict(data), "")
    raw_buses = _array(root, "buses")
    if not raw_buses:
        raise ConfigError("buses: at least one [[buses]] table is required")
    buses = tuple(_bus(b, f"buses[{i}]") for i, b in enumerate(raw_buses))
    seen: set[str] = set()
    for i, bus in enumerate(buses):
        if bus.name in seen:
            raise ConfigError(f"buses[{i}].name: duplicate bus name {bus.name!r}")
        seen.add(bus.name)
    devices = tuple(_device(d, f"devices[{i}]", buses) for i, d in enumerate(_array(root, "devices")))
    names: set[str] = set()
    addresses: set[int] = set()
    for i, dev in enumerate(devices):
        if dev.name in names:
            raise ConfigError(f"devices[{i}].name: duplicate device name {dev.name!r}")
        if dev.id in addresses:  # ids are the daemon's device keys (REST, metrics, CLI)
            raise ConfigError(f"devices[{i}].id: id {dev.id} is used twice (ids are daemon-wide)")
        names.add(dev.name)
        addresses.add(dev.id)
    store = _store(root.get("store", {}, dict))
    http = _http(root.get("http", {}, dict))
    alarms = tuple(_rule(r, f"alarms[{i}]", devices) for i, r in enumerate(_array(root, "alarms")))
    root.done()
    return Config(buses=buses, devices=devices, store=store, http=http, alarms=alarms)


def loads(text: str) -> Config:
    """Parse TOML text; a syntax error is a ConfigError too."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"<toml>: {exc}") from exc
    return parse(data)


def load(path: str | Path) -> Config:
    """Read and validate a config file; the error message is prefixed by the file name."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from exc
    try:
        return loads(text)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
