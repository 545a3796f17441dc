"""Modbus RTU ADUs: server address + PDU + CRC-16/MODBUS (low byte first).

``build`` turns an address and a typed PDU (see :mod:`rackproto.pdu`) into the
bytes that go on the wire; ``parse_request``/``parse_response`` check length,
address and CRC and return an :class:`Adu`. The RTU header is only two fields
wide, so it is written with a Construct struct over the frame minus its CRC.
Malformed input raises only :class:`~rackproto.errors.FrameError` (or its
subclasses ``CrcError`` and ``QuantityError``).
"""

from __future__ import annotations

from dataclasses import dataclass

from construct import Byte, GreedyBytes, Struct

from rackproto import pdu as pdus
from rackproto.crc import crc16, crc_bytes
from rackproto.errors import CrcError, FrameError

BROADCAST = 0
MAX_ADDRESS = 247  # 248..255 are reserved by the serial-line spec
MIN_FRAME = 4  # address, function code, CRC (2)
MAX_FRAME = 256

#: Address and PDU; the CRC is handled separately because it covers them both.
RTU_BODY = Struct("address" / Byte, "pdu" / GreedyBytes)
RTU_BODY_COMPILED = RTU_BODY.compile()  # ~4x faster parse; every received frame goes through it


@dataclass(frozen=True)
class Adu:
    """One RTU frame: the server ``address`` (0 = broadcast) and its decoded ``pdu``."""

    address: int
    pdu: pdus.Pdu

    def encode(self, *, check: bool = True) -> bytes:
        """The frame bytes including the CRC."""
        return build(self.address, self.pdu, check=check)


def build(address: int, pdu: pdus.Pdu, *, check: bool = True) -> bytes:
    """Encode ``pdu`` for server ``address`` and append the CRC (low byte first).

    ``check=False`` also allows the reserved addresses 248..255 and PDUs outside
    the spec limits, for tests that feed servers illegal frames.
    """
    if check and not 0 <= address <= MAX_ADDRESS:
        raise FrameError(f"server address {address} outside 0..{MAX_ADDRESS}")
    if not 0 <= address <= 0xFF:
        raise FrameError(f"server address {address} does not fit in a byte")
    body = RTU_BODY.build({"address": address, "pdu": pdus.encode(pdu, check=check)})
    return body + crc_bytes(body)


def split(frame: bytes | bytearray | memoryview) -> tuple[int, bytes]:
    """Check length, address and CRC of ``frame``; return (address, PDU bytes).

    Raises CrcError for a CRC mismatch and FrameError for anything else.
    """
    frame = bytes(frame)
    if not MIN_FRAME <= len(frame) <= MAX_FRAME:
        raise FrameError(f"RTU frame of {len(frame)} bytes (must be {MIN_FRAME}..{MAX_FRAME})")
    got = frame[-2] | frame[-1] << 8
    expected = crc16(frame[:-2])
    if got != expected:
        raise CrcError(
            f"CRC mismatch: frame ends {got & 0xFF:02X} {got >> 8:02X}, "
            f"contents need {expected & 0xFF:02X} {expected >> 8:02X} (CRC-16/MODBUS, low byte first)",
            expected=expected,
            got=got,
        )
    body = RTU_BODY_COMPILED.parse(frame[:-2])
    if body.address > MAX_ADDRESS:
        raise FrameError(f"server address {body.address} is reserved (248..255)")
    return body.address, body.pdu


def parse_request(frame: bytes | bytearray | memoryview) -> Adu:
    """Decode a request frame (as a server receives it)."""
    address, data = split(frame)
    return Adu(address, pdus.decode_request(data))


def parse_response(frame: bytes | bytearray | memoryview) -> Adu:
    """Decode a response frame (as a client receives it), exceptions included."""
    address, data = split(frame)
    return Adu(address, pdus.decode_response(data))


def parse(frame: bytes | bytearray | memoryview, role: pdus.Role) -> Adu:
    """Decode ``frame`` as a ``"request"`` or a ``"response"``."""
    address, data = split(frame)
    return Adu(address, pdus.decode(data, role))
