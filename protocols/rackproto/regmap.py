"""Load a register map (TOML) into one validated :class:`RegisterMap`.

The TOML maps under ``rackproto/maps/`` are the single source of truth: the
firmware tables, the Construct structs and the register docs are all generated
from the object this module returns, so every check a map can fail lives here
and raises :class:`rackproto.errors.MapError` naming the file and the register.
The schema is described in ``docs/contracts.md`` ("Register maps").
"""

from __future__ import annotations

import keyword
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

from rackproto.errors import MapError
from rackproto.regtypes import (
    ACCESS,
    BIT_TABLES,
    F32_MAX,
    INT_TYPES,
    TABLES,
    UNNAMED_BIT,
    Block,
    BlockDecl,
    Register,
    RegisterMap,
    Value,
    encode_value,
    parse_type,
    scale_digits,
)

__all__ = [
    "MAP_NAMES",
    "Block",
    "BlockDecl",
    "Register",
    "RegisterMap",
    "Value",
    "load",
    "load_path",
]

MAPS_DIR = Path(__file__).parent / "maps"
MAP_NAMES = ("common", "power_shelf", "cdu")
MAX_READ_REGS = 125  # Modbus: at most 125 registers per read request
MAX_READ_BITS = 2000  # Modbus: at most 2000 coils/discretes per read request
MAX_TABLE_WORDS = 512  # firmware keeps each register table as one dense array

RESERVED_IDENTIFIERS = (
    "REGMAP_VERSION", "REGMAP_BOARD_TYPE", "IR_SIZE", "HR_SIZE", "COIL_SIZE", "DI_SIZE",
    "HR_MIN", "HR_MAX", "HR_ACCESS", "HR_SIGNED", "HR_DEFAULT", "HR_PERSIST", "CONST",
)  # fmt: skip
REG_KEYS = {
    "name", "offset", "type", "scale", "unit", "access", "min", "max", "default",
    "persist", "poll", "desc", "flags", "enum", "bits", "values",
}  # fmt: skip
BLOCK_KEYS = {
    "name", "table", "base", "count", "stride", "prefix", "poll", "desc", "registers",
}  # fmt: skip


# ------------------------------------------------------------------ loading


def load(name: str) -> RegisterMap:
    """Load a packaged map by name (``common``, ``power_shelf``, ``cdu``)."""
    path = MAPS_DIR / f"{name}.toml"
    if not path.is_file():
        raise MapError(f"no register map '{name}' (looked for {path})")
    return load_path(path)


def load_path(path: str | Path) -> RegisterMap:
    """Load and validate a map file; ``include``d maps resolve next to it."""
    return _Loader().load(Path(path))


class _Loader:
    def __init__(self) -> None:
        self.flag_sets: dict[str, dict[str, int]] = {}
        self.enum_sets: dict[str, dict[str, int]] = {}
        self.decls: list[BlockDecl] = []
        self.sources: list[str] = []
        self._loading: list[str] = []

    # ---- file level

    def load(self, path: Path) -> RegisterMap:
        doc = self._read(path)
        head = doc.get("map", {})
        self._file(path, doc)
        blocks = self._expand()
        self._check_names(blocks)
        self._check_overlaps(blocks)
        self._check_tables(path.name, blocks)
        self._check_identifiers(blocks)
        return RegisterMap(
            name=head.get("name", path.stem),
            title=head.get("title", path.stem),
            version=int(head.get("version", 1)),
            board_type=head.get("board_type"),
            sources=self.sources,
            decls=self.decls,
            blocks=blocks,
            flag_sets=self.flag_sets,
            enum_sets=self.enum_sets,
        )

    def _read(self, path: Path) -> dict[str, Any]:
        try:
            with path.open("rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            raise MapError(f"{path.name}: file not found ({path})") from None
        except tomllib.TOMLDecodeError as exc:
            raise MapError(f"{path.name}: not valid TOML: {exc}") from None

    def _file(self, path: Path, doc: dict[str, Any]) -> None:
        src = path.name
        if src in self._loading:
            raise MapError(f"{src}: include cycle via {' -> '.join(self._loading)}")
        self._loading.append(src)
        for inc in doc.get("map", {}).get("include", []):
            self._file(path.parent / f"{inc}.toml", self._read(path.parent / f"{inc}.toml"))
        self.sources.append(src)
        for set_name, bits in doc.get("flags", {}).items():
            self._add_set(src, "flags", self.flag_sets, set_name, bits, 15)
        for set_name, values in doc.get("enums", {}).items():
            self._add_set(src, "enum", self.enum_sets, set_name, values, 0xFFFF)
        for raw in doc.get("blocks", []):
            self.decls.append(self._block(src, raw))
        self._loading.pop()

    def _add_set(
        self, src: str, kind: str, store: dict[str, dict[str, int]], name: str, items: Any, top: int
    ) -> None:
        if not name.isidentifier() or name != name.lower():
            raise MapError(f"{src}: {kind} set name {name!r} is not a lower-case identifier")
        if name in store:
            raise MapError(f"{src}: {kind} set '{name}' is declared twice")
        store[name] = self._named_ints(src, f"{kind} set '{name}'", items, top)
        if kind == "flags":
            for bit_name in items:
                if UNNAMED_BIT.match(bit_name):
                    raise MapError(
                        f"{src}: flags set '{name}': '{bit_name}' is reserved for unnamed bits"
                    )

    @staticmethod
    def _named_ints(src: str, what: str, items: Any, top: int) -> dict[str, int]:
        if not isinstance(items, dict) or not items:
            raise MapError(f"{src}: {what} must be a non-empty table of name = number")
        seen: dict[int, str] = {}
        for k, v in items.items():
            if not k.isidentifier() or keyword.iskeyword(k) or k != k.lower():
                raise MapError(f"{src}: {what}: '{k}' is not a lower-case identifier")
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
                raise MapError(f"{src}: {what}: '{k}' = {v!r} is not in 0..{top}")
            if v in seen:
                raise MapError(f"{src}: {what}: '{k}' and '{seen[v]}' share the value {v}")
            seen[v] = k
        return dict(items)

    # ---- blocks and registers

    def _block(self, src: str, raw: dict[str, Any]) -> BlockDecl:
        name = raw.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            raise MapError(f"{src}: block without a valid name: {raw.get('name')!r}")
        where = f"{src}: block '{name}'"
        unknown = set(raw) - BLOCK_KEYS
        if unknown:
            raise MapError(f"{where}: unknown keys {sorted(unknown)}")
        table = raw.get("table")
        if table not in TABLES:
            raise MapError(f"{where}: table {table!r} is not one of {list(TABLES)}")
        base = raw.get("base")
        if not isinstance(base, int) or not 0 <= base <= 0xFFFF:
            raise MapError(f"{where}: base {base!r} is not an address 0..65535")
        count = raw.get("count", 1)
        stride = raw.get("stride", 0)
        if not isinstance(count, int) or count < 1:
            raise MapError(f"{where}: count {count!r} must be >= 1")
        if count > 1 and (not isinstance(stride, int) or stride < 1):
            raise MapError(f"{where}: a repeated block needs stride >= 1")
        prefix = raw.get("prefix", name if count > 1 else "")
        decl = BlockDecl(
            name=name,
            table=table,
            base=base,
            count=count,
            stride=stride,
            prefix=prefix,
            poll=_poll(where, raw.get("poll")),
            description=raw.get("desc", ""),
            source=src,
        )
        regs = raw.get("registers", [])
        if not regs:
            raise MapError(f"{where}: has no registers")
        for r in regs:
            decl.members.append(self._register(src, decl, r))
        size = max(m.address + m.count for m in decl.members)
        if decl.stride == 0:
            decl.stride = size
        elif size > decl.stride:
            worst = max(decl.members, key=lambda m: m.address + m.count)
            raise MapError(
                f"{src}: register '{worst.name}': offset {worst.address} + {worst.count} "
                f"words exceeds the stride {decl.stride} of block '{name}'"
            )
        return decl

    def _register(self, src: str, decl: BlockDecl, r: dict[str, Any]) -> Register:
        name = r.get("name")
        if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
            raise MapError(f"{src}: block '{decl.name}': bad register name {name!r}")
        where = f"{src}: register '{name}'"
        unknown = set(r) - REG_KEYS
        if unknown:
            raise MapError(f"{where}: unknown keys {sorted(unknown)}")
        offset = r.get("offset")
        if not isinstance(offset, int) or offset < 0:
            raise MapError(f"{where}: offset {offset!r} must be an int >= 0")
        ttext = r.get("type", "bool" if decl.table in BIT_TABLES else None)
        ti = parse_type(ttext) if isinstance(ttext, str) else None
        if ti is None:
            raise MapError(
                f"{where}: unknown type {ttext!r} (u16, i16, u32, i32, f32, string[n], "
                f"bytes[n], flags16, enum, bool)"
            )
        if (decl.table in BIT_TABLES) != (ti.base == "bool"):
            raise MapError(f"{where}: type {ttext} does not fit the {decl.table} table")
        access = r.get("access", "ro" if decl.table in ("input", "discrete") else "rw")
        if access not in ACCESS:
            raise MapError(f"{where}: access {access!r} is not one of {list(ACCESS)}")
        if access != "ro" and decl.table in ("input", "discrete"):
            raise MapError(f"{where}: {decl.table} registers are read-only (access {access!r})")
        for key in ("unit", "desc"):
            if not isinstance(r.get(key, ""), str):
                raise MapError(f"{where}: {key} must be a string, got {r[key]!r}")
        scale = r.get("scale", 1)
        if not isinstance(scale, int | float) or isinstance(scale, bool) or scale <= 0:
            raise MapError(f"{where}: scale {scale!r} must be a positive number")
        if scale != 1 and ti.base not in ("u16", "i16", "u32", "i32"):
            raise MapError(f"{where}: scale applies to integer types only, not {ttext}")
        bits, enum, set_name = self._named(src, where, name, ti.base, r)
        reg = Register(
            name=name,
            table=decl.table,
            address=offset,
            type=ti.base,
            count=ti.words,
            scale=scale,
            unit=r.get("unit", ""),
            access=access,
            description=r.get("desc", ""),
            poll=_poll(where, r.get("poll", decl.poll)),
            bits=bits,
            enum=enum,
            length=ti.length,
            persist=bool(r.get("persist", False)),
            source=src,
            member=name,
            set_name=set_name,
        )
        return self._ranged(where, reg, r)

    def _named(
        self, src: str, where: str, name: str, base: str, r: dict[str, Any]
    ) -> tuple[dict[str, int] | None, dict[str, int] | None, str]:
        """Resolve the bit/value names of a flags16/enum register (inline sets get its name)."""
        if base == "flags16":
            if "bits" in r:
                self._add_set(src, "flags", self.flag_sets, name, r["bits"], 15)
                return self.flag_sets[name], None, name
            set_name = r.get("flags")
            if set_name not in self.flag_sets:
                raise MapError(
                    f"{where}: flags16 needs bits = {{...}} or a known flags set, got {set_name!r}"
                )
            return self.flag_sets[set_name], None, set_name
        if base == "enum":
            if "values" in r:
                self._add_set(src, "enum", self.enum_sets, name, r["values"], 0xFFFF)
                return None, self.enum_sets[name], name
            set_name = r.get("enum")
            if set_name not in self.enum_sets:
                raise MapError(
                    f"{where}: enum needs values = {{...}} or a known enum set, got {set_name!r}"
                )
            return None, self.enum_sets[set_name], set_name
        if any(k in r for k in ("bits", "flags", "values", "enum")):
            raise MapError(f"{where}: bits/flags/values/enum only apply to flags16/enum registers")
        return None, None, ""

    def _ranged(self, where: str, reg: Register, r: dict[str, Any]) -> Register:
        """Fill min/max/default in engineering units and check them against the type."""
        t = reg.type
        if t in ("string", "bytes", "bool"):
            if "min" in r or "max" in r:
                raise MapError(f"{where}: {reg.type_label} registers take no min/max")
            return _replace(reg, default=r.get("default"))
        if t == "f32":
            lo_raw, hi_raw = -F32_MAX, F32_MAX
        else:
            _, _, lo_raw, hi_raw = INT_TYPES[t]
        if t == "flags16":
            hi_raw = (1 << (max(reg.bits.values()) + 1)) - 1  # type: ignore[union-attr]
            lo_raw = 0
        elif t == "enum":
            lo_raw, hi_raw = min(reg.enum.values()), max(reg.enum.values())  # type: ignore[union-attr]
        digits = scale_digits(reg.scale)
        tlo = round(lo_raw * reg.scale, digits) if t != "f32" else lo_raw
        thi = round(hi_raw * reg.scale, digits) if t != "f32" else hi_raw
        lo, hi = r.get("min", tlo), r.get("max", thi)
        for key, v in (("min", lo), ("max", hi)):
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise MapError(f"{where}: {key} {v!r} is not a number")
        if lo > hi:
            raise MapError(f"{where}: bad range: min {lo} > max {hi}")
        if t == "f32" and (lo < -F32_MAX or hi > F32_MAX):
            raise MapError(f"{where}: bad range [{lo}, {hi}]: outside what f32 holds")
        reg = _replace(reg, min=lo, max=hi)
        if t != "f32":
            rlo, rhi = reg.raw_min, reg.raw_max
            if rlo < lo_raw or rhi > hi_raw:  # type: ignore[operator]
                raise MapError(
                    f"{where}: bad range [{lo}, {hi}]: raw [{rlo}, {rhi}] at scale {reg.scale} "
                    f"is outside what {t} holds [{lo_raw}, {hi_raw}]"
                )
            for key, v in (("min", lo), ("max", hi)):
                if abs(round(v / reg.scale) * reg.scale - v) > reg.scale * 1e-6:
                    raise MapError(f"{where}: {key} {v} is not a multiple of the scale {reg.scale}")
        default = r.get("default")
        if default is not None:
            try:
                encode_value(reg, default)
            except ValueError as exc:
                raise MapError(
                    f"{where}: default {default!r} is outside its range: {exc}"
                ) from None
        return _replace(reg, default=default)

    # ---- expansion and whole-map checks

    def _expand(self) -> list[Block]:
        blocks = []
        for d in self.decls:
            for i in range(d.count):
                base = d.base + i * d.stride
                index = i + 1 if d.repeated else None
                bname = f"{d.name}{index}" if index else d.name
                block = Block(
                    name=bname,
                    table=d.table,
                    base=base,
                    size=d.stride,
                    poll=d.poll,
                    description=d.description,
                    template=d.name,
                    index=index,
                )
                for m in d.members:
                    name = f"{d.prefix}{index}_{m.name}" if index else m.name
                    if base + m.address + m.count > 0x10000:
                        raise MapError(f"{d.source}: register '{name}': address beyond 65535")
                    block.registers.append(
                        _replace(m, name=name, address=base + m.address, block=bname, index=index)
                    )
                block.registers.sort(key=lambda r: r.address)
                blocks.append(block)
        return blocks

    def _check_names(self, blocks: list[Block]) -> None:
        seen: dict[str, Register] = {}
        bnames: dict[str, str] = {}
        for b in blocks:
            if b.name in bnames:
                raise MapError(f"{b.registers[0].source}: duplicate block name '{b.name}'")
            bnames[b.name] = b.registers[0].source
            for r in b.registers:
                if r.name in seen:
                    first = seen[r.name]
                    raise MapError(
                        f"{r.source}: register '{r.name}': duplicate name (first declared in "
                        f"{first.source} at {first.table} {first.address})"
                    )
                seen[r.name] = r

    def _check_overlaps(self, blocks: list[Block]) -> None:
        for table in TABLES:
            regs = sorted(
                (r for b in blocks for r in b.registers if r.table == table),
                key=lambda r: r.address,
            )
            for prev, cur in zip(regs, regs[1:], strict=False):
                if cur.address < prev.end:
                    raise MapError(
                        f"{cur.source}: register '{cur.name}' ({table} {cur.address}) overlaps "
                        f"'{prev.name}' ({table} {prev.address}..{prev.end - 1}, {prev.source})"
                    )

    def _check_identifiers(self, blocks: list[Block]) -> None:
        """Names the firmware module will define must not collide (EVENT_COUNT twice...)."""
        owners: dict[str, str] = {n: "(generated module)" for n in RESERVED_IDENTIFIERS}

        def claim(ident: str, src: str, what: str) -> None:
            ident = ident.upper()
            if ident in owners:
                raise MapError(
                    f"{src}: {what}: firmware constant {ident} collides with {owners[ident]}"
                )
            owners[ident] = f"{what} ({src})"

        for b in blocks:
            for r in b.registers:
                claim(r.name, r.source, f"register '{r.name}'")
                if r.type in ("string", "bytes"):
                    claim(f"{r.name}_words", r.source, f"register '{r.name}'")
        for set_name, bits in self.flag_sets.items():
            for bit in bits:
                claim(f"f_{set_name}_{bit}", "flags", f"flag '{set_name}.{bit}'")
        for set_name, values in self.enum_sets.items():
            for v in values:
                claim(f"e_{set_name}_{v}", "enums", f"enum value '{set_name}.{v}'")
        for d in self.decls:
            if d.repeated:
                for suffix in ("base", "stride", "count"):
                    claim(f"{d.name}_{suffix}", d.source, f"block '{d.name}'")
                for m in d.members:
                    claim(
                        f"{d.name}_{m.name}", d.source, f"register '{m.name}' of block '{d.name}'"
                    )

    def _check_tables(self, src: str, blocks: list[Block]) -> None:
        for b in blocks:
            limit = MAX_READ_BITS if b.table in BIT_TABLES else MAX_READ_REGS
            if b.size > limit:
                raise MapError(
                    f"{b.registers[0].source}: block '{b.name}' spans {b.size} {b.table} "
                    f"addresses ({b.base}..{b.end - 1}); a telemetry block must fit one read "
                    f"(<= {limit}) - split it"
                )
        for table in ("input", "holding"):
            size = max((r.end for b in blocks for r in b.registers if r.table == table), default=0)
            if size > MAX_TABLE_WORDS:
                raise MapError(
                    f"{src}: the {table} table needs {size} words; keep it under "
                    f"{MAX_TABLE_WORDS} (firmware stores it densely)"
                )


def _poll(where: str, v: Any) -> float | None:
    """A poll interval in seconds (None: not polled)."""
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or v <= 0:
        raise MapError(f"{where}: poll {v!r} must be a positive number of seconds")
    return float(v)


def _replace(reg: Register, **changes: Any) -> Register:
    return replace(reg, **changes)
