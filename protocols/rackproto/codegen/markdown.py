"""Generate ``docs/registers/<map>.md``: the register tables people read.

One table per block declaration (repeated blocks are shown once with member
offsets and the instance addresses), then the flag and enum sets.
"""

from __future__ import annotations

from rackproto.codegen.firmware import HEADER
from rackproto.regmap import BlockDecl, RegisterMap
from rackproto.regtypes import INT_TYPES, Register

COLUMNS = ("addr", "name", "type", "scale", "unit", "access", "range", "poll", "description")


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _num(v: float | None) -> str:
    if v is None:
        return ""
    return f"{v:g}" if isinstance(v, float) else str(v)


def _range(r: Register) -> str:
    """Write range (or a declared measurement range); blank when it is just the type's."""
    if r.min is None or r.type in ("flags16", "enum", "bool"):
        return ""
    if r.access == "ro" and r.type in INT_TYPES:
        _, _, lo, hi = INT_TYPES[r.type]
        if (r.raw_min, r.raw_max) == (lo, hi):
            return ""
    return f"{_num(r.min)} .. {_num(r.max)}"


def _poll(r: Register) -> str:
    return "" if r.poll is None else f"{r.poll:g} s"


def _details(r: Register) -> str:
    text = r.description
    if r.type == "flags16" and r.set_name:
        text += f" (flags: `{r.set_name}`)"
    elif r.type == "enum" and r.set_name:
        text += f" (enum: `{r.set_name}`)"
    if r.default is not None:
        default = ", ".join(r.default) if isinstance(r.default, list) else r.default
        text += f"; default {default}"
    if r.persist:
        text += "; stored"
    return text


def _row(addr: str, r: Register, name: str) -> str:
    cells = (
        addr,
        f"`{name}`",
        r.type_label,
        "" if r.scale == 1 else f"{r.scale:g}",
        r.unit,
        r.access,
        _range(r),
        _poll(r),
        _details(r),
    )
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def _decl_section(rmap: RegisterMap, d: BlockDecl) -> list[str]:
    if d.repeated:
        first = d.base
        last = d.base + (d.count - 1) * d.stride
        heading = f"### `{d.name}` — {d.table}, {d.count} × {d.stride} from {d.base}"
        names = f"`{d.prefix}1_<member>` … `{d.prefix}{d.count}_<member>`"
        intro = (
            f"{d.description} Instance *n* (1..{d.count}) starts at {d.base} + (n-1)×{d.stride} "
            f"({first}, {d.base + d.stride}, … {last}); registers are named {names}."
        )
        addr_of = "+{}"
    else:
        heading = f"### `{d.name}` — {d.table} {d.base}..{d.base + d.stride - 1}"
        intro = d.description
        addr_of = "{}"
    out = [heading, "", intro, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for m in d.members:
        addr = addr_of.format(m.address) if d.repeated else str(d.base + m.address)
        if m.count > 1:
            end = m.address + m.count - 1
            addr += f"..{'+' if d.repeated else ''}{end if d.repeated else d.base + end}"
        out.append(_row(addr, m, m.name))
    return out + [""]


def _sets(title: str, sets: dict[str, dict[str, int]], what: str) -> list[str]:
    if not sets:
        return []
    out = [f"## {title}", ""]
    for name, items in sets.items():
        body = ", ".join(f"{k} = {v}" for k, v in sorted(items.items(), key=lambda kv: kv[1]))
        out.append(f"- `{name}` ({what}): {body}")
    return out + [""]


def markdown(rmap: RegisterMap) -> str:
    """Return ``docs/registers/<map>.md`` for ``rmap``."""
    sizes = ", ".join(f"{t} {rmap.table_size(t)}" for t in ("input", "holding", "coil", "discrete"))
    out = [
        f"# {rmap.title} (`{rmap.name}`, map version {rmap.version})",
        "",
        f"<!-- {HEADER} from {', '.join(rmap.sources)}. -->",
        "",
        f"Generated from {', '.join(f'`{s}`' for s in rmap.sources)}. Addresses are 0-based "
        "Modbus protocol addresses. Values are raw × scale in the unit shown; 32-bit values "
        "and floats use two registers, high word first; strings are two ASCII bytes per "
        "register, big-endian, NUL padded. Access: `ro` read-only, `rw` writable, "
        "`protected` writable only after `unlock_key`.",
        "",
    ]
    if rmap.board_type is not None:
        out += [f"Board type: {rmap.board_type}. Table sizes: {sizes}.", ""]
    else:
        out += [f"Table sizes: {sizes}.", ""]
    for table in ("input", "holding", "coil", "discrete"):
        decls = [d for d in rmap.decls if d.table == table]
        if not decls:
            continue
        out += [
            f"## {table.capitalize()} {'registers' if table in ('input', 'holding') else 'bits'}",
            "",
        ]
        for d in decls:
            out += _decl_section(rmap, d)
    out += _sets("Flag sets", rmap.flag_sets, "bit numbers")
    out += _sets("Enums", rmap.enum_sets, "values")
    return "\n".join(out).rstrip("\n") + "\n"
