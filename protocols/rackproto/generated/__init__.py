"""Construct structs generated from the register maps, and the adapters they use.

``blocks_<map>.py`` next to this file are written by ``make gen``; this module is
hand-written. It holds the pieces those modules need at run time:

* :class:`Reading` / :class:`Count` — a float / int that also carries its unit, so
  a decoded ``psu.out_v`` is ``51.23`` *and* knows it is volts;
* :class:`Scaled` — raw integer <-> engineering value (``raw * scale``), rounded to
  the scale's resolution so a decode/encode round-trip is exact. It emits source
  for ``Struct.compile()`` so compiled block structs stay fully compiled;
* :func:`block_struct` — look up a generated struct by map and block name.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType
from typing import Any

from construct import Adapter, Construct


class Reading(float):
    """A scaled measurement: a float with ``.unit`` (equal to the plain float)."""

    __slots__ = ("unit",)
    unit: str

    def __new__(cls, value: float, unit: str = "") -> Reading:
        obj = super().__new__(cls, value)
        obj.unit = unit
        return obj

    def __repr__(self) -> str:
        return f"{float(self)!r} {self.unit}".rstrip()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Reading, (float(self), self.unit))


class Count(int):
    """An unscaled integer with a unit (rpm, W, s): an int with ``.unit``."""

    unit: str  # no __slots__: CPython does not allow them on int subclasses

    def __new__(cls, value: int, unit: str = "") -> Count:
        obj = super().__new__(cls, value)
        obj.unit = unit
        return obj

    def __repr__(self) -> str:
        return f"{int(self)!r} {self.unit}".rstrip()

    def __reduce__(self) -> tuple[Any, ...]:
        return (Count, (int(self), self.unit))


class Scaled(Adapter):  # type: ignore[misc]
    """Raw integer field <-> engineering value ``raw * scale`` carrying ``unit``.

    Decoding rounds to ``digits`` decimals (the scale's resolution), so values
    print as the device meant them (51.23, not 51.230000000000004); encoding
    rounds to the nearest raw step, and the subcon rejects values its type
    cannot hold.
    """

    def __init__(self, subcon: Construct, scale: float = 1, digits: int = 0, unit: str = ""):
        super().__init__(subcon)
        self.scale = scale
        self.digits = digits
        self.unit = unit

    def _decode(self, obj: int, context: Any, path: str) -> Reading | Count:
        if self.scale == 1:
            return Count(obj, self.unit)
        return Reading(round(obj * self.scale, self.digits), self.unit)

    def _encode(self, obj: float, context: Any, path: str) -> int:
        if self.scale == 1:
            return int(obj)
        return int(round(obj / self.scale))

    # Struct.compile() support: emit plain expressions instead of linking the instance.
    def _emitparse(self, code: Any) -> str:
        code.append("from rackproto.generated import Reading, Count")
        inner = self.subcon._compileparse(code)
        if self.scale == 1:
            return f"Count({inner}, {self.unit!r})"
        return f"Reading(round(({inner}) * {self.scale!r}, {self.digits}), {self.unit!r})"

    def _emitbuild(self, code: Any) -> str:
        code.append("from rackproto.generated import Reading, Count")
        if self.scale == 1:
            conv = "int(obj)"
        else:
            conv = f"int(round(obj / {self.scale!r}))"
        return f"reuse({conv}, lambda obj: {self.subcon._compilebuild(code)})"


@cache
def blocks_module(map_name: str) -> ModuleType:
    """The generated ``rackproto.generated.blocks_<map_name>`` module."""
    return importlib.import_module(f"rackproto.generated.blocks_{map_name}")


def block_struct(map_name: str, block: str, compiled: bool = False) -> Construct:
    """The Construct struct of one block instance (``"psu3"``) or declaration (``"psu"``).

    ``compiled=True`` returns ``struct.compile()`` (built once per struct, cached;
    all 15 board structs compile in ~25 ms). Measured on CPython 3.11: parsing a
    PSU block drops from ~75 to ~32 us, building from ~45 to ~22 us (flags
    blocks build no faster). Use it for blocks polled every second.
    """
    mod = blocks_module(map_name)
    struct = mod.BLOCKS[block][2] if block in mod.BLOCKS else mod.STRUCTS[block]
    return _compiled(struct) if compiled else struct


_COMPILED: dict[int, Construct] = {}


def _compiled(struct: Construct) -> Construct:
    key = id(struct)  # generated structs are module globals: ids are stable
    if key not in _COMPILED:
        _COMPILED[key] = struct.compile()
    return _COMPILED[key]
