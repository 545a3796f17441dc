"""The software rack's parts: rack files, the scenario master, traces, and the Rack itself.

Fast by design: racks here run the firmware under CPython (runtime ``cpython``); the
HIL scenarios (hil_tests/scenarios) run the same firmware in the MicroPython VM.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from rackhil import rackspec
from rackhil.capture import Capture
from rackhil.master import Master
from rackhil.rack import RESET_WATCHDOG, Rack
from rackhil.trace import Trace
from rackproto.adu import build
from rackproto.errors import ConfigError, CrcError, DeviceTimeout, ModbusException, RangeError
from rackproto.pdu import ReadRequest

pytestmark = pytest.mark.timeout(60)


def small_rack(*units: int, seed: int = 7, **kw) -> Rack:
    spec = rackspec.default("cpython")
    spec = dataclasses.replace(spec, boards=tuple(b for b in spec.boards if b.id in units), seed=seed)
    return Rack(spec, **kw)


@pytest.fixture
def shelf_rack():
    rack = small_rack(1)
    rack.run(1.0)
    yield rack
    rack.close()


# ---- rack files ----------------------------------------------------------------------------
def test_default_rack_file() -> None:
    spec = rackspec.default()
    assert [(b.id, b.type) for b in spec.boards] == [
        (1, "power_shelf"), (2, "power_shelf"), (3, "cdu"), (4, "cdu")]
    assert spec.line.name == "115200 8E1"
    assert {b.runtime for b in spec.boards} == {"vm"}
    assert spec == rackspec.load(rackspec.default_path())
    assert [b.id for b in rackspec.builtin_default().boards] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[[boards]]\nid = 1\ntype = 'toaster'\n", "boards[0].type"),
        ("[[boards]]\nid = 1\ntype = 'cdu'\ncolour = 'red'\n", "boards[0].colour"),
        ("[[boards]]\nid = 1\ntype = 'cdu'\n[[boards]]\nid = 1\ntype = 'cdu'\nname='x'\n", "boards[1].id"),
        ("[[boards]]\nid = 300\ntype = 'cdu'\n", "boards[0].id"),
        ("[[boards]]\nid = '1'\ntype = 'cdu'\n", "boards[0].id"),
        ("[[boards]]\ntype = 'cdu'\n", "boards[0].id"),
        ("[[boards]]\nid = 1\ntype = 'cdu'\n[boards.plant]\nload_w = 5.0\n", "boards[0].plant.load_w"),
        ("[[boards]]\nid = 1\ntype = 'power_shelf'\n[boards.plant]\nload_w = 'lots'\n", "boards[0].plant.load_w"),
        ("[[boards]]\nid = 1\ntype = 'cdu'\nruntime = 'jvm'\n", "boards[0].runtime"),
        ("[bus]\nparity = 'X'\n[[boards]]\nid = 1\ntype = 'cdu'\n", "bus.parity"),
        ("[bus]\nbaud = 12\n[[boards]]\nid = 1\ntype = 'cdu'\n", "bus.baud"),
        ("[bus]\nstop_bits = 3\n[[boards]]\nid = 1\ntype = 'cdu'\n", "bus.stop_bits"),
        ("[rack]\nseed = 1.5\n[[boards]]\nid = 1\ntype = 'cdu'\n", "rack.seed"),
        ("[rack]\nspeed = 2\n[[boards]]\nid = 1\ntype = 'cdu'\n", "rack.speed"),
        ("[rack]\nseed = 1\n", "boards"),
        ("[[boards]]\nid = 1\ntype = 'cdu'\nname = 'a'\n[[boards]]\nid = 2\ntype = 'cdu'\nname = 'a'\n", "boards[1].name"),
        ("boards = [", "not valid TOML"),
    ],
)
def test_bad_rack_file_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        rackspec.load(path)
    assert str(err.value).startswith(str(path))
    assert key in str(err.value)


def test_missing_rack_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        rackspec.load(tmp_path / "nope.toml")


def test_runtime_and_line_overrides() -> None:
    spec = rackspec.default().with_runtime("cpython").with_line(baud=19200, parity="N")
    assert {b.runtime for b in spec.boards} == {"cpython"}
    assert spec.line.name == "19200 8N1"
    with pytest.raises(ConfigError):
        spec.with_runtime("jvm")
    with pytest.raises(ConfigError):
        spec.with_line(parity="Q")


boards_strategy = st.lists(
    st.tuples(st.integers(1, 247), st.sampled_from(rackspec.BOARD_TYPES), st.sampled_from(rackspec.RUNTIMES)),
    min_size=1, max_size=12, unique_by=lambda b: b[0],
)


@given(boards=boards_strategy, seed=st.integers(0, 2**31), baud=st.sampled_from([9600, 19200, 115200]),
       parity=st.sampled_from("ENO"))
@settings(max_examples=60, deadline=None)
def test_any_valid_rack_file_round_trips(boards, seed: int, baud: int, parity: str) -> None:
    lines = [f"[rack]\nseed = {seed}\n", f"[bus]\nbaud = {baud}\nparity = '{parity}'\n"]
    for unit, kind, runtime in boards:
        lines.append(f"[[boards]]\nid = {unit}\ntype = '{kind}'\nruntime = '{runtime}'\n")
    spec = rackspec.loads("".join(lines))
    assert [(b.id, b.type, b.runtime) for b in spec.boards] == boards
    assert [b.name for b in spec.boards] == [f"{k}-{u}" for u, k, _ in boards]
    assert (spec.seed, spec.line.baud, spec.line.parity) == (seed, baud, parity)


# ---- trace ------------------------------------------------------------------------------------
def test_trace_records_probes_marks_and_plots(tmp_path: Path) -> None:
    trace = Trace("demo")
    x = {"v": 1.0}
    trace.probe("bus_v.plant", lambda: x["v"], unit="V")
    for t in range(5):
        x["v"] = t * 2.0
        trace.sample(t * 0.1)
    trace.record(0.25, "dc_v.shelf-1", 50.5)
    trace.record(0.35, "dc_v.shelf-1", None)  # a failed poll is a gap
    trace.mark(0.2, "fault")
    assert trace["bus_v.plant"].v == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert trace["bus_v.plant"].between(0.1, 0.3) == [2.0, 4.0]
    assert math.isnan(trace["dc_v.shelf-1"].last())
    assert trace["dc_v.shelf-1"].panel == "dc_v"
    csv = trace.to_csv().splitlines()
    assert csv[0] == "signal,t_s,value" and "bus_v.plant,0.400,8" in csv
    png = trace.plot(tmp_path / "sub" / "t.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = Trace().plot(tmp_path / "empty.png")
    assert empty.stat().st_size > 0


# ---- master ------------------------------------------------------------------------------------
def test_master_reads_and_writes_by_name(shelf_rack: Rack) -> None:
    m = shelf_rack.master
    assert m.read(1, "serial") == "EMU-0001"
    assert m.read(1, "board_type") == "power_shelf"
    shelf = m.read_block(1, "shelf")
    assert shelf["dc_v"] == pytest.approx(shelf_rack.shelf(1).bus_v, abs=0.05)
    m.write(1, "bbu_charge_current", 7.5)
    assert m.read(1, "bbu_charge_current") == 7.5
    both = m.read_many(1, ["dc_v", "serial", "bbu_charge_current"])
    assert set(both) == {"dc_v", "serial", "bbu_charge_current"}
    with pytest.raises(RangeError):
        m.write(1, "bbu_charge_current", 1e6)  # refused before anything is sent
    assert m.counters.exceptions == 0 and m.counters.ok == m.counters.requests


def test_master_counts_exceptions_timeouts_and_crc_errors(shelf_rack: Rack) -> None:
    m = shelf_rack.master
    with pytest.raises(ModbusException) as exc:
        m.read_registers(1, "input", 4000, 2)  # no such register
    assert exc.value.code == 2
    assert m.counters.exceptions == 1 and m.counters.exception_codes == {2: 1}
    m.retries = 1
    with pytest.raises(DeviceTimeout):
        m.read_registers(9, "input", 0, 1)  # nobody at unit 9
    assert m.counters.timeouts == 2 and m.counters.retries == 1
    assert m.per_unit[9].timeouts == 2
    # a reply corrupted on its way back is a CRC error, not a timeout
    fault = shelf_rack.line.ber(0.02)
    fault.sources = frozenset({"shelf-1"})
    with pytest.raises(CrcError):
        for _ in range(20):
            m.read_registers(1, "input", 0, 60)
    shelf_rack.line.clear()
    assert m.counters.crc_errors >= 1
    assert m.counters.attempts == m.counters.ok + m.counters.timeouts + m.counters.crc_errors + m.counters.exceptions + m.counters.frame_errors


def test_master_reads_the_event_log(shelf_rack: Rack) -> None:
    m = shelf_rack.master
    everything = m.events(1)
    assert everything[0].kind in ("config", "reset")
    assert [e.seq for e in everything] == list(range(everything[0].seq, everything[0].seq + len(everything)))
    last = m.events(1, last=3)
    assert last == everything[-3:]
    shelf_rack.psu(1, 2).remove()
    shelf_rack.run(0.5)
    newest = m.events(1, last=1)[0]
    assert (newest.kind, newest.code, newest.value) == ("hotswap", 2, 0)


def test_master_without_a_map_for_the_unit(shelf_rack: Rack) -> None:
    m = Master(shelf_rack.host)
    with pytest.raises(KeyError):
        m.read(1, "dc_v")
    assert len(m.read_registers(1, "input", 0, 8)) == 8


# ---- the rack -------------------------------------------------------------------------------------
def test_plants_and_boards_are_coupled(shelf_rack: Rack) -> None:
    """What the plant does reaches the firmware's registers, and the firmware's outputs
    reach the plant: a lost feed shows in the registers; PSU off command leaves the plant."""
    m = shelf_rack.master
    shelf_rack.feed(1, "B").lose()
    shelf_rack.run(0.5)
    assert m.read(1, "feed2_v") < 5.0
    assert "degraded_feed" in m.read(1, "shelf_status")
    m.write(1, "psu6_on_cmd", "off")
    shelf_rack.run(0.5)
    assert shelf_rack.shelf(1).psu(5).i_out == 0.0
    assert shelf_rack.trace.marks[-1][1] == "shelf 1 feed B lost"


def test_same_seed_same_run_different_seed_different_noise() -> None:
    def wire_bytes(seed: int) -> list[tuple[int, int]]:
        with small_rack(3, seed=seed) as rack:
            cap = Capture(bus=rack.bus)
            rack.line.ber(1e-3)
            for _ in range(20):
                try:
                    rack.master.read_block(3, "loop")
                except (CrcError, DeviceTimeout):
                    pass
                rack.run(0.2)
            return [(b.t_us, b.value) for b in cap.bytes]

    first = wire_bytes(11)
    assert first == wire_bytes(11)
    assert first != wire_bytes(12)


def test_power_cycle_and_hang(shelf_rack: Rack) -> None:
    m = shelf_rack.master
    m.timeout = 0.05
    unit = shelf_rack.board(1)
    unit.power_cycle()
    shelf_rack.run(0.5)
    assert m.read(1, "uptime") == 0
    unit.hang()
    assert unit.state == "hung"
    with pytest.raises(DeviceTimeout):
        m.read(1, "uptime")
    shelf_rack.run(2.5)
    assert unit.state == "on" and unit.watchdog_resets == 1
    addr = m.regmap(1).get("reset_cause").address
    assert m.read_registers(1, "input", addr, 1) == [RESET_WATCHDOG]
    unit.power_cycle(off_s=1.0)  # a brown-out: off the bus for a second
    with pytest.raises(DeviceTimeout):
        m.read(1, "uptime")
    shelf_rack.run(1.2)
    assert m.read(1, "serial") == "EMU-0001"
    assert unit.resets == 3


def test_babbler_collides_then_goes_quiet(shelf_rack: Rack) -> None:
    m = shelf_rack.master
    m.timeout = 0.02
    with shelf_rack.babbler():
        with pytest.raises((CrcError, DeviceTimeout, ValueError)):
            m.read(1, "serial")
    shelf_rack.run(0.01)
    assert m.read(1, "serial") == "EMU-0001"
    assert m.counters.frame_errors + m.counters.crc_errors >= 1


def test_scenario_vocabulary_checks_its_arguments(shelf_rack: Rack) -> None:
    with pytest.raises(ValueError):
        shelf_rack.psu(1, 7)
    with pytest.raises(ValueError):
        shelf_rack.feed(1, "C")
    with pytest.raises(ValueError):
        shelf_rack.cdu(1)  # a shelf, not a CDU
    with pytest.raises(KeyError):
        shelf_rack.board(42)
    assert shelf_rack.devices == [(1, "power_shelf", "shelf-1")]


def test_cdu_vocabulary_reaches_the_plant() -> None:
    with small_rack(3) as rack:
        cdu = rack.cdu(3)
        cdu.leak("manifold").heat_load(50_000)
        assert cdu.plant.wet == 1 << 1 and cdu.plant.heat_load_w == 50_000
        cdu.pump(2).fail("overcurrent")
        assert cdu.plant.pumps[1].failure == "overcurrent"
        cdu.sensor("supply_temp").open_circuit()
        assert cdu.plant.sensors()[1] == 32767
        cdu.sensor("t_return").stuck(2500)
        assert cdu.plant.sensors()[2] == 2500
        with pytest.raises(KeyError):
            cdu.sensor("vibes")
        with pytest.raises(ValueError):
            cdu.pump(3)


def test_realtime_on_a_pty_answers_pyserial(tmp_path: Path) -> None:
    link = tmp_path / "rack" / "ttyRACK"
    with small_rack(1, 3) as rack:
        port = rack.start_realtime(link)
        assert Path(port).is_symlink()
        with serial.Serial(port, 115200, parity="N", timeout=2) as ser:
            for unit in (1, 3):
                time.sleep(0.01)  # a Modbus client keeps t3.5 of silence before it transmits
                ser.write(build(unit, ReadRequest(4, 16, 8)))
                reply = ser.read(21)
                assert reply[:3] == bytes([unit, 4, 16])
                assert reply[3:11] == f"EMU-{unit:04d}".encode()
        assert rack.runner.error is None
    assert not link.exists()


@pytest.mark.slow
@pytest.mark.vm
def test_vm_rack_is_reproducible_from_its_seed() -> None:
    """The point of lockstep virtual time: the real firmware in the VM, a noisy line,
    plant noise — and two runs with one seed put the same bytes on the wire at the
    same microseconds, and leave the plants in the same state."""

    def run_once() -> tuple[list[tuple[int, int]], float]:
        spec = rackspec.default("vm")
        spec = dataclasses.replace(spec, boards=spec.boards[::2], seed=5)  # shelf 1, CDU 3
        with Rack(spec) as rack:
            cap = Capture(bus=rack.bus)
            rack.line.ber(2e-3)
            for _ in range(10):
                for unit in (1, 3):
                    try:
                        rack.master.read_block(unit, "status")
                    except (CrcError, DeviceTimeout):
                        pass
                rack.run(0.3)
            return [(b.t_us, b.value) for b in cap.bytes], rack.cdu(3).plant.t_supply_c

    first = run_once()
    assert len(first[0]) > 500
    assert run_once() == first
