"""CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF), table-driven.

Modbus RTU sends the CRC low byte first. Check value: crc16(b"123456789") == 0x4B37.
"""

from __future__ import annotations


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


TABLE = _make_table()


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """Return the CRC-16/MODBUS of ``data`` (optionally continuing from ``crc``)."""
    table = TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def crc_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """The two CRC bytes to append to ``data``, low byte first as RTU sends them."""
    crc = crc16(data)
    return bytes((crc & 0xFF, crc >> 8))


def with_crc(data: bytes | bytearray | memoryview) -> bytes:
    """``data`` followed by its CRC: a complete RTU frame from address + PDU."""
    return bytes(data) + crc_bytes(data)


def check(frame: bytes | bytearray | memoryview) -> bool:
    """True when the last two bytes of ``frame`` are the CRC of the rest."""
    if len(frame) < 3:
        return False
    return crc16(frame) == 0  # CRC over data+crc of a good frame is zero
