"""The register model (Register, Block, RegisterMap) and the register word codec.

:mod:`rackproto.regmap` builds these objects from the TOML maps. Everything
that turns a register value into words (and back) lives here too, so the host
decoder (:meth:`RegisterMap.decode`), the generated Construct structs and the
firmware tables agree on one definition:

* 16-bit registers are one word; 32-bit integers and ``f32`` are two words, the
  high word first (the order ``rackfw.regbank.RegBank.set_ir32`` writes);
* ``string[n]``/``bytes[n]`` hold ``n`` octets, two per word, big-endian within
  the word, padded with NUL;
* ``scale`` turns the raw integer into engineering units (``value = raw * scale``),
  and ``min``/``max`` are given in engineering units.
"""

from __future__ import annotations

import math
import re
import struct
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from rackproto.errors import RangeError

TABLES = ("coil", "discrete", "input", "holding")
BIT_TABLES = ("coil", "discrete")
ACCESS = ("ro", "rw", "protected")
ACCESS_CODE = {"ro": 0, "rw": 1, "protected": 2}

#: base type -> (words, signed, raw min, raw max)
INT_TYPES: dict[str, tuple[int, bool, int, int]] = {
    "u16": (1, False, 0, 0xFFFF),
    "i16": (1, True, -0x8000, 0x7FFF),
    "u32": (2, False, 0, 0xFFFFFFFF),
    "i32": (2, True, -0x80000000, 0x7FFFFFFF),
    "flags16": (1, False, 0, 0xFFFF),
    "enum": (1, False, 0, 0xFFFF),
    "bool": (1, False, 0, 1),
}
F32_MAX = 3.4028234663852886e38
SIZED_TYPE = re.compile(r"^(string|bytes)\[(\d+)\]$")
UNNAMED_BIT = re.compile(r"^bit(\d+)$")  # a set flag bit the map gives no name


@dataclass(frozen=True)
class TypeInfo:
    """A parsed ``type =`` string: base name, words on the wire, octets for strings."""

    base: str
    words: int
    length: int = 0  # octets, for string/bytes

    @property
    def signed(self) -> bool:
        return self.base in ("i16", "i32")


def parse_type(text: str) -> TypeInfo | None:
    """Parse ``u16``/``i32``/``f32``/``string[16]``/... ; None when unknown."""
    if text in INT_TYPES:
        return TypeInfo(text, INT_TYPES[text][0])
    if text == "f32":
        return TypeInfo("f32", 2)
    m = SIZED_TYPE.match(text)
    if m and int(m.group(2)) > 0:
        n = int(m.group(2))
        return TypeInfo(m.group(1), (n + 1) // 2, n)
    return None


def scale_digits(scale: float) -> int:
    """Decimal places a scaled value needs (0.01 -> 2, 0.5 -> 1, 10 -> 0)."""
    exp = Decimal(repr(scale)).normalize().as_tuple().exponent
    return max(0, -int(exp))


@dataclass(frozen=True)
class Register:
    """One register (or coil/discrete bit) of a map, after repeated blocks are expanded.

    ``min``/``max`` are engineering units (raw * scale); ``raw_min``/``raw_max``
    are what the firmware compares a written word against. For strings and byte
    windows they are None.
    """

    name: str
    table: str
    address: int
    type: str
    count: int
    scale: float = 1
    unit: str = ""
    access: str = "ro"
    min: float | None = None
    max: float | None = None
    description: str = ""
    poll: float | None = None
    block: str = ""
    bits: dict[str, int] | None = None
    enum: dict[str, int] | None = None
    length: int = 0
    default: Any = None
    persist: bool = False
    source: str = ""
    member: str = ""
    index: int | None = None
    set_name: str = ""  # name of the flags/enum set (for generated constants)

    @property
    def signed(self) -> bool:
        return self.type in ("i16", "i32")

    @property
    def end(self) -> int:
        """First address after this register."""
        return self.address + self.count

    @property
    def scaled(self) -> bool:
        return self.scale != 1

    @property
    def digits(self) -> int:
        return scale_digits(self.scale)

    @property
    def raw_min(self) -> int | float | None:
        return None if self.min is None else to_raw_number(self, self.min)

    @property
    def raw_max(self) -> int | float | None:
        return None if self.max is None else to_raw_number(self, self.max)

    @property
    def type_label(self) -> str:
        if self.type in ("string", "bytes"):
            return f"{self.type}[{self.length}]"
        return self.type

    def __hash__(self) -> int:
        return hash((self.name, self.table, self.address))

    def __repr__(self) -> str:
        return f"<Register {self.name} {self.table} {self.address} {self.type_label}>"


@dataclass(frozen=True)
class Value:
    """One decoded register: the raw wire value and the engineering value with its unit."""

    register: Register
    raw: Any
    value: Any
    unit: str

    @property
    def name(self) -> str:
        return self.register.name


@dataclass
class Block:
    """A contiguous run of registers the host reads in one request.

    Repeated declarations (``count``/``stride``) yield one Block per instance
    (``psu1`` … ``psu6``); ``template`` names the declaration they came from.
    """

    name: str
    table: str
    base: int
    size: int
    poll: float | None
    description: str
    template: str
    index: int | None
    registers: list[Register] = field(default_factory=list)

    @property
    def end(self) -> int:
        return self.base + self.size


@dataclass
class BlockDecl:
    """A block as declared in TOML (before repeated blocks are expanded).

    The firmware generator uses it for ``<BLOCK>_BASE/_STRIDE/_COUNT`` and the
    member offsets; ``members`` are the template registers at offset addresses.
    """

    name: str
    table: str
    base: int
    count: int
    stride: int
    prefix: str
    poll: float | None
    description: str
    source: str
    members: list[Register] = field(default_factory=list)

    @property
    def repeated(self) -> bool:
        return self.count > 1 or self.prefix != ""

    @property
    def span(self) -> int:
        return self.count * self.stride


class RegisterMap:
    """One board's registers, flat and expanded, plus the blocks the host polls."""

    def __init__(
        self,
        name: str,
        title: str,
        version: int,
        board_type: int | None,
        sources: list[str],
        decls: list[BlockDecl],
        blocks: list[Block],
        flag_sets: dict[str, dict[str, int]],
        enum_sets: dict[str, dict[str, int]],
    ) -> None:
        self.name = name
        self.title = title
        self.version = version
        self.board_type = board_type
        self.sources = sources
        self.decls = decls
        self.blocks = blocks
        self.flag_sets = flag_sets
        self.enum_sets = enum_sets
        self.registers: list[Register] = [r for b in blocks for r in b.registers]
        self._by_name = {r.name: r for r in self.registers}
        self._by_table: dict[str, list[Register]] = {t: [] for t in TABLES}
        for r in sorted(self.registers, key=lambda r: r.address):
            self._by_table[r.table].append(r)
        self._starts = {t: [r.address for r in regs] for t, regs in self._by_table.items()}

    def __repr__(self) -> str:
        return f"<RegisterMap {self.name} v{self.version}: {len(self.registers)} registers>"

    def get(self, name: str) -> Register:
        """The register called ``name`` (KeyError with the map name when unknown)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"map '{self.name}' has no register '{name}'") from None

    def __contains__(self, name: str) -> bool:
        return name in self._by_name

    def table(self, table: str) -> list[Register]:
        """Registers of one table, by address."""
        return list(self._by_table[table])

    def table_size(self, table: str) -> int:
        """Dense size of a table: one past the highest address used (0 when empty)."""
        regs = self._by_table[table]
        return max((r.end for r in regs), default=0)

    def block(self, name: str) -> Block:
        for b in self.blocks:
            if b.name == name:
                return b
        raise KeyError(f"map '{self.name}' has no block '{name}'")

    def decode(self, table: str, start: int, words: Iterable[int]) -> list[Value]:
        """Decode a read of ``words`` (bits for coil/discrete) starting at ``start``.

        Returns one Value per register that lies wholly inside the read, in address
        order; words in gaps and registers cut by the read's edges are skipped.
        """
        data = list(words)
        end = start + len(data)
        regs = self._by_table[table]
        out = []
        for i in range(bisect_left(self._starts[table], start), len(regs)):
            reg = regs[i]
            if reg.end > end:
                if reg.address >= end:
                    break
                continue
            out.append(decode_words(reg, data[reg.address - start : reg.end - start]))
        return out

    def encode_value(self, register: Register | str, value: Any) -> list[int]:
        """Words to write for ``value`` (engineering units); RangeError when out of range."""
        reg = self.get(register) if isinstance(register, str) else register
        return encode_value(reg, value)


# ---------------------------------------------------------------- raw <-> value


def to_raw_number(reg: Register, value: float) -> int | float:
    """Engineering number -> raw number (no range check); f32 stays float."""
    if reg.type == "f32":
        return float(value)
    if reg.scale == 1:
        return int(round(value))
    return int(round(Decimal(repr(float(value))) / Decimal(repr(reg.scale))))


def from_raw_number(reg: Register, raw: int | float) -> int | float:
    """Raw number -> engineering number, rounded to the scale's resolution."""
    if reg.type == "f32":
        return float(raw)
    if reg.scale == 1:
        return int(raw)
    return round(raw * reg.scale, reg.digits)


def value_from_raw(reg: Register, raw: Any) -> Any:
    """Engineering value of a raw word value: names for flags/enums, str for strings."""
    if reg.type == "flags16":
        names = {bit: name for name, bit in (reg.bits or {}).items()}
        return [names.get(bit, f"bit{bit}") for bit in range(16) if raw >> bit & 1]
    if reg.type == "enum":
        for name, val in (reg.enum or {}).items():
            if val == raw:
                return name
        return int(raw)
    if reg.type == "string":
        return bytes(raw).rstrip(b"\x00").decode("ascii", "replace")
    if reg.type == "bytes":
        return bytes(raw)
    if reg.type == "bool":
        return bool(raw)
    return from_raw_number(reg, raw)


def _range_error(reg: Register, value: Any, why: str = "") -> RangeError:
    span = f"[{reg.min}, {reg.max}]" if reg.min is not None else "its type"
    unit = f" {reg.unit}" if reg.unit else ""
    extra = f" ({why})" if why else ""
    return RangeError(
        f"register '{reg.name}' ({reg.table} {reg.address}): {value!r} is outside "
        f"{span}{unit}{extra}"
    )


def raw_from_value(reg: Register, value: Any) -> Any:
    """Engineering value -> raw value, checked against the register's range.

    Raises RangeError naming the register and its range.
    """
    t = reg.type
    if t == "flags16":
        bits = reg.bits or {}
        if isinstance(value, int) and not isinstance(value, bool):
            raw = value
        else:
            raw = 0
            for name in value:
                m = UNNAMED_BIT.match(name)
                if name in bits:
                    raw |= 1 << bits[name]
                elif m and int(m.group(1)) < 16:
                    raw |= 1 << int(m.group(1))
                else:
                    raise _range_error(reg, value, f"unknown flag {name!r}; flags: {sorted(bits)}")
        lo, hi = int(reg.raw_min or 0), int(reg.raw_max if reg.raw_max is not None else 0xFFFF)
        if not lo <= raw <= hi:
            raise _range_error(reg, value)
        return raw
    if t == "enum":
        values = reg.enum or {}
        if isinstance(value, str):
            if value not in values:
                raise _range_error(reg, value, f"not one of {sorted(values)}")
            raw = values[value]
        else:
            raw = int(value)
        if not (reg.raw_min is not None and reg.raw_min <= raw <= reg.raw_max):  # type: ignore[operator]
            raise _range_error(reg, value)
        return raw
    if t in ("string", "bytes"):
        data = value.encode("ascii") if isinstance(value, str) else bytes(value)
        if len(data) > reg.length:
            raise RangeError(
                f"register '{reg.name}' ({reg.table} {reg.address}): {len(data)} octets "
                f"do not fit {reg.type_label}"
            )
        return data.ljust(reg.count * 2, b"\x00")
    if t == "bool":
        return 1 if value else 0
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _range_error(reg, value, "not a number")
    if t == "f32":
        if math.isnan(value) or not (reg.min <= value <= reg.max):  # type: ignore[operator]
            raise _range_error(reg, value)
        return float(value)
    if math.isnan(value) or math.isinf(value):
        raise _range_error(reg, value)
    number = to_raw_number(reg, value)
    if not (reg.raw_min <= number <= reg.raw_max):  # type: ignore[operator]
        raise _range_error(reg, value)
    return number


def raw_to_words(reg: Register, raw: Any) -> list[int]:
    """Raw value -> Modbus words (32-bit high word first, strings big-endian per word)."""
    t = reg.type
    if t in ("string", "bytes"):
        data = bytes(raw).ljust(reg.count * 2, b"\x00")
        return list(struct.unpack(f">{reg.count}H", data[: reg.count * 2]))
    if t == "f32":
        hi, lo = struct.unpack(">HH", struct.pack(">f", raw))
        return [hi, lo]
    if reg.count == 2:
        u = int(raw) & 0xFFFFFFFF
        return [u >> 16, u & 0xFFFF]
    return [int(raw) & 0xFFFF]


def words_to_raw(reg: Register, words: list[int] | tuple[int, ...]) -> Any:
    """Modbus words -> raw value (sign applied, strings as NUL-padded bytes)."""
    t = reg.type
    if len(words) != reg.count:
        raise ValueError(f"register '{reg.name}' needs {reg.count} words, got {len(words)}")
    if t in ("string", "bytes"):
        return struct.pack(f">{reg.count}H", *words)[: reg.length]
    if t == "f32":
        return struct.unpack(">f", struct.pack(">HH", *words))[0]
    if reg.count == 2:
        u = (words[0] & 0xFFFF) << 16 | (words[1] & 0xFFFF)
        return u - (1 << 32) if t == "i32" and u & 0x80000000 else u
    u = words[0] & 0xFFFF
    if t == "i16" and u & 0x8000:
        return u - 0x10000
    if t == "bool":
        return 1 if u else 0
    return u


def encode_value(reg: Register, value: Any) -> list[int]:
    """Engineering value -> words, range-checked (RangeError names the register)."""
    return raw_to_words(reg, raw_from_value(reg, value))


def decode_words(reg: Register, words: list[int] | tuple[int, ...]) -> Value:
    """Words -> Value(register, raw, value, unit)."""
    raw = words_to_raw(reg, words)
    return Value(reg, raw, value_from_raw(reg, raw), reg.unit)
