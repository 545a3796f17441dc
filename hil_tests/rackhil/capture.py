"""Capture what crossed the simulated wire: pcap for Wireshark/tshark and a text log.

A :class:`Capture` is a bus listener; it keeps every byte with its arrival time,
driver and error flags (collision, bit flips, lost).  Frames are cut the way an
RTU receiver cuts them: at a silence of at least t3.5 between two arrivals, and
also where the driver changes (the simulator knows who drove; a real sniffer would
only see the gap, which is never shorter than t3.5 between a request and a reply).

pcap: classic libpcap format (microsecond timestamps), one Modbus RTU frame per
packet, link type ``DLT_USER0`` = 147.  Wireshark has no dissector bound to that
link type by default; tell it the payload is Modbus RTU:

* Wireshark: Preferences -> Protocols -> DLT_USER -> Edit -> add
  ``User 0 (DLT=147)`` with payload protocol ``mbrtu``;
* tshark: ``tshark -o 'uat:user_dlts:"User 0 (DLT=147)","mbrtu","0","","0",""' -r rack.pcap``.

Packet timestamps are the start of each frame's first character (virtual time
plus ``epoch_s``).  Bytes a receiving UART would drop (parity/framing errors) are
left out of the packet and counted in the text log.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from rackproto.crc import check

from .bus import FLIPPED, GARBLED, LOST, Bus, WireByte
from .wire import DEFAULT_LINE, LineSettings

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
DLT_USER0 = 147
SNAPLEN = 65535
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")


@dataclass(frozen=True)
class CapturedFrame:
    """One RTU frame as seen on the wire."""

    start_us: int  # start of the first character
    end_us: int  # arrival of the last character
    source: str
    data: bytes  # bytes a receiver kept (lost ones left out)
    garbled: int = 0  # number of bytes corrupted by a collision
    flipped: int = 0  # number of bytes with line-noise bit flips
    lost: int = 0  # number of bytes the receiving UART discarded

    @property
    def crc_ok(self) -> bool:
        return check(self.data)


class Capture:
    """Record every byte on a bus (attach with ``Capture(bus=bus)``)."""

    def __init__(
        self,
        line: LineSettings | None = None,
        *,
        bus: Bus | None = None,
        epoch_s: float = 0.0,
        max_bytes: int | None = None,
    ) -> None:
        """``line`` defaults to the bus's settings (it sets the t3.5 used to cut frames).

        ``max_bytes`` keeps only the most recent bytes (a ring), for long real-time runs.
        """
        self.line = line or (bus.line if bus is not None else DEFAULT_LINE)
        self.epoch_s = epoch_s
        self.bytes: deque[WireByte] = deque(maxlen=max_bytes)
        if bus is not None:
            bus.add_listener(self.on_byte)

    def on_byte(self, event: WireByte) -> None:
        self.bytes.append(event)

    def clear(self) -> None:
        self.bytes.clear()

    def frames(self) -> list[CapturedFrame]:
        """Group the bytes into frames on t3.5 gaps and driver changes."""
        t35 = self.line.t35_us
        b = self.line.byte_us
        frames: list[CapturedFrame] = []
        group: list[WireByte] = []
        for event in self.bytes:
            if group and (event.t_us - group[-1].t_us >= t35 or event.source != group[-1].source):
                frames.append(_frame(group, b))
                group = []
            group.append(event)
        if group:
            frames.append(_frame(group, b))
        return frames

    # ---- pcap --------------------------------------------------------------
    def to_pcap(self) -> bytes:
        out = [pcap_header()]
        for frame in self.frames():
            if frame.data:
                out.append(pcap_record(frame.start_us + round(self.epoch_s * 1_000_000), frame.data))
        return b"".join(out)

    def write_pcap(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_bytes(self.to_pcap())
        return path

    # ---- text --------------------------------------------------------------
    def to_text(self) -> str:
        """One line per frame: time (s), driver, length, hex bytes, CRC verdict, damage."""
        lines = [f"# rackhil capture, {self.line.name}, t3.5 = {self.line.t35_us} us"]
        for f in self.frames():
            notes = ["crc ok" if f.crc_ok else "crc BAD"]
            if f.garbled:
                notes.append(f"{f.garbled} garbled")
            if f.flipped:
                notes.append(f"{f.flipped} bit-flipped")
            if f.lost:
                notes.append(f"{f.lost} lost")
            lines.append(
                f"{f.start_us / 1e6:12.6f} {f.source:>10} [{len(f.data):3d}] {f.data.hex(' ')}  ({', '.join(notes)})"
            )
        return "\n".join(lines) + "\n"

    def write_text(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_text())
        return path


def _frame(group: list[WireByte], byte_us: int) -> CapturedFrame:
    kept = bytes(e.value for e in group if not e.flags & LOST)
    return CapturedFrame(
        start_us=group[0].t_us - byte_us,
        end_us=group[-1].t_us,
        source=group[0].source,
        data=kept,
        garbled=sum(1 for e in group if e.flags & GARBLED),
        flipped=sum(1 for e in group if e.flags & FLIPPED),
        lost=sum(1 for e in group if e.flags & LOST),
    )


def pcap_header(linktype: int = DLT_USER0, snaplen: int = SNAPLEN) -> bytes:
    return _GLOBAL.pack(PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype)


def pcap_record(t_us: int, data: bytes) -> bytes:
    sec, usec = divmod(t_us, 1_000_000)
    return _RECORD.pack(sec, usec, len(data), len(data)) + data


def read_pcap(blob: bytes) -> tuple[int, list[tuple[int, bytes]]]:
    """Parse a classic pcap file: ``(linktype, [(timestamp_us, packet), ...])``.

    Accepts both byte orders and both timestamp resolutions; raises ``ValueError``
    on anything else (used by the tests to check what we write).
    """
    if len(blob) < _GLOBAL.size:
        raise ValueError("too short for a pcap global header")
    for endian in "<>":
        magic = struct.unpack_from(endian + "I", blob)[0]
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            break
    else:
        raise ValueError(f"not a pcap file (magic {blob[:4].hex()})")
    nano = magic == PCAP_MAGIC_NS
    _, major, minor, _, _, snaplen, linktype = struct.unpack_from(endian + "IHHiIII", blob)
    if (major, minor) != (2, 4):
        raise ValueError(f"unsupported pcap version {major}.{minor}")
    packets = []
    pos = _GLOBAL.size
    while pos < len(blob):
        if pos + _RECORD.size > len(blob):
            raise ValueError(f"truncated record header at offset {pos}")
        sec, frac, incl, orig = struct.unpack_from(endian + "IIII", blob, pos)
        pos += _RECORD.size
        if incl > snaplen or incl > orig or pos + incl > len(blob):
            raise ValueError(f"bad record length {incl} at offset {pos}")
        packets.append((sec * 1_000_000 + (frac // 1000 if nano else frac), blob[pos : pos + incl]))
        pos += incl
    return linktype, packets
