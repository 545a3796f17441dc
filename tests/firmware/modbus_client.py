"""Minimal Modbus RTU request builders/parsers for the firmware conformance suite.

Deliberately independent of the host stack (pymodbus, rackproto.pdu): the suite
checks the firmware against the spec, not against our own client.
"""

from __future__ import annotations

import struct

from rackproto.crc import check, with_crc


def adu(unit: int, fc: int, payload: bytes = b"") -> bytes:
    return with_crc(bytes([unit, fc]) + payload)


def read_req(unit: int, fc: int, start: int, qty: int) -> bytes:
    return adu(unit, fc, struct.pack(">HH", start, qty))


def write_single(unit: int, fc: int, addr: int, value: int) -> bytes:
    return adu(unit, fc, struct.pack(">HH", addr, value))


def write_regs_req(unit: int, start: int, values: list[int], byte_count: int | None = None) -> bytes:
    data = b"".join(struct.pack(">H", v & 0xFFFF) for v in values)
    bc = len(data) if byte_count is None else byte_count
    return adu(unit, 0x10, struct.pack(">HHB", start, len(values), bc) + data)


def write_coils_req(unit: int, start: int, bits: list[int]) -> bytes:
    nbytes = (len(bits) + 7) // 8
    packed = bytearray(nbytes)
    for i, b in enumerate(bits):
        if b:
            packed[i // 8] |= 1 << (i % 8)
    return adu(unit, 0x0F, struct.pack(">HHB", start, len(bits), nbytes) + bytes(packed))


def rw_req(unit: int, rstart: int, rqty: int, wstart: int, values: list[int]) -> bytes:
    data = b"".join(struct.pack(">H", v) for v in values)
    return adu(unit, 0x17, struct.pack(">HHHHB", rstart, rqty, wstart, len(values), len(data)) + data)


def diag_req(unit: int, sub: int, data: bytes = b"\x00\x00") -> bytes:
    return adu(unit, 0x08, struct.pack(">H", sub) + data)


def devid_req(unit: int, code: int, obj: int, mei: int = 0x0E) -> bytes:
    return adu(unit, 0x2B, bytes([mei, code, obj]))


def body(reply: bytes | None) -> bytes:
    """The PDU of a good reply (CRC checked), without unit id and CRC."""
    assert reply is not None, "no reply"
    assert check(reply), f"bad CRC in reply {reply.hex()}"
    return reply[1:-2]


def exception_code(reply: bytes | None, fc: int) -> int | None:
    """The exception code if ``reply`` is an exception response to ``fc``."""
    pdu = body(reply)
    if pdu[0] == fc | 0x80:
        assert len(pdu) == 2
        return pdu[1]
    return None


def words(reply: bytes | None) -> list[int]:
    pdu = body(reply)
    n = pdu[1]
    assert len(pdu) == 2 + n, "byte count does not match"
    return list(struct.unpack(f">{n // 2}H", pdu[2:]))


def bits(reply: bytes | None, qty: int) -> list[int]:
    pdu = body(reply)
    data = pdu[2:]
    assert pdu[1] == len(data) == (qty + 7) // 8
    return [(data[i // 8] >> (i % 8)) & 1 for i in range(qty)]


def devid_objects(reply: bytes | None) -> dict[int, bytes]:
    pdu = body(reply)
    assert pdu[0] == 0x2B and pdu[1] == 0x0E
    n = pdu[6]
    objs: dict[int, bytes] = {}
    o = 7
    for _ in range(n):
        oid, ln = pdu[o], pdu[o + 1]
        objs[oid] = pdu[o + 2 : o + 2 + ln]
        o += 2 + ln
    assert o == len(pdu)
    return objs
