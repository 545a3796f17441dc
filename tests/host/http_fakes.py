"""A small in-memory daemon with the shape the HTTP API, metrics and CLI use.

It mirrors the public surface of ``rackctl.daemon.Daemon`` (devices, latest,
counters, alarms, store, write_register) so the interface tests do not need a bus.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rackproto.errors import RangeError


@dataclass
class FakeRegister:
    name: str
    table: str
    address: int
    type: str = "u16"
    unit: str = ""
    access: str = "ro"
    min: float | None = None
    max: float | None = None
    scale: float = 1.0
    description: str = ""


@dataclass
class FakeMap:
    name: str
    registers: list[FakeRegister]

    def get(self, name: str) -> FakeRegister:
        for r in self.registers:
            if r.name == name:
                return r
        raise KeyError(name)


SHELF_MAP = FakeMap(
    "power_shelf",
    [
        FakeRegister("model", "input", 8, "string[8]"),
        FakeRegister("dc_bus_v", "input", 100, "u16", "V", scale=0.01),
        FakeRegister("dc_bus_a", "input", 101, "u16", "A", scale=0.1),
        FakeRegister("dc_bus_p", "input", 102, "u32", "W"),
        FakeRegister("psu1_temp", "input", 110, "i16", "°C", scale=0.1),
        FakeRegister("fan_speed", "input", 111, "u16", "%"),
        FakeRegister("vout_setpoint", "holding", 200, "u16", "V", "rw", 48.0, 54.0, 0.01),
        FakeRegister("ovp_limit", "holding", 201, "u16", "V", "protected", 50.0, 60.0, 0.01),
    ],
)

CDU_MAP = FakeMap(
    "cdu",
    [
        FakeRegister("pump1_rpm", "input", 100, "u16", "rpm"),
        FakeRegister("flow", "input", 102, "u16", "L/min", scale=0.1),
        FakeRegister("supply_pressure", "input", 103, "u16", "kPa", scale=0.1),
        FakeRegister("pump_enable", "coil", 0, "bool", "", "rw"),
    ],
)


@dataclass
class FakeDevice:
    id: int
    board: str
    regmap: FakeMap
    name: str = ""
    online: bool = True
    identity: dict[str, Any] = field(default_factory=dict)
    last_seen: float | None = 1090.0


@dataclass
class FakeAlarm:
    id: int
    device: int
    name: str
    severity: str
    active: bool
    acked: bool = False
    raised_at: float | None = 1000.0
    cleared_at: float | None = None
    message: str = ""


class FakeAlarms:
    def __init__(self, alarms: list[FakeAlarm]) -> None:
        self._alarms = alarms

    def list(self) -> list[FakeAlarm]:
        return list(self._alarms)

    def ack(self, alarm_id: int) -> FakeAlarm:
        for a in self._alarms:
            if a.id == alarm_id:
                a.acked = True
                return a
        raise KeyError(alarm_id)


class FakeStore:
    def __init__(self) -> None:
        self.rows: dict[tuple[int, str], list[tuple[float, float]]] = {
            (1, "dc_bus_v"): [(1000.0 + i * 10, 48.0 + i * 0.1) for i in range(10)],
        }

    def history(
        self, device: int, register: str, t_from: float, t_to: float, resolution: float | None
    ) -> list[tuple[float, ...]]:
        """Same contract as rackctl.store.Store.history: [start, end), raw or buckets."""
        rows = [r for r in self.rows.get((device, register), []) if t_from <= r[0] < t_to]
        if not resolution:
            return rows
        buckets: dict[float, list[float]] = {}
        for ts, v in rows:
            buckets.setdefault(ts - ts % resolution, []).append(v)
        return [(k, sum(v) / len(v), min(v), max(v)) for k, v in sorted(buckets.items())]


class FakeDaemon:
    def __init__(self) -> None:
        self.devices = {
            1: FakeDevice(1, "power_shelf", SHELF_MAP, "shelf-1", True, {"model": "PS-6", "serial": "A1"}),
            2: FakeDevice(2, "cdu", CDU_MAP, "cdu-2", False, {"model": "CDU-1", "serial": "B7"}),
        }
        self.latest: dict[int, dict[str, tuple[Any, str, float]]] = {
            1: {
                "model": ("PS-6", "", 1090.0),
                "dc_bus_v": (48.25, "V", 1090.0),
                "dc_bus_a": (120.5, "A", 1090.0),
                "dc_bus_p": (5784, "W", 1090.0),
                "psu1_temp": (41.5, "°C", 1090.0),
                "fan_speed": (55, "%", 1090.0),
                "vout_setpoint": (48.0, "V", 1090.0),
            },
            2: {
                "pump1_rpm": (3000, "rpm", 1090.0),
                "flow": (120.0, "L/min", 1090.0),
                "supply_pressure": (250.0, "kPa", 1090.0),
                "pump_enable": (True, "", 1090.0),
            },
        }
        self.counters = {
            1: {"requests": 100, "crc_errors": 2, "timeouts": 1, "exceptions": 0},
            2: {"requests": 50, "crc_errors": 0, "timeouts": 7, "exceptions": 3},
        }
        self.alarms = FakeAlarms(
            [
                FakeAlarm(1, 1, "over_temperature", "critical", True, message="psu1 61 °C"),
                FakeAlarm(2, 2, "low_flow", "warning", False, cleared_at=1050.0),
                FakeAlarm(3, 2, "low_flow", "warning", True),
            ]
        )
        self.store = FakeStore()
        self.writes: list[tuple[int, str, Any, bool]] = []

    async def write_register(self, device_id: int, name: str, value: Any, unlock: bool = False) -> Any:
        reg = self.devices[device_id].regmap.get(name)
        if reg.min is not None and not (reg.min <= float(value) <= reg.max):
            raise RangeError(f"{name}: {value} outside {reg.min}..{reg.max} {reg.unit}")
        self.writes.append((device_id, name, value, unlock))
        return value
