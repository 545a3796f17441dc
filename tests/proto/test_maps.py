"""Register maps: the packaged maps' layout promises, and every loader rejection.

Each rejection test writes a small map that is valid except for one mistake and
asserts the MapError message names the file and the register (or block), so a
developer editing a map is told exactly where to look.
"""

from __future__ import annotations

import re
import struct as pystruct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackproto.errors import MapError, RangeError
from rackproto.regmap import MAP_NAMES, RegisterMap, load, load_path
from rackproto.regtypes import Register, decode_words

MAPS = {name: load(name) for name in MAP_NAMES}


# ------------------------------------------------------------ packaged maps


def test_identity_is_first_in_every_map() -> None:
    for m in MAPS.values():
        first = [(r.name, r.address, r.type_label) for r in m.table("input")[:6]]
        assert first == [
            ("vendor", 0, "string[16]"),
            ("model", 8, "string[16]"),
            ("serial", 16, "string[16]"),
            ("hw_rev", 24, "u16"),
            ("fw_version", 25, "u16"),
            ("board_type", 26, "enum"),
        ]
        assert m.get("board_type").enum == {"power_shelf": 1, "cdu": 2}


def test_board_maps_include_common_and_put_their_blocks_at_100() -> None:
    common = {r.name: (r.table, r.address) for r in MAPS["common"].registers}
    for name, board_type in (("power_shelf", 1), ("cdu", 2)):
        m = MAPS[name]
        assert m.board_type == board_type
        assert m.board_type == m.get("board_type").enum[name]
        own = [r for r in m.registers if r.name not in common]
        assert own and all(r.address >= 100 for r in own)
        assert {r.name: (r.table, r.address) for r in m.registers if r.name in common} == common


def test_tables_are_compact_and_blocks_fit_one_read() -> None:
    for m in MAPS.values():
        assert m.table_size("input") < 512 and m.table_size("holding") < 512
        for b in m.blocks:
            assert b.size <= (2000 if b.table in ("coil", "discrete") else 125), b.name
            assert all(b.base <= r.address and r.end <= b.end for r in b.registers)


def test_no_two_registers_share_an_address() -> None:
    for m in MAPS.values():
        for table in ("input", "holding", "coil", "discrete"):
            used: dict[int, str] = {}
            for r in m.table(table):
                for a in range(r.address, r.end):
                    assert a not in used, f"{m.name}: {r.name} overlaps {used[a]}"
                    used[a] = r.name


def test_repeated_blocks_expand_with_one_based_names() -> None:
    ps = MAPS["power_shelf"]
    decl = next(d for d in ps.decls if d.name == "psu")
    assert (decl.count, decl.stride) == (6, 32)
    out_v = next(m for m in decl.members if m.name == "out_v")
    for n in range(1, 7):
        r = ps.get(f"psu{n}_out_v")
        assert r.address == decl.base + (n - 1) * decl.stride + out_v.address
        assert (r.block, r.index, r.member, r.unit, r.scale) == (f"psu{n}", n, "out_v", "V", 0.01)
    assert "psu7_out_v" not in ps and "psu0_out_v" not in ps
    assert [b.name for b in ps.blocks if b.template == "psu"] == [f"psu{n}" for n in range(1, 7)]
    cdu = MAPS["cdu"]
    assert cdu.get("pump2_rpm").address - cdu.get("pump1_rpm").address == 8
    assert cdu.get("pump1_run_hours").type == "u32"
    # a control block may reuse the prefix: psuN_on_cmd lives in holding
    assert ps.get("psu3_on_cmd").table == "holding"


def test_issue_registers_are_declared() -> None:
    ps, cdu = MAPS["power_shelf"], MAPS["cdu"]
    assert set(ps.get("psu1_status").bits) >= {
        "present",
        "on",
        "ov",
        "oc",
        "ot",
        "fan_fail",
        "ac_fail",
        "comms",
    }
    assert set(ps.get("shelf_status").bits) >= {
        "redundancy_ok",
        "degraded_feed",
        "on_battery",
        "any_fault",
    }
    assert ps.get("bbu_mode").enum == {"idle": 0, "charging": 1, "discharging": 2, "fault": 3}
    for name in ("ov_threshold", "oc_threshold", "ot_warning", "ot_fault", "psu1_oc_delay"):
        assert ps.get(name).access == "protected", name
    assert (ps.get("vout_setpoint").min, ps.get("vout_setpoint").max) == (48.0, 54.0)
    assert set(cdu.get("leak_zones").bits) == {"cdu_tray", "manifold", "rack_a", "rack_b"}
    assert cdu.get("leak_isolate_mask").access == "protected"
    assert cdu.get("mode").enum == {"standby": 0, "auto": 1, "manual": 2, "fault": 3}
    for loop in ("temp", "dp"):
        for k in ("kp", "ki", "kd"):
            r = cdu.get(f"{loop}_{k}")
            assert (r.access, r.scale) == ("protected", 0.001)


def test_poll_intervals_come_from_blocks_and_can_be_overridden() -> None:
    ps = MAPS["power_shelf"]
    assert ps.get("psu2_out_v").poll == 1.0
    assert ps.get("psu2_serial").poll == 3600.0  # register override
    assert ps.get("vendor").poll == 3600.0


def test_get_unknown_register_names_the_map() -> None:
    with pytest.raises(KeyError, match="power_shelf.*no_such"):
        MAPS["power_shelf"].get("no_such")


# ------------------------------------------------------------ decode / encode API


def test_decode_a_read_of_the_shelf_block() -> None:
    ps = MAPS["power_shelf"]
    words = [0b1001, 0b0101, 5123, 3755, 0x0002, 0xDD88, 6, 5]
    values = {v.name: v for v in ps.decode("input", 100, words)}
    assert values["shelf_status"].value == ["redundancy_ok", "any_fault"]
    assert values["ac_flags"].value == ["feed_a_present", "feed_b_present"]
    assert (values["dc_v"].value, values["dc_v"].unit, values["dc_v"].raw) == (51.23, "V", 5123)
    assert values["dc_i"].value == 375.5
    assert values["dc_p"].value == round(0x2DD88 * 0.1, 1)
    assert values["psus_on"].value == 5


def test_decode_skips_registers_cut_by_the_read() -> None:
    ps = MAPS["power_shelf"]
    # starts in the middle of dc_p (104..105) and ends in the middle of feed... no: at 107
    names = [v.name for v in ps.decode("input", 105, [0, 0, 0])]
    assert names == ["psus_present", "psus_on"]
    assert [v.name for v in ps.decode("input", 0, [0x4142] * 7)] == []  # vendor needs 8


def test_decode_strings_signed_enums_and_bits() -> None:
    ps = MAPS["power_shelf"]
    vendor = ps.encode_value("vendor", "ACME Power")
    assert vendor[:2] == [0x4143, 0x4D45]  # big-endian within each word
    v = ps.decode("input", 0, vendor)[0]
    assert (v.value, v.raw) == ("ACME Power", b"ACME Power".ljust(16, b"\0"))
    assert ps.decode("input", 122, [0xFF9C])[0].value == -10.0  # bbu_i, i16 x0.1
    assert ps.decode("input", 128, [0xFFFF, 0xFFFE])[0].value == -2  # bbu_energy, i32
    assert ps.decode("input", 126, [2])[0].value == "discharging"
    assert ps.decode("input", 126, [77])[0].value == 77  # unnamed enum value stays an int
    bits = ps.decode("discrete", 100, [1, 0, 1, 1])
    assert [(b.name, b.value) for b in bits] == [
        ("psu1_present_bit", True),
        ("psu1_good_bit", False),
        ("psu2_present_bit", True),
        ("psu2_good_bit", True),
    ]


def test_encode_value_range_checks_name_the_register_and_range() -> None:
    ps, cdu = MAPS["power_shelf"], MAPS["cdu"]
    assert ps.encode_value("vout_setpoint", 51.5) == [5150]
    with pytest.raises(RangeError, match=r"'vout_setpoint'.*\[48\.0, 54\.0\] V"):
        ps.encode_value("vout_setpoint", 60)
    with pytest.raises(RangeError, match=r"'ot_fault'.*\[50\.0, 125\.0\]"):
        ps.encode_value(ps.get("ot_fault"), 49.9)
    assert ps.encode_value("ot_warning", 85) == [850]
    assert cdu.encode_value("t_supply_sp", 15) == [1500]
    assert cdu.encode_value("mode_cmd", "manual") == [2]
    with pytest.raises(RangeError, match=r"'mode_cmd'.*not one of"):
        cdu.encode_value("mode_cmd", "fault")  # fault is entered by the board only
    with pytest.raises(RangeError, match=r"'mode_cmd'"):
        cdu.encode_value("mode_cmd", 3)
    assert cdu.encode_value("leak_isolate_mask", ["rack_b", "cdu_tray"]) == [0b1001]
    with pytest.raises(RangeError, match=r"'leak_isolate_mask'.*unknown flag 'floor'"):
        cdu.encode_value("leak_isolate_mask", ["floor"])
    # bits the map does not name decode as bitN and encode back (range still applies)
    assert cdu.decode("input", 103, [0b10001])[0].value == ["cdu_tray", "bit4"]
    assert cdu.encode_value("leak_zones", ["cdu_tray", "bit2"]) == [0b101]
    with pytest.raises(RangeError, match=r"'leak_isolate_mask'.*outside \[0, 15\]"):
        cdu.encode_value("leak_isolate_mask", ["bit4"])
    with pytest.raises(RangeError, match=r"'vendor'.*17 octets do not fit string\[16\]"):
        ps.encode_value("vendor", "x" * 17)
    with pytest.raises(RangeError, match=r"'vout_setpoint'.*not a number"):
        ps.encode_value("vout_setpoint", "51")
    with pytest.raises(RangeError, match=r"'vout_setpoint'"):
        ps.encode_value("vout_setpoint", float("nan"))
    assert ps.encode_value("update_chunk", b"\x01\x02\x03") == [0x0102, 0x0300] + [0] * 62
    assert isinstance(RangeError("x"), ValueError)


def _value_strategy(r: Register) -> st.SearchStrategy:
    """Values a register can hold, built from its declaration (type, range, names)."""
    if r.type == "string":
        return st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=r.length)
    if r.type == "bytes":
        return st.binary(min_size=r.length, max_size=r.length)
    if r.type == "bool":
        return st.booleans()
    if r.type == "enum":
        return st.sampled_from([k for k, v in r.enum.items() if r.raw_min <= v <= r.raw_max])
    if r.type == "flags16":
        names = sorted(r.bits, key=r.bits.get)
        return st.lists(st.sampled_from(names), unique=True).map(
            lambda xs: sorted(xs, key=r.bits.get)
        )
    if r.type == "f32":
        return st.floats(width=32, allow_nan=False, allow_infinity=False)
    return st.integers(int(r.raw_min), int(r.raw_max)).map(
        lambda raw: raw if r.scale == 1 else round(raw * r.scale, r.digits)
    )


# one register per declaration member (instance 1 of repeated blocks; common ones once)
ALL_REGISTERS = [
    (m.name, r)
    for m in MAPS.values()
    for r in m.registers
    if r.index in (None, 1) and (m.name == "common" or r.source != "common.toml")
]


@pytest.mark.parametrize(("map_name", "reg"), ALL_REGISTERS, ids=[r.name for _, r in ALL_REGISTERS])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_every_register_round_trips(map_name: str, reg: Register, data: st.DataObject) -> None:
    value = data.draw(_value_strategy(reg))
    words = MAPS[map_name].encode_value(reg, value)
    assert len(words) == reg.count and all(0 <= w <= 0xFFFF for w in words)
    decoded = decode_words(reg, words)
    assert decoded.value == value
    assert decoded.unit == reg.unit
    # the same words decoded through the map, as the host does for a block read
    assert MAPS[map_name].decode(reg.table, reg.address, words)[0].value == value


@given(st.integers(0, 0xFFFF))
def test_every_u16_word_decodes_and_re_encodes_for_scaled_registers(word: int) -> None:
    r = MAPS["cdu"].get("t_supply")  # i16 x0.01
    v = decode_words(r, [word])
    assert MAPS["cdu"].encode_value(r, v.value) == [word]


# ------------------------------------------------------------ rejections

HEADER = '[map]\nname = "bad"\nversion = 1\n'


def _block(table: str, base: int, regs: str, extra: str = "") -> str:
    return f'\n[[blocks]]\nname = "b{base}"\ntable = "{table}"\nbase = {base}\n{extra}registers = [\n{regs}\n]\n'


def _write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + text, encoding="utf-8")
    return path


REJECTIONS = {
    "overlap": (
        _block(
            "input",
            0,
            '{ name = "a", offset = 0, type = "u32" },\n{ name = "b", offset = 1, type = "u16" },',
        ),
        r"^bad\.toml: register 'b' \(input 1\) overlaps 'a' \(input 0\.\.1, bad\.toml\)$",
    ),
    "overlap between blocks": (
        _block("holding", 10, '{ name = "a", offset = 0, type = "string[8]" }')
        + _block("holding", 12, '{ name = "b", offset = 0, type = "u16" }'),
        r"^bad\.toml: register 'b' \(holding 12\) overlaps 'a' \(holding 10\.\.13",
    ),
    "block over 125 registers": (
        _block(
            "input",
            0,
            '{ name = "a", offset = 0 , type = "u16" },\n{ name = "z", offset = 125, type = "u16" },',
        ),
        r"^bad\.toml: block 'b0' spans 126 input addresses \(0\.\.125\); a telemetry block must fit one read \(<= 125\)",
    ),
    "repeated block instance over 125": (
        _block(
            "input",
            0,
            '{ name = "a", offset = 0, type = "u16" }',
            'count = 2\nstride = 126\nprefix = "s"\n',
        ),
        r"^bad\.toml: block 'b01' spans 126 input addresses",
    ),
    "unknown type": (
        _block("input", 0, '{ name = "volts", offset = 0, type = "u24" }'),
        r"^bad\.toml: register 'volts': unknown type 'u24'",
    ),
    "min greater than max": (
        _block("holding", 0, '{ name = "sp", offset = 0, type = "u16", min = 10, max = 5 }'),
        r"^bad\.toml: register 'sp': bad range: min 10 > max 5$",
    ),
    "range outside the type after scaling": (
        _block("holding", 0, '{ name = "sp", offset = 0, type = "u16", scale = 0.01, max = 700 }'),
        r"^bad\.toml: register 'sp': bad range \[0\.0, 700\]: raw \[0, 70000\] at scale 0\.01 is outside what u16 holds \[0, 65535\]$",
    ),
    "negative min on an unsigned type": (
        _block("holding", 0, '{ name = "sp", offset = 0, type = "u16", min = -1 }'),
        r"^bad\.toml: register 'sp': bad range \[-1, 65535\]",
    ),
    "i16 range too wide": (
        _block("holding", 0, '{ name = "t", offset = 0, type = "i16", scale = 0.1, min = -4000 }'),
        r"^bad\.toml: register 't': bad range .*i16 holds \[-32768, 32767\]",
    ),
    "min not a multiple of the scale": (
        _block("holding", 0, '{ name = "sp", offset = 0, type = "u16", scale = 0.5, min = 0.3 }'),
        r"^bad\.toml: register 'sp': min 0\.3 is not a multiple of the scale 0\.5$",
    ),
    "default outside the range": (
        _block("holding", 0, '{ name = "sp", offset = 0, type = "u16", max = 10, default = 11 }'),
        r"^bad\.toml: register 'sp': default 11 is outside its range: .*\[0, 10\]",
    ),
    "duplicate names": (
        _block("input", 0, '{ name = "temp", offset = 0, type = "u16" }')
        + _block("holding", 5, '{ name = "temp", offset = 0, type = "u16" }'),
        r"^bad\.toml: register 'temp': duplicate name \(first declared in bad\.toml at input 0\)$",
    ),
    "duplicate name made by expansion": (
        _block(
            "input",
            0,
            '{ name = "x", offset = 0, type = "u16" }',
            'count = 2\nstride = 1\nprefix = "p"\n',
        )
        + _block("input", 10, '{ name = "p2_x", offset = 0, type = "u16" }'),
        r"^bad\.toml: register 'p2_x': duplicate name \(first declared in bad\.toml at input 1\)$",
    ),
    "duplicate block names": (
        _block("input", 0, '{ name = "a", offset = 0, type = "u16" }')
        + _block("holding", 0, '{ name = "b", offset = 0, type = "u16" }'),
        r"^bad\.toml: duplicate block name 'b0'$",
    ),
    "write access on an input register": (
        _block("input", 0, '{ name = "v", offset = 0, type = "u16", access = "rw" }'),
        r"^bad\.toml: register 'v': input registers are read-only",
    ),
    "unknown access": (
        _block("holding", 0, '{ name = "v", offset = 0, type = "u16", access = "admin" }'),
        r"^bad\.toml: register 'v': access 'admin' is not one of",
    ),
    "member beyond the stride": (
        _block("input", 0, '{ name = "v", offset = 3, type = "u32" }', "count = 2\nstride = 4\n"),
        r"^bad\.toml: register 'v': offset 3 \+ 2 words exceeds the stride 4 of block 'b0'$",
    ),
    "unknown register key": (
        _block("input", 0, '{ name = "v", offset = 0, type = "u16", units = "V" }'),
        r"^bad\.toml: register 'v': unknown keys \['units'\]$",
    ),
    "unknown flags set": (
        _block("input", 0, '{ name = "st", offset = 0, type = "flags16", flags = "nope" }'),
        r"^bad\.toml: register 'st': flags16 needs bits = \{\.\.\.\} or a known flags set, got 'nope'$",
    ),
    "flag bit above 15": (
        _block("input", 0, '{ name = "st", offset = 0, type = "flags16", bits = { a = 16 } }'),
        r"^bad\.toml: flags set 'st': 'a' = 16 is not in 0\.\.15$",
    ),
    "flag named like an unnamed bit": (
        _block("input", 0, '{ name = "st", offset = 0, type = "flags16", bits = { bit3 = 1 } }'),
        r"^bad\.toml: flags set 'st': 'bit3' is reserved for unnamed bits$",
    ),
    "two enum names share a value": (
        _block("input", 0, '{ name = "m", offset = 0, type = "enum", values = { a = 1, b = 1 } }'),
        r"^bad\.toml: enum set 'm': 'b' and 'a' share the value 1$",
    ),
    "scale on a string": (
        _block("input", 0, '{ name = "s", offset = 0, type = "string[4]", scale = 0.1 }'),
        r"^bad\.toml: register 's': scale applies to integer types only, not string\[4\]$",
    ),
    "firmware constant collision": (
        _block("input", 0, '{ name = "ev_count", offset = 0, type = "u16" }')
        + '\n[[blocks]]\nname = "ev"\ntable = "input"\nbase = 10\ncount = 2\nstride = 1\n'
        'registers = [ { name = "x", offset = 0, type = "u16" } ]\n',
        r"^bad\.toml: block 'ev': firmware constant EV_COUNT collides with register 'ev_count' \(bad\.toml\)$",
    ),
    "holding table too large for the firmware": (
        "".join(
            _block("holding", 100 * i, f'{{ name = "r{i}", offset = 99, type = "u16" }}')
            for i in range(6)
        ),
        r"^bad\.toml: the holding table needs 600 words; keep it under 512",
    ),
    "wrong table": (
        _block("rom", 0, '{ name = "v", offset = 0, type = "u16" }'),
        r"^bad\.toml: block 'b0': table 'rom' is not one of",
    ),
    "bool in a register table": (
        _block("holding", 0, '{ name = "v", offset = 0, type = "bool" }'),
        r"^bad\.toml: register 'v': type bool does not fit the holding table$",
    ),
    "f32 range beyond float32": (
        _block("holding", 0, '{ name = "k", offset = 0, type = "f32", max = 1e39 }'),
        r"^bad\.toml: register 'k': bad range \[.*\]: outside what f32 holds$",
    ),
    "non-positive poll": (
        _block("input", 0, '{ name = "v", offset = 0, type = "u16", poll = 0 }'),
        r"^bad\.toml: register 'v': poll 0 must be a positive number of seconds$",
    ),
    "unit that is not a string": (
        _block("input", 0, '{ name = "v", offset = 0, type = "u16", unit = 5 }'),
        r"^bad\.toml: register 'v': unit must be a string, got 5$",
    ),
    "not TOML": ("[[blocks]\n", r"^bad\.toml: not valid TOML"),
}


@pytest.mark.parametrize("case", list(REJECTIONS))
def test_loader_rejects_with_a_message_naming_file_and_register(tmp_path: Path, case: str) -> None:
    text, message = REJECTIONS[case]
    path = _write(tmp_path, text)
    with pytest.raises(MapError, match=message):
        load_path(path)


def test_rejection_in_an_included_map_names_that_file(tmp_path: Path) -> None:
    (tmp_path / "base.toml").write_text(
        '[map]\nname = "base"\n' + _block("input", 0, '{ name = "id", offset = 0, type = "u16" }')
    )
    path = _write(tmp_path, "")
    path.write_text(
        '[map]\nname = "bad"\ninclude = ["base"]\n'
        + _block("input", 100, '{ name = "id", offset = 0, type = "u16" }')
    )
    with pytest.raises(
        MapError, match=r"^bad\.toml: register 'id': duplicate name \(first declared in base\.toml"
    ):
        load_path(path)
    path.write_text(
        '[map]\nname = "bad"\ninclude = ["base"]\n'
        + _block(
            "input", 0, '{ name = "other", offset = 0, type = "u16" }', 'desc = "x"\n'
        ).replace("b0", "c0")
    )
    with pytest.raises(
        MapError,
        match=r"^bad\.toml: register 'other' \(input 0\) overlaps 'id' \(input 0\.\.0, base\.toml\)",
    ):
        load_path(path)


def test_include_cycle_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text('[map]\nname = "a"\ninclude = ["b"]\n')
    (tmp_path / "b.toml").write_text('[map]\nname = "b"\ninclude = ["a"]\n')
    with pytest.raises(MapError, match=r"^a\.toml: include cycle"):
        load_path(tmp_path / "a.toml")


def test_unknown_map_name() -> None:
    with pytest.raises(MapError, match="no register map 'toaster'"):
        load("toaster")


def test_a_minimal_valid_map_loads(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        _block(
            "holding",
            0,
            '{ name = "sp", offset = 0, type = "i16", scale = 0.5, min = -10, max = 10.5, default = 2.5 }',
        ),
    )
    m = load_path(path)
    r = m.get("sp")
    assert (r.min, r.max, r.raw_min, r.raw_max, r.default, r.access) == (
        -10,
        10.5,
        -20,
        21,
        2.5,
        "rw",
    )
    assert m.encode_value(r, -10) == [0x10000 - 20]
    assert re.search("bad", repr(m))


@pytest.fixture(scope="module")
def f32_map(tmp_path_factory: pytest.TempPathFactory) -> RegisterMap:
    """No packaged map uses f32 (floats allocate on the MCU); the codec still must work."""
    tmp = tmp_path_factory.mktemp("f32")
    return load_path(_write(tmp, _block("input", 0, '{ name = "gain", offset = 0, type = "f32" }')))


@given(value=st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_f32_registers_round_trip_high_word_first(f32_map: RegisterMap, value: float) -> None:
    words = f32_map.encode_value("gain", value)
    assert words == list(pystruct.unpack(">HH", pystruct.pack(">f", value)))
    assert f32_map.decode("input", 0, words)[0].value == value
