"""Bus scheduler and Modbus client: block planning, intervals, dormancy, 02 pruning, counters.

The scheduler runs in virtual time against ``ScriptedLink`` (an in-memory bus whose
requests each take 5 ms of virtual time); the client runs against ``PtySlave``, a
small RTU server on the master side of a real pty, so pymodbus, pyserial and our
wrapper are exercised exactly as on a serial port. ``test_daemon_crash`` imports both.
"""

from __future__ import annotations

import asyncio
import os
import select
import struct
import threading
import time
import tty
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackctl.modbus_client import Counters, RtuClient, expected_length, t35
from rackctl.scheduler import (
    DORMANT,
    ONLINE,
    BusScheduler,
    DevicePoller,
    plan_reads,
    poll_intervals,
    scan,
)
from rackproto import regmap
from rackproto.crc import check, with_crc
from rackproto.errors import CrcError, DeviceTimeout, FrameError, ModbusException
from rackproto.regtypes import Register

TEST_MAP = """
[map]
name = "testboard"
board_type = 1

[[blocks]]
name = "fast"
table = "input"
base = 0
poll = 1
registers = [
  { name = "a", offset = 0, type = "u16" },
  { name = "b", offset = 1, type = "i16", scale = 0.1, unit = "V" },
  { name = "c", offset = 2, type = "u32" },
  { name = "d", offset = 7, type = "u16" },
  { name = "e", offset = 20, type = "u16" },
]

[[blocks]]
name = "slow"
table = "input"
base = 40
poll = 5
registers = [
  { name = "s1", offset = 0, type = "u16" },
  { name = "s2", offset = 1, type = "u16", poll = 1 },
]

[[blocks]]
name = "cfg"
table = "holding"
base = 0
poll = 10
registers = [
  { name = "h1", offset = 0, type = "u16", max = 100 },
  { name = "h2", offset = 1, type = "u16", access = "protected" },
]
"""


@pytest.fixture(scope="module")
def testmap(tmp_path_factory: pytest.TempPathFactory) -> Any:
    path = tmp_path_factory.mktemp("maps") / "testboard.toml"
    path.write_text(TEST_MAP)
    return regmap.load_path(path)


# ----------------------------------------------------------------------------- fakes


class VClock:
    """Virtual monotonic/wall clock shared by the scheduler and the fake bus."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


class ScriptedLink:
    """In-memory bus: per-unit words, dead units time out, missing addresses answer 02."""

    def __init__(self, clock: VClock, maps: dict[int, Any], request_time: float = 0.005):
        self.clock = clock
        self.request_time = request_time
        self.maps = maps
        self.words: dict[int, dict[str, dict[int, int]]] = {}
        for unit, m in maps.items():
            self.words[unit] = board_tables(m)
        self.dead: set[int] = set()
        self.faults: list[Exception] = []  # raised by the next requests, in order
        self.log: list[tuple[float, int, str, int, int]] = []
        self.writes: list[tuple[int, int, list[int]]] = []
        self._counters: dict[int, Counters] = {}
        self._busy = False

    def set(self, unit: int, name: str, value: Any) -> None:
        m = self.maps[unit]
        r = m.get(name)
        for i, w in enumerate(m.encode_value(r, value)):
            self.words[unit][r.table][r.address + i] = w

    def remove(self, unit: int, table: str, address: int) -> None:
        del self.words[unit][table][address]

    def counters(self, unit: int) -> Counters:
        return self._counters.setdefault(unit, Counters())

    async def _begin(self, unit: int) -> Counters:
        assert not self._busy, "overlapping requests on one bus"
        self._busy = True
        await asyncio.sleep(0)
        self.clock.t += self.request_time
        c = self.counters(unit)
        c.requests += 1
        return c

    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
        c = await self._begin(unit)
        try:
            self.log.append((self.clock.t, unit, table, address, count))
            if self.faults:
                raise self.faults.pop(0)
            if unit in self.dead or unit not in self.words:
                c.timeouts += 1
                raise DeviceTimeout(f"unit {unit}")
            data = self.words[unit][table]
            if any(a not in data for a in range(address, address + count)):
                c.exceptions += 1
                raise ModbusException(2, 4)
            c.ok += 1
            return [data[a] for a in range(address, address + count)]
        finally:
            self._busy = False

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        await self._begin(unit)
        try:
            self.writes.append((unit, address, list(values)))
            for i, v in enumerate(values):
                self.words[unit]["holding"][address + i] = v
        finally:
            self._busy = False

    async def write_coil(self, unit: int, address: int, value: bool) -> None:
        await self.write_registers(unit, address, [int(value)])

    async def read_identification(self, unit: int) -> dict[int, bytes]:
        raise ModbusException(1, 0x2B)


class PtySlave:
    """A minimal RTU server on a pty master. ``faults`` scripts the next answers:
    ``"drop"`` (no answer), ``"crc"`` (corrupt CRC), ``"short"`` (a valid frame one
    register short), ``("exc", code)``."""

    def __init__(self, units: dict[int, dict[str, dict[int, int]]]):
        self.units = units
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.faults: list[Any] = []
        self.requests: list[tuple[float, bytes]] = []
        self.replies: list[tuple[float, bytes]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        os.close(self.master)
        os.close(self._slave)

    def inject(self, data: bytes) -> None:
        """Bytes on the line that no request asked for (a late or foreign answer)."""
        os.write(self.master, data)

    def _run(self) -> None:
        buf = b""
        while not self._stop:
            ready, _, _ = select.select([self.master], [], [], 0.01)
            if not ready:
                continue
            try:
                buf += os.read(self.master, 512)
            except OSError:
                return
            while len(buf) >= 8:
                n = 9 + buf[6] if buf[1] in (15, 16) else 8
                if len(buf) < n:
                    break
                frame, buf = buf[:n], buf[n:]
                if check(frame):
                    self._answer(frame)

    def _answer(self, frame: bytes) -> None:
        self.requests.append((time.monotonic(), frame))
        unit, fc = frame[0], frame[1]
        if unit not in self.units:
            return
        fault = self.faults.pop(0) if self.faults else None
        if fault == "drop":
            return
        addr, count = struct.unpack(">HH", frame[2:6])
        tables = self.units[unit]
        table = {1: "coil", 2: "discrete", 3: "holding", 4: "input", 5: "coil", 6: "holding",
                 16: "holding"}.get(fc)
        if isinstance(fault, tuple):
            out = with_crc(bytes([unit, fc | 0x80, fault[1]]))
        elif table is None:
            out = with_crc(bytes([unit, fc | 0x80, 1]))
        elif fc in (1, 2, 3, 4) and any(a not in tables[table] for a in range(addr, addr + count)):
            out = with_crc(bytes([unit, fc | 0x80, 2]))
        elif fc in (3, 4):
            n = count - 1 if fault == "short" else count  # "short": a reply to another request
            data = b"".join(struct.pack(">H", tables[table][a]) for a in range(addr, addr + n))
            out = with_crc(bytes([unit, fc, len(data)]) + data)
        elif fc in (1, 2):
            bits = [tables[table][a] for a in range(addr, addr + count)]
            packed = bytes(
                sum((bits[i + j] & 1) << j for j in range(8) if i + j < count)
                for i in range(0, count, 8)
            )
            out = with_crc(bytes([unit, fc, len(packed)]) + packed)
        elif fc == 5:
            tables["coil"][addr] = 1 if count == 0xFF00 else 0
            out = frame
        elif fc == 6:
            tables["holding"][addr] = count
            out = frame
        else:  # 16
            for i in range(count):
                tables["holding"][addr + i] = struct.unpack(">H", frame[7 + 2 * i : 9 + 2 * i])[0]
            out = with_crc(frame[:6])
        if fault == "crc":
            out = out[:-1] + bytes([out[-1] ^ 0x5A])
        self.replies.append((time.monotonic(), out))
        os.write(self.master, out)


def board_tables(m: Any) -> dict[str, dict[int, int]]:
    """Zeroed dense tables, as the firmware keeps them: every address below the
    table's size reads (gaps read 0); beyond it, exception 02."""
    return {t: dict.fromkeys(range(m.table_size(t)), 0)
            for t in ("input", "holding", "coil", "discrete")}


async def run_for(sched: BusScheduler, clock: VClock, seconds: float) -> None:
    """Drive the scheduler in virtual time until ``seconds`` have passed."""
    end = clock.t + seconds
    while True:
        delay = await sched.step()
        if clock.t + delay >= end:
            clock.t = end
            return
        clock.t += delay


def make_scheduler(link: ScriptedLink, clock: VClock, maps: dict[int, Any], **kw: Any):
    events: list[tuple[Any, ...]] = []
    pollers = []
    for unit, m in maps.items():
        blocks = plan_reads(m.registers, poll_intervals(m), max_gap=4)
        pollers.append(DevicePoller(f"dev{unit}", unit, m.name, m, blocks))
    sched = BusScheduler(
        link, pollers, clock=clock, wall=clock,
        on_values=lambda d, vals, ts: events.append(("values", d.unit, [v.name for v in vals], ts)),
        on_state=lambda d, state, ts: events.append(("state", d.unit, state, ts)),
        on_dropped=lambda d, reg, why: events.append(("dropped", d.unit, reg)),
        **kw,
    )
    return sched, events


# ------------------------------------------------------------------------ planning


def spans(blocks: list[Any]) -> list[tuple[str, int, int, float]]:
    return sorted((b.table, b.start, b.count, b.interval) for b in blocks)


def test_plan_merges_contiguous_and_bridges_small_gaps(testmap: Any) -> None:
    blocks = plan_reads(testmap.registers, poll_intervals(testmap), max_gap=4)
    assert spans(blocks) == [
        ("holding", 0, 2, 10.0),
        ("input", 0, 8, 1.0),  # a b c(2 words) + 3 unmapped words bridged + d
        ("input", 20, 1, 1.0),  # 12 unmapped words: not bridged
        ("input", 40, 1, 5.0),
        ("input", 41, 1, 1.0),  # s2 overrides its block's 5 s
    ]
    first = next(b for b in blocks if b.start == 0 and b.table == "input")
    assert first.names == ["a", "b", "c", "d"]


def test_plan_without_gap_bridging_splits_at_holes(testmap: Any) -> None:
    blocks = plan_reads(testmap.registers, poll_intervals(testmap), max_gap=0)
    assert ("input", 0, 4, 1.0) in spans(blocks) and ("input", 7, 1, 1.0) in spans(blocks)


def test_poll_overrides_by_register_and_block(testmap: Any) -> None:
    iv = poll_intervals(testmap, {"fast": 2.0, "d": 0.5, "cfg": 0})
    assert iv["a"] == iv["e"] == 2.0 and iv["d"] == 0.5
    assert "h1" not in iv and "h2" not in iv
    with pytest.raises(KeyError):
        poll_intervals(testmap, {"nope": 1.0})


def test_plan_of_the_real_maps_respects_the_read_limit() -> None:
    for name in ("power_shelf", "cdu"):
        m = regmap.load(name)
        iv = poll_intervals(m)
        blocks = plan_reads(m.registers, iv)
        covered = [n for b in blocks for n in b.names]
        assert sorted(covered) == sorted(iv)
        for b in blocks:
            assert b.count <= (125 if b.table in ("input", "holding") else 2000)
        # merging across slower registers: far fewer requests than telemetry blocks
        assert len([b for b in blocks if b.interval == 1.0 and b.table == "input"]) <= 3


@st.composite
def register_layouts(draw: st.DrawFn) -> list[Register]:
    regs = []
    addr = draw(st.integers(0, 50))
    for i in range(draw(st.integers(1, 60))):
        count = draw(st.sampled_from([1, 1, 2, 8]))
        regs.append(Register(f"r{i}", draw(st.sampled_from(["input", "holding"])), addr, "u16",
                             count))
        addr += count + draw(st.sampled_from([0, 0, 1, 3, 10, 40]))
    return regs


@settings(max_examples=100, deadline=None)
@given(register_layouts(), st.integers(0, 8), st.integers(0, 40), st.data())
def test_plan_properties(regs: list[Register], max_gap: int, max_bridge: int, data: Any) -> None:
    intervals = {r.name: data.draw(st.sampled_from([0, 1.0, 5.0])) for r in regs}
    blocks = plan_reads(regs, intervals, max_gap, max_bridge)
    seen = [n for b in blocks for n in b.names]
    assert sorted(seen) == sorted(n for n, i in intervals.items() if i)  # each exactly once
    mapped = {(r.table, a) for r in regs for a in range(r.address, r.end)}
    for b in blocks:
        assert 1 <= b.count <= 125
        for r in b.registers:
            assert r.table == b.table and intervals[r.name] == b.interval
            assert b.start <= r.address and r.end <= b.start + b.count
        # no hole wider than allowed
        holes = [a for a in range(b.start, b.start + b.count) if (b.table, a) not in mapped]
        assert len(holes) <= max_gap * max(1, len(b.registers) - 1)


# ----------------------------------------------------------------- polling in time


async def test_each_block_is_polled_at_its_own_interval(testmap: Any) -> None:
    clock = VClock()
    link = ScriptedLink(clock, {1: testmap})
    sched, events = make_scheduler(link, clock, {1: testmap})
    await run_for(sched, clock, 9.9)
    reads: dict[tuple[str, int], int] = {}
    for _, _, table, start, _ in link.log:
        reads[(table, start)] = reads.get((table, start), 0) + 1
    assert reads == {("input", 0): 10, ("input", 20): 10, ("input", 41): 10,
                     ("input", 40): 2, ("holding", 0): 1}
    values = [e for e in events if e[0] == "values" and e[2][0] == "a"]
    assert values[0][2] == ["a", "b", "c", "d"]


async def test_values_are_decoded_and_scaled(testmap: Any) -> None:
    clock = VClock()
    link = ScriptedLink(clock, {1: testmap})
    link.set(1, "b", -12.5)
    link.set(1, "c", 70000)
    got: dict[str, Any] = {}
    sched, _ = make_scheduler(link, clock, {1: testmap})
    sched.on_values = lambda d, vals, ts: got.update({v.name: (v.value, v.unit) for v in vals})
    await run_for(sched, clock, 0.5)
    assert got["b"] == (-12.5, "V") and got["c"] == (70000, "")


async def test_a_dead_device_goes_dormant_and_is_reprobed_slowly(testmap: Any) -> None:
    clock = VClock()
    maps = {1: testmap, 2: testmap}
    link = ScriptedLink(clock, maps)
    link.dead.add(2)
    sched, events = make_scheduler(link, clock, maps, dormant_after=3, reprobe=30.0)
    await run_for(sched, clock, 9.9)
    dev2 = sched.devices[1]
    assert dev2.state == DORMANT
    to2 = [e for e in link.log if e[1] == 2]
    assert len(to2) == 3  # three failed polls, then silence
    t_dormant = to2[-1][0]
    assert ("state", 2, DORMANT) == events[[e[0] for e in events].index("state")][:3]
    healthy = sum(1 for e in link.log if e[1] == 1 and e[2:4] == ("input", 0))
    assert healthy == 10  # the live device kept its cadence

    await run_for(sched, clock, 55)  # two probes, 30 s apart
    probes = [e for e in link.log if e[1] == 2 and e[0] > t_dormant]
    assert len(probes) == 2 and all(p[4] == 1 for p in probes)
    assert probes[1][0] - probes[0][0] == pytest.approx(30.0, abs=0.1)

    link.dead.discard(2)
    await run_for(sched, clock, 31)
    assert dev2.state == ONLINE and dev2.failures == 0
    assert [e[2] for e in events if e[0] == "state"] == [DORMANT, ONLINE]
    after = [e for e in link.log if e[1] == 2 and e[4] > 1]
    assert after, "the plan resumes right after a successful probe"


async def test_isolated_failures_do_not_make_a_device_dormant(testmap: Any) -> None:
    clock = VClock()
    link = ScriptedLink(clock, {1: testmap})
    sched, events = make_scheduler(link, clock, {1: testmap}, dormant_after=3)
    for _ in range(5):
        link.faults = [DeviceTimeout("x"), CrcError("y")]
        await run_for(sched, clock, 1.0)
    assert sched.devices[0].state == ONLINE
    assert not [e for e in events if e[0] == "state"]


async def test_exception_02_splits_the_block_and_drops_only_the_bad_register(testmap: Any) -> None:
    clock = VClock()
    link = ScriptedLink(clock, {1: testmap})
    link.remove(1, "input", 3)  # second word of u32 'c' is not implemented by the device
    sched, events = make_scheduler(link, clock, {1: testmap})
    await run_for(sched, clock, 5)
    dev = sched.devices[0]
    assert list(dev.dropped) == ["c"]
    assert [e for e in events if e[0] == "dropped"] == [("dropped", 1, "c")]
    t_drop = max(t for t, _, table, start, count in link.log
                 if table == "input" and start <= 3 < start + count)
    assert t_drop < clock.t - 3  # found within the first second, never asked again
    polled = {n for e in events if e[0] == "values" for n in e[2]}
    assert {"a", "b", "d", "e"} <= polled and "c" not in polled
    assert all(3 not in range(b.start, b.start + b.count)
               for b in dev.blocks if b.table == "input")


async def test_other_exceptions_keep_the_register_and_the_device(testmap: Any) -> None:
    clock = VClock()
    link = ScriptedLink(clock, {1: testmap})
    link.faults = [ModbusException(6, 4)] * 4  # busy
    sched, _ = make_scheduler(link, clock, {1: testmap})
    await run_for(sched, clock, 3)
    dev = sched.devices[0]
    assert dev.state == ONLINE and not dev.dropped


async def test_most_overdue_block_goes_first_across_devices(testmap: Any) -> None:
    clock = VClock()
    maps = {u: testmap for u in (1, 2, 3)}
    link = ScriptedLink(clock, maps, request_time=0.2)  # a slow bus: 5 requests per second
    sched, _ = make_scheduler(link, clock, maps)
    await run_for(sched, clock, 20)
    per_unit = [sum(1 for e in link.log if e[1] == u) for u in (1, 2, 3)]
    assert min(per_unit) >= 0.85 * max(per_unit)  # overloaded, yet no device starves


async def test_scan_identifies_boards_by_the_identity_block() -> None:
    clock = VClock()
    ps, cdu = regmap.load("power_shelf"), regmap.load("cdu")
    link = ScriptedLink(clock, {1: ps, 3: cdu})
    link.set(1, "board_type", "power_shelf")
    link.set(1, "serial", "PS-0001")
    link.set(3, "board_type", "cdu")
    found = await scan(link, range(1, 6))
    assert [(f.unit, f.board_type, f.map_name) for f in found] == [
        (1, "power_shelf", "power_shelf"), (3, "cdu", "cdu")]
    assert found[0].identity["serial"] == "PS-0001"


# ------------------------------------------------------------ client over a real pty


@pytest.fixture
def pty_slave(testmap: Any):
    slave = PtySlave({1: board_tables(testmap)})
    slave.units[1]["input"][0] = 1234
    yield slave
    slave.close()


@pytest.fixture
async def client(pty_slave: PtySlave):
    c = RtuClient(pty_slave.path, baud=115200, parity="N", timeout=0.2, retries=2)
    await c.connect()
    yield c
    c.close()


@pytest.mark.timeout(20)
async def test_client_counts_crc_errors_timeouts_and_exceptions_separately(
    pty_slave: PtySlave, client: RtuClient
) -> None:
    assert await client.read(1, "input", 0, 2) == [1234, 0]
    pty_slave.faults = ["crc", "drop"]  # two bad attempts, the third succeeds
    assert await client.read(1, "input", 0, 1) == [1234]
    pty_slave.faults = ["crc", "crc", "crc"]
    with pytest.raises(CrcError):
        await client.read(1, "input", 0, 1)
    pty_slave.faults = ["drop", "drop", "drop"]
    with pytest.raises(DeviceTimeout):
        await client.read(1, "input", 0, 1)
    with pytest.raises(ModbusException) as exc:
        await client.read(1, "input", 100, 1)  # beyond the table: exception 02, not retried
    assert exc.value.code == 2
    c = client.counters(1)
    assert (c.requests, c.ok, c.crc_errors, c.timeouts, c.exceptions, c.retries) == (5, 2, 4, 4, 1, 6)
    assert c.exception_codes == {2: 1}
    assert client.counters(2).requests == 0


@pytest.mark.timeout(20)
async def test_client_rejects_an_answer_that_does_not_fit_the_request(
    pty_slave: PtySlave, client: RtuClient
) -> None:
    pty_slave.faults = ["short"]
    assert await client.read(1, "input", 0, 3) == [1234, 0, 0]  # retried, then right
    pty_slave.faults = ["short"] * 3
    with pytest.raises(FrameError):
        await client.read(1, "input", 0, 3)
    c = client.counters(1)
    assert (c.mismatched, c.crc_errors, c.timeouts, c.ok) == (4, 0, 0, 1)


@pytest.mark.timeout(20)
async def test_client_flushes_stale_input_before_a_request(
    pty_slave: PtySlave, client: RtuClient
) -> None:
    late = with_crc(bytes([1, 4, 2, 0x99, 0x99]))  # a late answer that would fit the request
    pty_slave.inject(late)
    await asyncio.sleep(0.05)
    assert await client.read(1, "input", 0, 1) == [1234]
    assert client.counters(1).stale_bytes == len(late)


@pytest.mark.timeout(20)
async def test_client_leaves_t35_of_silence_before_transmitting(
    pty_slave: PtySlave, testmap: Any
) -> None:
    c = RtuClient(pty_slave.path, baud=9600, parity="N", timeout=0.2, retries=0)
    await c.connect()
    try:
        for _ in range(5):
            await c.read(1, "input", 0, 1)
    finally:
        c.close()
    gaps = [req[0] - rep[0] for rep, req in zip(pty_slave.replies, pty_slave.requests[1:], strict=False)]
    assert len(gaps) == 4 and min(gaps) >= t35(9600) * 0.9


@pytest.mark.timeout(20)
async def test_client_writes_single_and_multiple_registers(
    pty_slave: PtySlave, client: RtuClient
) -> None:
    await client.write_registers(1, 0, [42])
    await client.write_registers(1, 0, [7, 8])
    assert await client.read(1, "holding", 0, 2) == [7, 8]
    assert [f[1][1] for f in pty_slave.requests] == [6, 16, 3]


def test_timing_and_length_helpers() -> None:
    assert t35(9600, 8, "E", 1) == pytest.approx(3.5 * 11 / 9600)
    assert t35(115200) == 0.00175
    assert expected_length(bytes([1, 3, 4])) == 9
    assert expected_length(bytes([1, 0x84])) == 5
    assert expected_length(bytes([1, 16])) == 8
    assert expected_length(bytes([1])) is None



async def test_scan_falls_back_to_device_identification() -> None:
    class MeiOnly(ScriptedLink):
        async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
            if unit == 9:
                raise ModbusException(2, 4)  # a third-party board without our identity block
            return await super().read(unit, table, address, count)

        async def read_identification(self, unit: int) -> dict[int, bytes]:
            return {0: b"Acme", 1: b"Acme CDU-9", 2: b"1.4"}

    clock = VClock()
    link = MeiOnly(clock, {})
    link.words[9] = {}
    found = await scan(link, [2, 9])
    assert [(f.unit, f.map_name) for f in found] == [(9, "cdu")]
    assert found[0].identity == {"vendor": "Acme", "model": "Acme CDU-9", "fw_version": "1.4"}
