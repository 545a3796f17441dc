"""Generate ``rackproto/generated/blocks_<map>.py``: one Construct struct per block.

A struct covers a block's whole span (``stride`` words for repeated blocks, gaps
as ``Padding``), big-endian words, so ``STRUCT.parse(payload)`` decodes the
bytes of one Modbus read of that block into typed, scaled values with units
(:class:`rackproto.generated.Scaled`), and ``build`` encodes them back.
Coil/discrete blocks are bit lists, not byte structures: RegisterMap.decode
handles those.
"""

from __future__ import annotations

import json
import re

from rackproto.codegen.firmware import HEADER
from rackproto.regmap import BlockDecl, RegisterMap
from rackproto.regtypes import Register

CONSTRUCT_NAMES = (
    "Bytes", "Enum", "FlagsEnum", "Float32b", "Int16sb", "Int16ub", "Int32sb", "Int32ub",
    "PaddedString", "Padding", "Struct",
)  # fmt: skip
INT_FIELDS = {"u16": "Int16ub", "i16": "Int16sb", "u32": "Int32ub", "i32": "Int32sb"}


def _q(text: str) -> str:
    """A double-quoted Python string literal (the repo's ruff format style)."""
    return json.dumps(text, ensure_ascii=False)


def _field(r: Register) -> str:
    t = r.type
    if t in INT_FIELDS:
        if r.scale == 1 and not r.unit:
            return INT_FIELDS[t]
        return f"Scaled({INT_FIELDS[t]}, {r.scale!r}, {r.digits}, {_q(r.unit)})"
    if t == "f32":
        return "Float32b"
    if t == "string":
        return f'PaddedString({r.count * 2}, "ascii")'
    if t == "bytes":
        return f"Bytes({r.count * 2})"
    if t == "flags16":
        masks = ", ".join(f"{k}={1 << v:#06x}" for k, v in (r.bits or {}).items())
        return f"FlagsEnum(Int16ub, {masks})"
    if t == "enum":
        values = ", ".join(f"{k}={v}" for k, v in (r.enum or {}).items())
        return f"Enum(Int16ub, {values})"
    raise ValueError(f"register '{r.name}': no Construct field for type {t}")


def _struct(d: BlockDecl) -> list[str]:
    lines = [f"{d.name.upper()} = Struct("]
    pos = 0
    for m in d.members:
        if m.address > pos:
            lines.append(f"    Padding({2 * (m.address - pos)}),  # {pos}..{m.address - 1} unused")
        lines.append(f"    {_q(m.name)} / {_field(m)},  # +{m.address}")
        pos = m.address + m.count
    if d.stride > pos:
        lines.append(f"    Padding({2 * (d.stride - pos)}),  # {pos}..{d.stride - 1} unused")
    lines.append(")")
    return lines


def construct_module(rmap: RegisterMap) -> str:
    """Return the source of ``rackproto/generated/blocks_<map>.py`` for ``rmap``."""
    decls = [d for d in rmap.decls if d.table in ("input", "holding")]
    out = [
        f'"""Construct structs for the blocks of register map \'{rmap.name}\' v{rmap.version}.',
        "",
        f"{HEADER}",
        f"from {', '.join(f'rackproto/maps/{s}' for s in rmap.sources)}.",
        "",
        "Each struct parses the bytes of one read of its block (big-endian words) into",
        "scaled values with units and builds them back. BLOCKS maps every block instance",
        "to (table, base address, struct); STRUCTS maps declarations to structs.",
        '"""',
        "",
    ]
    body: list[str] = []
    for d in decls:
        where = (
            f"{d.count} x {d.stride} {d.table} registers from {d.base}"
            if d.repeated
            else f"{d.table} {d.base}..{d.base + d.stride - 1}"
        )
        body += ["", "", f"# {d.name}: {where}. {d.description}"]
        body += _struct(d)
    text = "\n".join(body)
    used = sorted(n for n in CONSTRUCT_NAMES if re.search(rf"\b{n}\b", text))
    out += ["from construct import ("] + [f"    {n}," for n in used] + [")", ""]
    if "Scaled(" in text:
        out += ["from rackproto.generated import Scaled", ""]
    out += [f"MAP_NAME = {_q(rmap.name)}", f"MAP_VERSION = {rmap.version}", "", "# fmt: off"]
    out += body
    out += ["", "STRUCTS = {"]
    out += [f"    {_q(d.name)}: {d.name.upper()}," for d in decls]
    out += ["}", "", "BLOCKS = {"]
    for b in rmap.blocks:
        if b.table in ("input", "holding"):
            out.append(f"    {_q(b.name)}: ({_q(b.table)}, {b.base}, {b.template.upper()}),")
    out += ["}", ""]
    return "\n".join(out)
