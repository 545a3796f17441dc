"""The pty bridge: a real serial program (pyserial, pymodbus) talks to nodes on the bus."""

from __future__ import annotations

from pathlib import Path

import pytest
import serial

from rackhil.bus import Bus
from rackhil.capture import Capture
from rackhil.pty_port import PtyPort, RealTimeRunner
from rackproto.crc import check, with_crc

pytestmark = pytest.mark.timeout(30)


class Responder:
    """Answers a valid frame for its unit with one holding register (0x1234)."""

    def __init__(self, name: str, unit: int, t35_us: int) -> None:
        self.name = name
        self.unit = unit
        self.t35_us = t35_us
        self.rx: list[tuple[int, int]] = []
        self.pending: list[tuple[int, bytes]] = []

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        self.rx.extend((t0_us + (i + 1) * byte_us, b) for i, b in enumerate(data))

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        if self.rx and self.rx[-1][0] + self.t35_us <= until_us:
            frame = bytes(b for _, b in self.rx)
            last = self.rx[-1][0]
            self.rx.clear()
            if frame[0] == self.unit and check(frame):
                self.pending.append((last + self.t35_us, with_crc(bytes([self.unit, frame[1], 2, 0x12, 0x34]))))
        out = [p for p in self.pending if p[0] <= until_us]
        self.pending = [p for p in self.pending if p[0] > until_us]
        return out


@pytest.fixture
def rack(tmp_path: Path):
    bus = Bus()
    cap = Capture(bus=bus)
    bus.attach(Responder("psu", 7, bus.line.t35_us))
    port = PtyPort(bus, link=tmp_path / "rack" / "ttyRACK")
    runner = RealTimeRunner(bus).start()
    yield bus, cap, port, runner
    runner.stop()
    port.close()
    assert runner.error is None


def test_pyserial_8n1_round_trip(rack) -> None:
    bus, cap, port, runner = rack
    assert Path(port.port).is_symlink() and Path(port.port).resolve() == Path(port.path)
    request = with_crc(bytes([7, 3, 0, 0, 0, 1]))
    with serial.Serial(port.port, 115200, parity="N", timeout=2) as ser:
        ser.write(request)
        reply = ser.read(7)
    runner.stop()
    assert reply == with_crc(bytes([7, 3, 2, 0x12, 0x34]))
    frames = cap.frames()
    assert frames[0].data == request and frames[0].source == "pty"
    assert frames[1].data == reply and frames[1].source == "psu"
    assert frames[1].start_us - frames[0].end_us >= bus.line.t35_us


def test_pymodbus_client_reads_through_the_pty(rack) -> None:
    from pymodbus.client import ModbusSerialClient

    _, _, port, _ = rack
    client = ModbusSerialClient(port.port, baudrate=115200, parity="N", timeout=2, retries=1)
    assert client.connect()
    try:
        rr = client.read_holding_registers(0, count=1, device_id=7)
    finally:
        client.close()
    assert not rr.isError()
    assert rr.registers == [0x1234]


def test_link_never_replaces_a_real_file(tmp_path: Path) -> None:
    target = tmp_path / "ttyRACK"
    target.write_text("not a tty")
    with pytest.raises(FileExistsError):
        PtyPort(Bus(), link=target)
    assert target.read_text() == "not a tty"


def test_close_removes_the_link(tmp_path: Path) -> None:
    link = tmp_path / "ttyRACK"
    with PtyPort(Bus(), link=link) as port:
        assert link.is_symlink() and port.port == str(link)
    assert not link.exists()


def test_a_program_that_never_reads_overruns_instead_of_growing_memory(tmp_path: Path) -> None:
    from rackhil import pty_port

    bus = Bus()
    with PtyPort(bus) as port:
        bus.attach(_Flood("flood", 200_000))
        bus.run(20.0)  # 200 kB of wire time, far beyond the pty buffer + backlog
        assert port.overruns > 0
        assert len(port._out) <= pty_port.MAX_BACKLOG


class _Flood:
    def __init__(self, name: str, n: int) -> None:
        self.name = name
        self.n = n

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        pass

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        out, self.n = ([(0, bytes(self.n))] if self.n else []), 0
        return out
