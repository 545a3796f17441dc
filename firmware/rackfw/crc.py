"""CRC-16/MODBUS for the firmware: table-driven, over a buffer prefix, no allocation.

Same polynomial as ``rackproto.crc`` (0xA001 reflected, init 0xFFFF); Modbus RTU
sends the result low byte first. The table is an ``array('H')`` built once at
import (512 bytes of RAM) — about 8x faster than the bitwise loop in the VM.
"""

from array import array

from micropython import const

_POLY = const(0xA001)


def _table():
    t = array("H", range(256))
    for i in range(256):
        c = i
        for _ in range(8):
            if c & 1:
                c = (c >> 1) ^ _POLY
            else:
                c >>= 1
        t[i] = c
    return t


TABLE = _table()


def crc16(buf, start, end, crc=0xFFFF):
    """CRC of ``buf[start:end]`` (pass bounds, not a slice: slices allocate)."""
    t = TABLE
    i = start
    while i < end:
        crc = (crc >> 8) ^ t[(crc ^ buf[i]) & 0xFF]
        i += 1
    return crc
