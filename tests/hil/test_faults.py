"""Fault injection: line noise statistics, drops, babbling, board, sensor and plant faults."""

from __future__ import annotations

import math
import statistics

import pytest
from talker import Talker

from rackhil.bus import FLIPPED, LOST, Bus
from rackhil.capture import Capture
from rackhil.faults import (
    AcLoss,
    BabblingNode,
    BitErrors,
    Drift,
    DroppedBytes,
    FaultSchedule,
    Leak,
    Noisy,
    OpenCircuit,
    PsuFailure,
    PumpFailure,
    SensorFailure,
    ShortCircuit,
    Stuck,
    power_cycle,
)
from rackhil.plants.cdu import Cdu
from rackhil.plants.cdu import io as cio
from rackhil.plants.power_shelf import PowerShelf
from rackhil.plants.power_shelf import io as pio
from rackhil.transport import HostPort
from rackhil.wire import LineSettings
from rackproto.crc import check, with_crc

LINE = LineSettings()
B = LINE.byte_us


class Responder(Talker):
    """Answers any CRC-valid frame for unit 1, t3.5 after it ended; counts power cycles."""

    def __init__(self, name: str = "board") -> None:
        super().__init__(name, [])
        self.rx: list[int] = []
        self.last_us = 0
        self.cycles = 0

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        self.rx.extend(data)
        self.last_us = t0_us + len(data) * byte_us

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        if self.rx and self.last_us + LINE.t35_us <= until_us:
            frame = bytes(self.rx)
            self.rx.clear()
            if frame[0] == 1 and check(frame):
                self.script.append((self.last_us + LINE.t35_us, with_crc(b"\x01\x03\x02\xbe\xef")))
        return super().advance(until_us)

    def power_cycle(self) -> None:
        self.cycles += 1
        self.rx.clear()


REQ = with_crc(b"\x01\x03\x00\x00\x00\x01")
PAYLOAD = bytes(range(256)) * 80  # 20480 bytes, 225280 bits at 8E1


def noisy_run(fault, *, seed: int = 5, line: LineSettings = LINE, payload: bytes = PAYLOAD) -> tuple[bytes, Capture]:
    bus = Bus(line, seed=seed)
    bus.add_line_fault(fault)
    cap = Capture(bus=bus)
    host = HostPort(bus)
    bus.attach(Talker("src", [(0, payload)]))
    bus.run_until(len(payload) * line.byte_us + 5000)
    return host.read_all(), cap


@pytest.mark.parametrize("ber", [1e-4, 1e-3, 1e-2])
def test_bit_error_rate_statistics(ber: float) -> None:
    fault = BitErrors(ber)
    got, cap = noisy_run(fault)
    nbits = len(PAYLOAD) * LINE.bits_per_byte
    expected = nbits * ber
    assert abs(fault.bits_flipped - expected) < 5 * math.sqrt(expected) + 1
    # bytes hit = 1 - (1 - p)^11 of all bytes
    p_byte = 1 - (1 - ber) ** LINE.bits_per_byte
    hit = sum(1 for e in cap.bytes if e.flags & FLIPPED)
    assert abs(hit - len(PAYLOAD) * p_byte) < 5 * math.sqrt(len(PAYLOAD) * p_byte) + 1
    # flips of parity/stop bits leave the data intact: changed bytes <= hit bytes
    changed = sum(1 for a, b in zip(got, PAYLOAD, strict=True) if a != b)
    assert 0 < changed <= hit
    assert len(got) == len(PAYLOAD)  # default: the UART hands over errored bytes


def test_bit_errors_are_reproducible_from_the_seed() -> None:
    a, _ = noisy_run(BitErrors(1e-3), seed=9)
    b, _ = noisy_run(BitErrors(1e-3), seed=9)
    c, _ = noisy_run(BitErrors(1e-3), seed=10)
    assert a == b and a != c


def test_zero_ber_is_a_clean_line() -> None:
    got, cap = noisy_run(BitErrors(0.0))
    assert got == PAYLOAD and not any(e.flags for e in cap.bytes)
    with pytest.raises(ValueError):
        BitErrors(1.5)


def test_drop_errored_discards_parity_errors_but_not_without_parity() -> None:
    def kept_and_lost(line: LineSettings) -> tuple[int, int, int]:
        got, cap = noisy_run(BitErrors(2e-3, drop_errored=True), line=line)
        hit = sum(1 for e in cap.bytes if e.flags & FLIPPED)
        lost = sum(1 for e in cap.bytes if e.flags & LOST)
        assert len(got) == len(PAYLOAD) - lost
        return hit, lost, hit - lost

    # 8E1: any single flipped bit is a parity or framing error -> the UART drops it;
    # only the rare byte with two flipped data bits slips through
    hit, lost, kept = kept_and_lost(LINE)
    assert hit > 300 and kept < 0.02 * hit
    # 8N1: a flipped data bit (8 of 10 bits) goes unnoticed by the UART
    hit, lost, kept = kept_and_lost(LineSettings(parity="N"))
    assert 0.7 * hit < kept < 0.9 * hit


def test_line_fault_window_and_sources() -> None:
    fault = BitErrors(0.5, start_us=1000, end_us=2000, sources={"src"})
    bus = Bus(LINE, seed=1)
    bus.add_line_fault(fault)
    host = HostPort(bus)
    bus.attach(Talker("src", [(0, b"\x00" * 4), (1000, b"\x00" * 4), (3000, b"\x00" * 4)]))
    bus.attach(Talker("other", [(1500, b"\x00" * 4)]))
    bus.run_until(6000)
    got = host.read_all()
    assert got[:4] == bytes(4) and got[-4:] == bytes(4)  # outside the window
    assert got[4:8] != bytes(4)  # "src" inside the window
    assert got[8:12] == bytes(4)  # "other" is not a listed source


def test_dropped_bytes_rate() -> None:
    fault = DroppedBytes(0.05)
    got, _ = noisy_run(fault)
    expected = len(PAYLOAD) * 0.05
    assert abs(fault.hits - expected) < 5 * math.sqrt(expected)
    assert len(got) == len(PAYLOAD) - fault.hits


def test_babbling_node_jams_the_bus_then_it_recovers() -> None:
    bus = Bus(LINE, seed=2)
    host = HostPort(bus)
    bus.attach(Responder())
    babbler = bus.attach(BabblingNode("babbler", LINE, start_us=0, duration_us=50_000, seed=4))
    reply = host.transact(REQ, timeout=0.02)
    assert bus.collisions >= 1
    assert not check(reply)  # garbage: the babbler keeps the line busy
    assert babbler.bytes_sent > 100
    bus.run_until(60_000)
    host.reset_input_buffer()
    assert host.transact(REQ, timeout=0.05) == with_crc(b"\x01\x03\x02\xbe\xef")


def test_babbling_node_sends_back_to_back_for_exactly_its_window() -> None:
    bus = Bus(LINE)
    cap = Capture(bus=bus)
    bus.attach(BabblingNode("babbler", LINE, start_us=1000, duration_us=10 * B, seed=1))
    bus.run_until(20_000)
    assert [e.t_us for e in cap.bytes] == [1000 + (i + 1) * B for i in range(10)]


def test_power_cycle_delegates_and_brown_out_takes_the_board_off_the_bus() -> None:
    bus = Bus(LINE)
    host = HostPort(bus)
    board = bus.attach(Responder())
    power_cycle(board)
    assert board.cycles == 1
    schedule = FaultSchedule(bus)
    schedule.brown_out(0.010, board, off_s=0.020)
    bus.run_until(15_000)
    assert host.transact(REQ, timeout=0.01) == b""  # off: no answer
    assert board.rx == [] and board.cycles == 1
    bus.run_until(31_000)
    assert board.cycles == 2 and board in bus.nodes
    assert host.transact(REQ, timeout=0.01) == with_crc(b"\x01\x03\x02\xbe\xef")
    assert [label for _, label in schedule.log] == ["brown-out board", "power back board"]
    assert schedule.log[0][0] == 10_000 and schedule.pending == 0


def test_schedule_injects_and_clears_plant_and_line_faults() -> None:
    bus = Bus(LINE)
    shelf = PowerShelf(noise=0)
    schedule = FaultSchedule(bus)
    schedule.inject(0.005, AcLoss(0), shelf, duration_s=0.005)
    fault = BitErrors(0.1)
    schedule.line_fault(0.002, fault, duration_s=0.001)
    bus.run_until(2_000)
    assert fault in bus.line_faults
    bus.run_until(3_000)
    assert fault not in bus.line_faults
    bus.run_until(6_000)
    assert shelf.feed_v[0] == 0
    bus.run_until(11_000)
    assert shelf.feed_v[0] > 0


# ---------------------------------------------------------------- sensor faults
def test_stuck_noisy_drift_open_short() -> None:
    import random

    rng = random.Random(0)
    stuck = Stuck()
    assert [stuck.apply(v, 0.0, rng) for v in (5, 6, 7)] == [5, 5, 5]
    assert Stuck(42).apply(1, 0.0, rng) == 42
    noisy = Noisy(sigma=10.0, bias=3.0)
    samples = [noisy.apply(1000, 0.0, rng) for _ in range(4000)]
    assert statistics.mean(samples) == pytest.approx(1003, abs=1.0)
    assert statistics.pstdev(samples) == pytest.approx(10.0, rel=0.1)
    drift = Drift(per_s=2.0)
    assert [drift.apply(100, t, rng) for t in (10.0, 11.0, 15.0)] == [100, 102, 110]
    assert OpenCircuit().apply(5, 0.0, rng) == pio.SENSOR_OPEN == cio.SENSOR_OPEN
    assert ShortCircuit().apply(5, 0.0, rng) == pio.SENSOR_SHORT


def test_sensor_faults_wrap_the_plant_output_only() -> None:
    cdu = Cdu(noise=0)
    cdu.step(10.0, {cio.O_PUMP_BASE: 700, cio.O_VALVE: 500})
    fault = SensorFailure(cio.S_T_SUPPLY, OpenCircuit())
    fault.inject(cdu)
    assert cdu.sensors()[cio.S_T_SUPPLY] == cio.SENSOR_OPEN
    assert cdu.true_sensors()[cio.S_T_SUPPLY] != cio.SENSOR_OPEN  # the physics is untouched
    assert cdu.sensors()[cio.S_FLOW] == cdu.true_sensors()[cio.S_FLOW]
    cdu.inject_sensor_fault(cio.S_FLOW, Stuck())
    frozen = cdu.sensors()[cio.S_FLOW]
    cdu.step(10.0, {cio.O_PUMP_BASE: 1000})
    assert cdu.sensors()[cio.S_FLOW] == frozen != cdu.true_sensors()[cio.S_FLOW]
    fault.clear(cdu)
    cdu.clear_sensor_fault()
    assert cdu.sensors() == cdu.true_sensors()


# ---------------------------------------------------------------- plant faults
def test_plant_fault_objects() -> None:
    shelf = PowerShelf(noise=0)
    PsuFailure(1, "dead").inject(shelf)
    AcLoss(1).inject(shelf)
    shelf.step(0.5)
    s = shelf.true_sensors()
    assert s[pio.psu_s(1, pio.S_PSU_OUT_I)] == 0 and s[pio.S_FEED2_V] == 0
    PsuFailure(1, "dead").clear(shelf)
    AcLoss(1).clear(shelf)
    shelf.step(0.5)
    assert shelf.true_sensors()[pio.psu_s(1, pio.S_PSU_OUT_I)] > 0

    cdu = Cdu(noise=0)
    PumpFailure(0).inject(cdu)
    Leak(cio.LEAK_MANIFOLD, lpm=5.0).inject(cdu)
    cdu.step(20.0, {cio.O_PUMP_BASE: 800})
    s = cdu.true_sensors()
    assert s[cio.S_FLOW] == 0 and s[cio.S_LEAK] == 1 << cio.LEAK_MANIFOLD
    PumpFailure(0).clear(cdu)
    Leak(cio.LEAK_MANIFOLD).clear(cdu)
    cdu.step(20.0)
    s = cdu.true_sensors()
    assert s[cio.S_FLOW] > 0 and s[cio.S_LEAK] == 0


def test_read_frame_gives_up_on_a_line_that_never_falls_silent() -> None:
    bus = Bus(LINE)
    host = HostPort(bus)
    bus.attach(BabblingNode("babbler", LINE, start_us=0, duration_us=10_000_000))
    frame = host.read_frame(timeout=0.01, max_bytes=300)
    assert len(frame) == 300
    assert bus.now_us < 300 * B + 2 * bus.quantum_us
