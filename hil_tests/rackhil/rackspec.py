"""The rack description file (TOML): which boards sit on the bus, how the wire runs, the plants.

A rack file is what ``rackctl sim --rack FILE`` and the scenario fixtures load; it is
checked completely before anything starts, and every mistake raises
:class:`rackproto.errors.ConfigError` whose message starts with the file and names the
key (``boards[2].plant.load_w``), so a typo never becomes a silently default rack.

``firmware`` only matters for ``runtime = "vm"``: ``"mpy"`` writes mpy-cross output into
the board's VM (:mod:`rackhil.firmware_files`), ~20 KB less heap per board, like an
RP2040 deployment; CPython boards always run the sources.

Schema (every key optional except ``boards``; see ``examples/rack.toml``)::

    [rack]
    name = "default"
    seed = 1                  # everything random (noise, line faults) derives from it
    runtime = "vm"            # default for boards: "vm" (MicroPython VM) | "cpython"
    firmware = "py"           # VM boards boot from "py" sources | "mpy" (mpy-cross, as deployed)
    plant_step = 0.1          # s of virtual time between plant/board couplings

    [bus]
    baud = 115200
    parity = "E"              # E | N | O (on the simulated wire; a pty is always 8N1)
    stop_bits = 1

    [[boards]]
    id = 1                    # Modbus unit id, 1..247, unique
    type = "power_shelf"      # power_shelf | cdu
    name = "shelf-1"          # default "<type>-<id>"
    runtime = "cpython"       # overrides [rack].runtime for this board
    firmware = "mpy"          # overrides [rack].firmware for this board
    [boards.plant]            # plant model parameters (rackhil.plants)
    load_w = 9000.0
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rackproto.errors import ConfigError

from .wire import LineSettings

BOARD_TYPES = ("power_shelf", "cdu")
RUNTIMES = ("vm", "cpython")
FIRMWARE_FORMATS = ("py", "mpy")  # = rackhil.firmware_files.FORMATS
MAX_UNIT = 247

#: Plant parameters accepted per board type (keyword arguments of the plant models;
#: for the CDU the fields of ``CduParams`` plus ``noise``).
SHELF_PLANT_KEYS = {"load_w": float, "ambient_c": float, "psus": int, "bbu_soc": float, "noise": float}

_RACK_KEYS = {"name", "seed", "runtime", "firmware", "plant_step"}
_BUS_KEYS = {"baud", "parity", "stop_bits"}
_BOARD_KEYS = {"id", "type", "name", "runtime", "firmware", "plant"}


def _cdu_plant_keys() -> dict[str, type]:
    from .plants.cdu import CduParams

    keys: dict[str, type] = {f.name: float for f in dataclasses.fields(CduParams)}
    keys["noise"] = float
    return keys


@dataclass(frozen=True)
class BoardSpec:
    """One controller board on the bus and the plant it is wired to."""

    id: int
    type: str
    name: str
    runtime: str
    plant: dict[str, Any] = field(default_factory=dict)
    firmware: str = "py"  # "py" | "mpy": what a VM board boots from

    @property
    def map_name(self) -> str:
        """Register map name (``rackproto.regmap.load``) = the board type."""
        return self.type


@dataclass(frozen=True)
class RackSpec:
    """A validated rack: line settings, boards in bus order, seed, coupling period."""

    boards: tuple[BoardSpec, ...]
    line: LineSettings = LineSettings()
    seed: int = 1
    name: str = "rack"
    plant_step_s: float = 0.1
    source: str = "<memory>"

    def board(self, unit: int) -> BoardSpec:
        for b in self.boards:
            if b.id == unit:
                return b
        raise KeyError(f"no board with id {unit} in rack {self.name!r}")

    def with_runtime(self, runtime: str) -> RackSpec:
        """The same rack with every board on ``runtime`` (``--runtime`` on the CLI)."""
        _check_choice(runtime, RUNTIMES, "runtime", self.source)
        return dataclasses.replace(self, boards=tuple(dataclasses.replace(b, runtime=runtime) for b in self.boards))

    def with_firmware(self, firmware: str) -> RackSpec:
        """The same rack with every board booting ``firmware`` (``--firmware`` on the CLI)."""
        _check_choice(firmware, FIRMWARE_FORMATS, "firmware", self.source)
        return dataclasses.replace(
            self, boards=tuple(dataclasses.replace(b, firmware=firmware) for b in self.boards)
        )

    def with_line(self, *, baud: int | None = None, parity: str | None = None) -> RackSpec:
        """The same rack with another baud rate and/or parity on the wire."""
        try:
            line = LineSettings(
                baud=baud if baud is not None else self.line.baud,
                parity=parity if parity is not None else self.line.parity,
                stop_bits=self.line.stop_bits,
            )
        except ValueError as exc:
            raise ConfigError(f"{self.source}: bus: {exc}") from None
        return dataclasses.replace(self, line=line)


def _check_choice(value: Any, choices: tuple[str, ...], key: str, source: str) -> None:
    if value not in choices:
        raise ConfigError(f"{source}: {key} must be one of {', '.join(choices)}, not {value!r}")


def _typed(value: Any, kind: type, key: str, source: str) -> Any:
    if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{source}: {key} must be {kind.__name__}, not {value!r}")


def _unknown(table: dict[str, Any], allowed: set[str], where: str, source: str) -> None:
    extra = sorted(set(table) - allowed)
    if extra:
        prefix = f"{where}." if where else ""
        raise ConfigError(f"{source}: unknown key {prefix}{extra[0]} (allowed: {', '.join(sorted(allowed))})")


def _table(doc: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: {key} must be a table")
    return value


def parse(doc: dict[str, Any], source: str = "<memory>") -> RackSpec:
    """Validate a decoded rack document (the TOML's dict) into a :class:`RackSpec`."""
    _unknown(doc, {"rack", "bus", "boards"}, "", source)
    rack = _table(doc, "rack", source)
    _unknown(rack, _RACK_KEYS, "rack", source)
    seed = _typed(rack.get("seed", 1), int, "rack.seed", source)
    name = _typed(rack.get("name", Path(source).stem if source != "<memory>" else "rack"), str, "rack.name", source)
    default_runtime = rack.get("runtime", "vm")
    _check_choice(default_runtime, RUNTIMES, "rack.runtime", source)
    default_firmware = rack.get("firmware", "py")
    _check_choice(default_firmware, FIRMWARE_FORMATS, "rack.firmware", source)
    plant_step = _typed(rack.get("plant_step", 0.1), float, "rack.plant_step", source)
    if not 0.001 <= plant_step <= 1.0:
        raise ConfigError(f"{source}: rack.plant_step must be 0.001..1.0 s, not {plant_step}")

    bus = _table(doc, "bus", source)
    _unknown(bus, _BUS_KEYS, "bus", source)
    baud = _typed(bus.get("baud", 115200), int, "bus.baud", source)
    parity = bus.get("parity", "E")
    _check_choice(parity, ("E", "N", "O"), "bus.parity", source)
    stop_bits = _typed(bus.get("stop_bits", 1), int, "bus.stop_bits", source)
    if stop_bits not in (1, 2):
        raise ConfigError(f"{source}: bus.stop_bits must be 1 or 2, not {stop_bits}")
    if not 1200 <= baud <= 1_000_000:
        raise ConfigError(f"{source}: bus.baud must be 1200..1000000, not {baud}")
    line = LineSettings(baud=baud, parity=parity, stop_bits=stop_bits)

    raw_boards = doc.get("boards")
    if not isinstance(raw_boards, list) or not raw_boards:
        raise ConfigError(f"{source}: boards must be a non-empty array of tables ([[boards]])")
    boards: list[BoardSpec] = []
    seen: dict[int, str] = {}
    names: set[str] = set()
    for i, raw in enumerate(raw_boards):
        where = f"boards[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: {where} must be a table")
        _unknown(raw, _BOARD_KEYS, where, source)
        if "id" not in raw:
            raise ConfigError(f"{source}: {where}.id is required")
        if "type" not in raw:
            raise ConfigError(f"{source}: {where}.type is required")
        unit = _typed(raw["id"], int, f"{where}.id", source)
        if not 1 <= unit <= MAX_UNIT:
            raise ConfigError(f"{source}: {where}.id must be 1..{MAX_UNIT}, not {unit}")
        if unit in seen:
            raise ConfigError(f"{source}: {where}.id {unit} is already used by {seen[unit]}")
        kind = raw["type"]
        _check_choice(kind, BOARD_TYPES, f"{where}.type", source)
        bname = _typed(raw.get("name", f"{kind}-{unit}"), str, f"{where}.name", source)
        if bname in names:
            raise ConfigError(f"{source}: {where}.name {bname!r} is used twice")
        runtime = raw.get("runtime", default_runtime)
        _check_choice(runtime, RUNTIMES, f"{where}.runtime", source)
        firmware = raw.get("firmware", default_firmware)
        _check_choice(firmware, FIRMWARE_FORMATS, f"{where}.firmware", source)
        plant_raw = raw.get("plant", {})
        if not isinstance(plant_raw, dict):
            raise ConfigError(f"{source}: {where}.plant must be a table")
        allowed = SHELF_PLANT_KEYS if kind == "power_shelf" else _cdu_plant_keys()
        _unknown(plant_raw, set(allowed), f"{where}.plant", source)
        plant = {k: _typed(v, allowed[k], f"{where}.plant.{k}", source) for k, v in plant_raw.items()}
        seen[unit] = where
        names.add(bname)
        boards.append(BoardSpec(unit, kind, bname, runtime, plant, firmware))
    return RackSpec(tuple(boards), line, seed, name, plant_step, source)


def loads(text: str, source: str = "<memory>") -> RackSpec:
    """Parse rack TOML text."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return parse(doc, source)


def load(path: str | Path) -> RackSpec:
    """Load and validate a rack file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read rack file: {exc.strerror or exc}") from None
    return loads(text, str(path))


def default_path() -> Path:
    """``examples/rack.toml`` of the source tree (the rack ``rackctl sim`` uses by default)."""
    return Path(__file__).resolve().parents[2] / "examples" / "rack.toml"


def default(runtime: str | None = None) -> RackSpec:
    """The default rack: two power shelves (ids 1, 2), two CDUs (ids 3, 4), 115200 8E1."""
    path = default_path()
    spec = load(path) if path.exists() else builtin_default()
    return spec.with_runtime(runtime) if runtime else spec


def builtin_default() -> RackSpec:
    """The default rack without reading a file (installed package without examples/)."""
    return parse(
        {
            "rack": {"name": "default", "seed": 1, "runtime": "vm"},
            "boards": [
                {"id": 1, "type": "power_shelf", "name": "shelf-1"},
                {"id": 2, "type": "power_shelf", "name": "shelf-2"},
                {"id": 3, "type": "cdu", "name": "cdu-1"},
                {"id": 4, "type": "cdu", "name": "cdu-2"},
            ],
        },
        "<builtin default rack>",
    )
