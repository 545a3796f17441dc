"""Capture: frames cut on t3.5, pcap written and parsed back, text log."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from talker import Talker

from rackhil.bus import GARBLED, LOST, Bus, WireByte
from rackhil.capture import DLT_USER0, Capture, pcap_header, pcap_record, read_pcap
from rackhil.transport import HostPort
from rackhil.wire import LineSettings
from rackproto.crc import with_crc

LINE = LineSettings()
B = LINE.byte_us


REQ = with_crc(bytes([1, 3, 0, 0, 0, 2]))
RSP = with_crc(bytes([1, 3, 4, 0, 1, 0, 2]))


def _exchange(epoch_s: float = 0.0) -> tuple[Bus, Capture]:
    bus = Bus(LINE)
    cap = Capture(bus=bus, epoch_s=epoch_s)
    host = HostPort(bus)
    bus.attach(Talker("psu", [(5000, RSP)]))
    host.write(REQ)
    bus.run_until(20_000)
    return bus, cap


def test_frames_cut_on_silence_with_timestamps() -> None:
    _, cap = _exchange()
    frames = cap.frames()
    assert [f.data for f in frames] == [REQ, RSP]
    assert [f.source for f in frames] == ["host", "psu"]
    assert frames[0].start_us == 0 and frames[0].end_us == len(REQ) * B
    assert frames[1].start_us == 5000 and frames[1].end_us == 5000 + len(RSP) * B
    assert all(f.crc_ok for f in frames)


def test_back_to_back_bursts_closer_than_t35_are_one_frame() -> None:
    bus = Bus(LINE)
    cap = Capture(bus=bus)
    bus.attach(Talker("n", [(0, b"\x01\x02"), (2 * B + LINE.t35_us - B - 1, b"\x03")]))
    bus.run_until(10_000)
    assert [f.data for f in cap.frames()] == [b"\x01\x02\x03"]


def test_pcap_round_trip(tmp_path: Path) -> None:
    _, cap = _exchange(epoch_s=1_700_000_000.25)
    path = cap.write_pcap(tmp_path / "rack.pcap")
    linktype, packets = read_pcap(path.read_bytes())
    assert linktype == DLT_USER0 == 147
    assert [p for _, p in packets] == [REQ, RSP]
    assert [t for t, _ in packets] == [1_700_000_000_250_000, 1_700_000_000_255_000]
    # the global header really is classic little-endian libpcap v2.4, microseconds
    magic, major, minor, _, _, snaplen, dlt = struct.unpack_from("<IHHiIII", path.read_bytes())
    assert (magic, major, minor, snaplen, dlt) == (0xA1B2C3D4, 2, 4, 65535, 147)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 2**40), st.binary(min_size=1, max_size=300)), max_size=20))
def test_pcap_records_round_trip(packets: list[tuple[int, bytes]]) -> None:
    blob = pcap_header() + b"".join(pcap_record(t, d) for t, d in packets)
    assert read_pcap(blob) == (DLT_USER0, packets)


def test_read_pcap_rejects_garbage_and_truncation() -> None:
    with pytest.raises(ValueError):
        read_pcap(b"\x00" * 24)
    with pytest.raises(ValueError):
        read_pcap(b"\xd4\xc3")
    blob = pcap_header() + pcap_record(0, b"abcdef")
    with pytest.raises(ValueError):
        read_pcap(blob[:-1])
    with pytest.raises(ValueError):
        read_pcap(blob[:-8])


def test_big_endian_and_nanosecond_pcaps_are_read() -> None:
    blob = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 147) + struct.pack(">IIII", 3, 500, 2, 2) + b"hi"
    assert read_pcap(blob) == (147, [(3_000_000, b"hi")])


def test_text_log_lists_frames_and_damage() -> None:
    cap = Capture(LINE)
    for i, v in enumerate(REQ):
        cap.on_byte(WireByte((i + 1) * B, v, "host"))
    cap.on_byte(WireByte(10_000, 0x55, "psu", GARBLED))
    cap.on_byte(WireByte(10_000 + B, 0x66, "psu", LOST))
    text = cap.to_text()
    lines = text.splitlines()
    assert lines[0].startswith("# rackhil capture, 115200 8E1")
    assert "host" in lines[1] and REQ.hex(" ") in lines[1] and "crc ok" in lines[1]
    assert "psu" in lines[2] and "crc BAD" in lines[2] and "1 garbled" in lines[2] and "1 lost" in lines[2]
    # the lost byte is not part of what a receiver (or the pcap) gets
    assert cap.frames()[1].data == b"\x55"
    assert read_pcap(cap.to_pcap())[1][1][1] == b"\x55"


def test_ring_capture_keeps_the_latest_bytes() -> None:
    cap = Capture(LINE, max_bytes=3)
    for i in range(10):
        cap.on_byte(WireByte((i + 1) * B, i, "n"))
    assert [e.value for e in cap.bytes] == [7, 8, 9]
    assert cap.frames()[0].data == bytes([7, 8, 9])
