"""The RS-485 bus: byte timing, half-duplex delivery, collisions, determinism, pacing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from talker import Talker

from rackhil.bus import GARBLED, Bus, WireByte
from rackhil.clock import RealTimePacer
from rackhil.transport import HostPort
from rackhil.wire import LineSettings
from rackproto.crc import check, with_crc

LINE = LineSettings()  # 115200 8E1: 95 us per byte, t3.5 = 1750 us
B = LINE.byte_us


class Responder:
    """A board stand-in: frames RX on t3.5 silence and answers its unit id after a turnaround."""

    def __init__(self, name: str, unit: int, line: LineSettings = LINE, turnaround_us: int = 300) -> None:
        self.name = name
        self.unit = unit
        self.line = line
        self.turnaround_us = turnaround_us
        self.rx: list[tuple[int, int]] = []
        self.frames: list[tuple[int, bytes]] = []  # (arrival of last byte, frame)
        self.deliveries: list[tuple[bytes, int, int]] = []
        self._pending: list[tuple[int, bytes]] = []

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        self.deliveries.append((data, t0_us, byte_us))
        self.rx.extend((t0_us + (i + 1) * byte_us, b) for i, b in enumerate(data))

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        self.rx.sort()
        t35 = self.line.t35_us
        while self.rx:
            n = 1
            while n < len(self.rx) and self.rx[n][0] - self.rx[n - 1][0] < t35:
                n += 1
            last = self.rx[n - 1][0]
            if n == len(self.rx) and last + t35 > until_us:
                break  # frame may still be growing
            frame = bytes(b for _, b in self.rx[:n])
            del self.rx[:n]
            self.frames.append((last, frame))
            if frame and frame[0] == self.unit and check(frame):
                reply = with_crc(bytes([self.unit, frame[1], 2, 0x12, 0x34]))
                self._pending.append((last + t35 + self.turnaround_us, reply))
        out = [p for p in self._pending if p[0] <= until_us]
        self._pending = [p for p in self._pending if p[0] > until_us]
        return out


REQUEST = with_crc(bytes([7, 3, 0, 0, 0, 1]))


def test_request_reaches_every_node_with_byte_timing() -> None:
    bus = Bus(LINE)
    host = HostPort(bus)
    boards = [bus.attach(Responder(f"b{i}", unit=i + 5)) for i in range(3)]
    host.write(REQUEST)
    bus.run_until(10_000)
    for board in boards:
        assert board.frames[0][1] == REQUEST
        # byte i lands at start + (i+1) * byte time; the request started at t = 0
        assert board.frames[0][0] == len(REQUEST) * B
        assert all(byte_us == B for _, _, byte_us in board.deliveries)
        assert board.deliveries[0][1] == 0


def test_only_the_addressed_node_answers_and_the_host_sees_exact_timing() -> None:
    bus = Bus(LINE)
    host = HostPort(bus)
    b7 = bus.attach(Responder("b7", unit=7))
    b8 = bus.attach(Responder("b8", unit=8))
    reply = host.transact(REQUEST, timeout=0.1)
    assert reply == with_crc(bytes([7, 3, 2, 0x12, 0x34]))
    request_end = len(REQUEST) * B
    reply_end = request_end + LINE.t35_us + 300 + len(reply) * B
    # read_frame returns once t3.5 of silence followed the last reply byte
    assert bus.now_us >= reply_end + LINE.t35_us
    assert bus.now_us < reply_end + LINE.t35_us + bus.quantum_us
    bus.run(0.01)
    assert [f for _, f in b8.frames] == [REQUEST, reply]  # b8 heard b7 on the shared wire
    assert [f for _, f in b7.frames] == [REQUEST]  # a node does not hear itself


def test_read_timeout_is_virtual_and_exact() -> None:
    bus = Bus(LINE)
    host = HostPort(bus, timeout=0.25)
    assert host.read(4) == b""
    assert bus.now_us == 250_000
    assert host.read_frame(timeout=0.01) == b""
    assert bus.now_us == 260_000


def test_node_bursts_from_one_source_queue_back_to_back() -> None:
    bus = Bus(LINE)
    host = HostPort(bus)
    bus.attach(Talker("t", [(1000, b"\x01\x02"), (1000, b"\x03")]))
    bus.run_until(5000)
    times = []
    got = bytearray()
    for t, b in host._rx:
        times.append(t)
        got.append(b)
    assert bytes(got) == b"\x01\x02\x03"
    assert times == [1000 + B, 1000 + 2 * B, 1000 + 3 * B]


def test_collision_garbles_exactly_the_overlapping_bytes() -> None:
    a_data, b_data = bytes(range(10)), bytes(range(100, 110))
    bus = Bus(LINE, seed=3)
    host = HostPort(bus)
    seen: list[WireByte] = []
    bus.add_listener(seen.append)
    bus.attach(Talker("a", [(1000, a_data)]))
    bus.attach(Talker("b", [(1500, b_data)]))
    bus.run_until(5000)
    assert bus.collisions == 1
    by_src = {s: [e for e in seen if e.source == s] for s in "ab"}
    # a's bytes 5..9 overlap b's wire time [1500, 2450); b's 0..4 overlap [1000, 1950)
    assert [bool(e.flags & GARBLED) for e in by_src["a"]] == [False] * 5 + [True] * 5
    assert [bool(e.flags & GARBLED) for e in by_src["b"]] == [True] * 5 + [False] * 5
    assert bytes(e.value for e in by_src["a"][:5]) == a_data[:5]
    assert all(e.value != a_data[i] for i, e in enumerate(by_src["a"]) if i >= 5)
    assert bytes(e.value for e in by_src["b"][5:]) == b_data[5:]
    # the host reads the same garbled stream, in arrival order
    assert host.read_all() == bytes(e.value for e in seen)
    assert [e.t_us for e in seen] == sorted(e.t_us for e in seen)


def test_collision_reaches_active_nodes_garbled_after_the_first_quantum() -> None:
    bus = Bus(LINE, seed=1)
    ear = bus.attach(Talker("ear", []))
    bus.attach(Talker("a", [(0, bytes(40))]))  # 0 .. 3800 us
    bus.attach(Talker("b", [(2500, bytes(10))]))  # 2500 .. 3450 us, inside a's burst
    bus.run_until(10_000)
    # a's bytes sit on a 95 us grid from 0, b's from 2500 (2500 % 95 == 30)
    a_bytes = [(t, v) for t, v in ear.heard if t % B == 0]
    b_bytes = [(t, v) for t, v in ear.heard if t % B == 2500 % B]
    assert len(a_bytes) == 40 and len(b_bytes) == 10
    # b is the later driver: every one of its bytes overlaps a and is garbage for everyone
    assert all(v != 0 for _, v in b_bytes)
    # a's bytes 26..36 overlap b; those already handed to the nodes in the step where
    # b appeared (arrival <= 3000 us) stay clean, the rest of the overlap is garbled
    for i, (t, v) in enumerate(a_bytes):
        assert t == (i + 1) * B
        assert (v != 0) == (31 <= i <= 36), (i, t, v)


def test_no_collision_when_bursts_just_touch() -> None:
    bus = Bus(LINE)
    bus.attach(Talker("a", [(0, b"\xaa" * 4)]))
    bus.attach(Talker("b", [(4 * B, b"\xbb" * 4)]))
    host = HostPort(bus)
    bus.run_until(5000)
    assert bus.collisions == 0
    assert host.read_all() == b"\xaa" * 4 + b"\xbb" * 4


def test_same_seed_same_garbage_different_seed_different_garbage() -> None:
    def run(seed: int) -> bytes:
        bus = Bus(LINE, seed=seed)
        host = HostPort(bus)
        bus.attach(Talker("a", [(0, bytes(64))]))
        bus.attach(Talker("b", [(0, bytes(64))]))
        bus.run_until(20_000)
        return host.read_all()

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_quantum_never_exceeds_t35() -> None:
    assert Bus(LINE, quantum_us=5000).quantum_us == LINE.t35_us
    slow = LineSettings(baud=9600)
    assert Bus(slow, quantum_us=1000).quantum_us == 1000
    with pytest.raises(ValueError):
        Bus(LINE, quantum_us=0)


def test_duplicate_names_rejected_and_detach_silences() -> None:
    bus = Bus(LINE)
    host = HostPort(bus)
    t = bus.attach(Talker("t", [(3000, b"x")]))
    with pytest.raises(ValueError):
        bus.attach(Talker("t", []))
    bus.detach(t)
    bus.run_until(5000)
    assert host.in_waiting == 0
    assert t not in bus.nodes


def test_busy_tracks_the_driver() -> None:
    bus = Bus(LINE)
    host = HostPort(bus)
    host.write(bytes(20))
    bus.step()
    assert bus.busy()
    assert bus.busy(at_us=0)
    host.flush()
    bus.run_until(bus.now_us + 3000)
    assert not bus.busy()


def test_real_time_pacer_sleeps_to_the_wall_clock() -> None:
    wall = [100.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        wall[0] += s

    pacer = RealTimePacer(speed=2.0, sleep=sleep, monotonic=lambda: wall[0])
    bus = Bus(LINE, pacer=pacer)
    bus.run_until(100_000)  # 0.1 s virtual at 2x speed -> 0.05 s wall
    assert wall[0] == pytest.approx(100.05)
    assert all(s > 0 for s in slept)
    wall[0] += 1.0  # the wall clock runs ahead: the pacer reports the lag, does not sleep
    n = len(slept)
    assert pacer.wait_until(bus.now_us + 1000) == pytest.approx(0.9995)
    assert len(slept) == n


def test_pymodbus_sync_client_over_an_in_process_port() -> None:
    from pymodbus.client import ModbusSerialClient

    bus = Bus(LINE)
    bus.attach(Responder("b7", unit=7))
    client = ModbusSerialClient("unused", baudrate=LINE.baud, parity="E", timeout=1, retries=0)
    client.socket = HostPort(bus, step_on_poll=True)  # pymodbus then skips opening a port
    rr = client.read_holding_registers(0, count=1, device_id=7)
    assert not rr.isError() and rr.registers == [0x1234]
    assert bus.now_us < 100_000  # a few quanta of virtual time, not a timeout
    client.close()


burst = st.tuples(st.integers(0, 3000), st.binary(min_size=1, max_size=30))  # (gap before, data)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(burst, max_size=4), min_size=2, max_size=3), st.integers(0, 2**16))
def test_collision_marks_match_an_interval_model(scripts: list[list[tuple[int, bytes]]], seed: int) -> None:
    """Every byte is garbled iff its wire time overlaps another driver's burst."""
    bus = Bus(LINE, seed=seed)
    host = HostPort(bus)
    seen: list[WireByte] = []
    bus.add_listener(seen.append)
    intervals: dict[str, list[tuple[int, int]]] = {}
    for n, script in enumerate(scripts):
        t = 0
        timed = []
        for gap, data in script:
            t += gap
            timed.append((t, data))
            intervals.setdefault(f"t{n}", []).append((t, t + len(data) * B))
            t += len(data) * B
        bus.attach(Talker(f"t{n}", timed))
    bus.run_until(200_000)
    assert len(seen) == sum(len(d) for s in scripts for _, d in s)
    for e in seen:
        start = e.t_us - B
        overlaps = any(
            a < e.t_us and start < b for src, spans in intervals.items() if src != e.source for a, b in spans
        )
        assert bool(e.flags & GARBLED) == overlaps
    # the host reads exactly what the monitor saw, in arrival order
    assert host.read_all() == bytes(e.value for e in sorted(seen, key=lambda e: e.t_us))


def test_idle_quantum_changes_nothing_on_the_wire() -> None:
    def run(idle_quantum_us: int | None) -> tuple[list[WireByte], list[bytes], int]:
        bus = Bus(LINE, idle_quantum_us=idle_quantum_us)
        seen: list[WireByte] = []
        bus.add_listener(seen.append)
        steps: list[int] = []
        bus.add_step_hook(steps.append)
        host = HostPort(bus)
        bus.attach(Responder("b7", unit=7))
        replies = []
        for _ in range(5):
            bus.run(0.05)  # idle time between polls
            host.write(REQUEST[:4])
            host.write(REQUEST[4:])  # queued behind the first write: starts when it ends
            replies.append(host.read_frame(timeout=0.05))
        bus.run_until(500_000)
        return seen, replies, len(steps)

    fine, fine_replies, fine_steps = run(None)
    coarse, coarse_replies, coarse_steps = run(20_000)
    assert fine == coarse and fine_replies == coarse_replies
    assert fine_replies == [with_crc(bytes([7, 3, 2, 0x12, 0x34]))] * 5
    assert coarse_steps < fine_steps / 5
    assert Bus(LINE, idle_quantum_us=10).idle_quantum_us == Bus(LINE).quantum_us


# A minimal MicroPython "board" for the WebAssembly VM: echoes each frame back t3.5
# after it ends, driving DE around the transmission, through the emulated board's HAL.
VM_ECHO = """
import jshal, uctypes
T35 = 1750
class Echo:
    def __init__(self):
        self.buf = bytearray(256)
        self.n = 0
        self.last = 0
        self.addr = uctypes.addressof(self.buf)
        self.sending = False
    def poll(self):
        now = jshal.ticks_us()
        if self.sending:
            if not jshal.uart_tx_done():
                return 50
            jshal.de_value(0)
            self.sending = False
        while jshal.uart_any():
            b = jshal.uart_read()
            if self.n < 256:
                self.buf[self.n] = b
                self.n += 1
            self.last = now
        if self.n:
            idle = now - self.last
            if idle >= T35:
                jshal.de_value(1)
                jshal.uart_send(self.addr, self.n)
                self.n = 0
                self.sending = True
                return 50
            return T35 - idle
        return 100000
board = Echo()
"""


@pytest.fixture
def mcu():
    from rackhil.mcu import McuError, McuProcess

    try:
        proc = McuProcess()
    except McuError as exc:  # Node or the wasm package missing
        pytest.skip(f"MicroPython VM unavailable: {exc}")
    with proc:
        yield proc


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_vm_boards_on_the_bus_exact_timing_and_collision(mcu) -> None:
    from rackhil.capture import Capture
    from rackhil.mcu import VmNode

    bus = Bus(LINE)
    cap = Capture(bus=bus)
    host = HostPort(bus)
    echo = bus.attach(VmNode(mcu, "echo1", {"/main.py": VM_ECHO}, config={"wdt_ms": 0}))
    assert host.transact(REQUEST, timeout=0.05) == REQUEST
    request, reply = cap.frames()
    assert reply.source == "echo1"
    # the firmware saw each byte at its wire time: it answers exactly t3.5 after the end
    assert reply.start_us - request.end_us == LINE.t35_us
    assert [v for _, v in echo.de_log] == [1, 0]
    # a second board answering the same frame drives the line at the same time: garbage
    bus.attach(VmNode(mcu, "echo2", {"/main.py": VM_ECHO}, config={"wdt_ms": 0}))
    garbled = host.transact(REQUEST, timeout=0.05)
    assert bus.collisions >= 1  # (each then echoes the other's garbage: they keep colliding)
    assert len(garbled) == 2 * len(REQUEST) and not check(garbled[: len(REQUEST)])
