"""Generated Construct block structs: round-trips and agreement with RegisterMap.decode.

Strategies are built from the maps: every member gets values its type and
range allow, so a struct that mis-scales, mis-orders words or drops a field
fails here. The same bytes are also decoded by ``RegisterMap.decode`` (the
hand-written word codec) and by the compiled struct; all three must agree.
"""

from __future__ import annotations

import struct as pystruct
from typing import Any

import pytest
from construct import Container
from hypothesis import given, settings
from hypothesis import strategies as st
from pymodbus.client.mixin import ModbusClientMixin as M

from rackproto.generated import Count, Reading, block_struct, blocks_module
from rackproto.regmap import MAP_NAMES, BlockDecl, load
from rackproto.regtypes import Register, raw_to_words, words_to_raw

MAPS = {name: load(name) for name in MAP_NAMES}
DECLS = [
    (name, d)
    for name, m in MAPS.items()
    for d in m.decls
    if d.table in ("input", "holding") and (name == "common" or d.source != "common.toml")
]


def _member_strategy(r: Register) -> st.SearchStrategy[Any]:
    """Engineering values a struct field accepts for this register."""
    if r.type == "string":
        return st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=r.length)
    if r.type == "bytes":
        return st.binary(min_size=r.length, max_size=r.length)
    if r.type == "enum":
        return st.sampled_from(sorted(r.enum))
    if r.type == "flags16":
        return st.sets(st.sampled_from(sorted(r.bits)))
    if r.type == "f32":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    return st.integers(int(r.raw_min), int(r.raw_max)).map(
        lambda raw: raw if r.scale == 1 else round(raw * r.scale, r.digits)
    )


def _block_values(d: BlockDecl) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({m.name: _member_strategy(m) for m in d.members})


def _to_build(d: BlockDecl, values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    for m in d.members:
        if m.type == "flags16":
            out[m.name] = {k: k in values[m.name] for k in m.bits}
    return out


def _set_flags(parsed: Container) -> set[str]:
    return {k for k, v in parsed.items() if not k.startswith("_") and v is True}


def _check_parsed(d: BlockDecl, parsed: Container, values: dict[str, Any]) -> None:
    for m in d.members:
        got, want = parsed[m.name], values[m.name]
        if m.type == "flags16":
            assert _set_flags(got) == want, m.name
        elif m.type == "enum":
            assert str(got) == want, m.name
        else:
            assert got == want, m.name
        if m.type in ("u16", "i16", "u32", "i32") and m.unit:
            assert got.unit == m.unit, m.name


@pytest.mark.parametrize(("map_name", "decl"), DECLS, ids=[f"{n}.{d.name}" for n, d in DECLS])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_block_struct_round_trip(map_name: str, decl: BlockDecl, data: st.DataObject) -> None:
    values = data.draw(_block_values(decl))
    s = block_struct(map_name, decl.name)
    raw = s.build(_to_build(decl, values))
    assert len(raw) == 2 * decl.stride
    parsed = s.parse(raw)
    _check_parsed(decl, parsed, values)
    assert s.build(parsed) == raw  # parse output builds back to the same bytes
    # the compiled struct reads and writes the same bytes
    c = block_struct(map_name, decl.name, compiled=True)
    _check_parsed(decl, c.parse(raw), values)
    assert c.build(_to_build(decl, values)) == raw
    # and the host's word decoder agrees, register by register
    words = list(pystruct.unpack(f">{decl.stride}H", raw))
    base = decl.base
    decoded = {v.register.member: v.value for v in MAPS[map_name].decode(decl.table, base, words)}
    assert set(decoded) == {m.name for m in decl.members}
    for m in decl.members:
        want = values[m.name]
        if m.type == "flags16":
            assert set(decoded[m.name]) == want
        else:
            assert decoded[m.name] == want, m.name


def test_every_block_instance_has_a_struct() -> None:
    for name, m in MAPS.items():
        mod = blocks_module(name)
        for b in m.blocks:
            if b.table in ("input", "holding"):
                table, base, s = mod.BLOCKS[b.name]
                assert (table, base) == (b.table, b.base)
                assert s is mod.STRUCTS[b.template]
                assert block_struct(name, b.name) is s


def test_decoded_values_carry_units() -> None:
    psu = block_struct("power_shelf", "psu2")
    words = [0] * 32
    words[5] = 5123  # out_v x0.01 V
    words[10] = 9000  # fan_rpm
    words[8] = 0xFF38  # temp_inlet -20.0 °C
    parsed = psu.parse(pystruct.pack(">32H", *words))
    assert isinstance(parsed.out_v, Reading) and parsed.out_v == 51.23 and parsed.out_v.unit == "V"
    assert repr(parsed.out_v) == "51.23 V"
    assert (
        isinstance(parsed.fan_rpm, Count)
        and parsed.fan_rpm == 9000
        and parsed.fan_rpm.unit == "rpm"
    )
    assert parsed.temp_inlet == -20.0
    assert parsed.status.present is False


def test_encoding_out_of_type_range_fails() -> None:
    shelf_ctl = block_struct("power_shelf", "shelf_ctl")
    good = dict(
        vout_setpoint=51.0, fan_override=0, ov_threshold=57.0, oc_threshold=70.0,
        ot_warning=85.0, ot_fault=95.0, bbu_enable="on", bbu_charge_current=5.0,
    )  # fmt: skip
    assert len(shelf_ctl.build(good)) == 16
    with pytest.raises(Exception, match="(?i)int|range|out of|format"):
        shelf_ctl.build({**good, "vout_setpoint": 700.0})  # 70000 raw does not fit u16


def test_reading_pickles_and_compares_as_float() -> None:
    import pickle

    r = Reading(1.5, "A")
    back = pickle.loads(pickle.dumps(r))
    assert back == 1.5 and back.unit == "A" and isinstance(back, Reading)
    c = pickle.loads(pickle.dumps(Count(7, "rpm")))
    assert c == 7 and c.unit == "rpm"


PYMODBUS_TYPES = {
    "u16": "UINT16",
    "i16": "INT16",
    "u32": "UINT32",
    "i32": "INT32",
    "f32": "FLOAT32",
}


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_words_agree_with_pymodbus(data: st.DataObject) -> None:
    """Our word order and sign handling match what pymodbus clients use (big word order)."""
    regs = [
        r for r in MAPS["power_shelf"].registers if r.type in PYMODBUS_TYPES or r.type == "string"
    ]
    reg = data.draw(st.sampled_from(regs))
    raw = data.draw(
        st.text(
            st.characters(min_codepoint=33, max_codepoint=126),
            min_size=reg.length,
            max_size=reg.length,
        )
        if reg.type == "string"
        else st.integers(int(reg.raw_min), int(reg.raw_max))
    )
    kind = M.DATATYPE.STRING if reg.type == "string" else M.DATATYPE[PYMODBUS_TYPES[reg.type]]
    words = raw_to_words(reg, raw.encode() if reg.type == "string" else raw)
    assert words == M.convert_to_registers(raw, kind)
    back = M.convert_from_registers(words, kind)
    assert back == raw
    assert words_to_raw(reg, words) == (raw.encode() if reg.type == "string" else raw)
