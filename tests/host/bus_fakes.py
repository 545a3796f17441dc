"""An in-memory Modbus bus for the CLI tests: boards built from the real register maps.

``FakeLink`` has the ``rackctl.modbus_client.ModbusLink`` methods plus connect/close,
answers only the units it holds (others time out), refuses protected writes until the
two-step unlock key was written, like ``rackfw.unlock``.
"""

from __future__ import annotations

from typing import Any

from rackctl.modbus_client import Counters
from rackproto import regmap
from rackproto.errors import DeviceTimeout, ModbusException

UNLOCK_KEY = 0xC0DE


class FakeBoard:
    def __init__(self, map_name: str, serial: str = "SN0001") -> None:
        self.map = regmap.load(map_name)
        self.words: dict[str, dict[int, int]] = {"input": {}, "holding": {}, "coil": {}, "discrete": {}}
        self.unlock_state = 0  # 0 locked, 1 armed, 2 unlocked
        self.writes: list[tuple[int, list[int]]] = []
        self.set("vendor", "rackctl")
        self.set("model", "PS-6" if map_name == "power_shelf" else "CDU-1")
        self.set("serial", serial)
        self.set("hw_rev", 3)
        self.set("fw_version", 0x0102)
        self.set("board_type", map_name)
        for r in self.map.registers:
            if r.table == "holding" and r.default is not None:
                self.set(r.name, r.default)

    def set(self, name: str, value: Any) -> None:
        r = self.map.get(name)
        for i, w in enumerate(self.map.encode_value(r, value)):
            self.words[r.table][r.address + i] = w

    def read(self, table: str, address: int, count: int) -> list[int]:
        size = self.map.table_size(table)
        if address + count > size:
            raise ModbusException(2, 4)
        return [self.words[table].get(a, 0) for a in range(address, address + count)]

    def write(self, address: int, values: list[int]) -> None:
        if address == 0 and len(values) == 1:  # unlock_key: not recorded as a data write
            v = values[0]
            if v == UNLOCK_KEY:
                self.unlock_state = 1
            elif v == UNLOCK_KEY ^ 0xFFFF and self.unlock_state == 1:
                self.unlock_state = 2
            else:
                self.unlock_state = 0
            return
        for i, v in enumerate(values):
            addr = address + i
            reg = next((r for r in self.map.table("holding") if r.address <= addr < r.end), None)
            if reg is None:
                raise ModbusException(2, 16)
            if reg.access == "ro" or (reg.access == "protected" and self.unlock_state != 2):
                raise ModbusException(3, 16)
            self.words["holding"][addr] = v
        self.writes.append((address, list(values)))


class FakeLink:
    def __init__(self, boards: dict[int, FakeBoard]) -> None:
        self.boards = boards
        self.connected = False
        self.requests = 0
        self._counters: dict[int, Counters] = {}

    async def connect(self) -> None:
        self.connected = True

    def close(self) -> None:
        self.connected = False

    def _board(self, unit: int) -> FakeBoard:
        self.requests += 1
        self.counters(unit).requests += 1
        if unit not in self.boards:
            self.counters(unit).timeouts += 1
            raise DeviceTimeout(f"unit {unit}: no response")
        return self.boards[unit]

    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
        return self._board(unit).read(table, address, count)

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        self._board(unit).write(address, values)

    async def write_coil(self, unit: int, address: int, value: bool) -> None:
        self._board(unit).words["coil"][address] = int(value)

    async def read_identification(self, unit: int) -> dict[int, bytes]:
        self._board(unit)
        raise ModbusException(1, 0x2B)

    def counters(self, unit: int) -> Counters:
        return self._counters.setdefault(unit, Counters())


DAEMON_TOML = """
[[buses]]
name = "bus0"
port = "/dev/fake"

[[devices]]
id = 1
map = "power_shelf"
name = "shelf-a"

[[devices]]
id = 3
map = "cdu"
name = "cdu-a"

[store]
path = ":memory:"

[http]
token = "tok"

[[alarms]]
name = "dc bus high"
register = "dc_v"
op = ">"
limit = 53.0
severity = "critical"
"""


def make_daemon(link: FakeLink, toml: str = DAEMON_TOML) -> Any:
    from rackctl.config import loads
    from rackctl.daemon import Daemon
    from rackctl.store import Store

    cfg = loads(toml)
    return Daemon(cfg, links={"bus0": link}, store=Store(":memory:"))
