"""Explain one Modbus RTU frame in words: the engine behind ``rackctl decode``.

A captured frame rarely says which direction it travelled, so
:func:`decode_frame` tries it as a request and as a response and keeps every
reading that parses (FC 05/06/08 requests and their echo responses are the same
bytes). With a register map, register values are named and scaled: write
requests carry their own start address; read responses need the request's start
address (``start``), which only the caller can know.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rackproto import adu as adus
from rackproto import pdu as pdus
from rackproto.errors import FrameError, ModbusException
from rackproto.regmap import RegisterMap
from rackproto.regtypes import Value

#: Items each read/write function code addresses, and the map table they live in.
ITEMS: dict[int, tuple[str, str]] = {
    pdus.READ_COILS: ("coil", "coil"),
    pdus.READ_DISCRETE_INPUTS: ("discrete input", "discrete"),
    pdus.READ_HOLDING_REGISTERS: ("holding register", "holding"),
    pdus.READ_INPUT_REGISTERS: ("input register", "input"),
    pdus.WRITE_SINGLE_COIL: ("coil", "coil"),
    pdus.WRITE_SINGLE_REGISTER: ("holding register", "holding"),
    pdus.WRITE_MULTIPLE_COILS: ("coil", "coil"),
    pdus.WRITE_MULTIPLE_REGISTERS: ("holding register", "holding"),
    pdus.READ_WRITE_MULTIPLE_REGISTERS: ("holding register", "holding"),
}

READ_CODES = {1: "basic", 2: "regular", 3: "extended", 4: "one specific object"}
DEVICE_OBJECTS = {
    0: "VendorName",
    1: "ProductCode",
    2: "MajorMinorRevision",
    3: "VendorUrl",
    4: "ProductName",
    5: "ModelName",
    6: "UserApplicationName",
}


@dataclass(frozen=True)
class Interpretation:
    """One way to read the frame: as a request or as a response."""

    role: pdus.Role
    adu: adus.Adu
    summary: str
    details: list[tuple[str, str]] = field(default_factory=list)
    registers: list[Value] = field(default_factory=list)
    #: for a read response: (table, start) the values were named from
    register_table: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (bytes as hex, registers flattened)."""
        pdu = self.adu.pdu
        fields = {k: _jsonable(v) for k, v in asdict(pdu).items()}
        return {
            "role": self.role,
            "device": self.adu.address,
            "function": pdu.function,
            "function_name": pdus.FUNCTION_NAMES.get(pdu.function, "unknown"),
            "exception": isinstance(pdu, pdus.ExceptionResponse),
            "summary": self.summary,
            "fields": fields,
            "registers": [
                {
                    "name": v.register.name,
                    "table": v.register.table,
                    "address": v.register.address,
                    "raw": _jsonable(v.raw),
                    "value": _jsonable(v.value),
                    "unit": v.unit,
                }
                for v in self.registers
            ],
        }


@dataclass(frozen=True)
class Decoded:
    """Every valid reading of ``frame``; ``rejected`` says why the others failed."""

    frame: bytes
    interpretations: list[Interpretation]
    rejected: dict[str, str]

    @property
    def same_both_ways(self) -> bool:
        """True when request and response readings are the same message (an echo)."""
        its = self.interpretations
        return len(its) == 2 and its[0].adu.pdu == its[1].adu.pdu

    def to_dict(self) -> dict[str, Any]:
        return {
            "frame": self.frame.hex(),
            "crc_ok": True,
            "interpretations": [i.to_dict() for i in self.interpretations],
            "rejected": self.rejected,
        }


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes | bytearray):
        return v.decode("ascii") if v.isascii() and v.decode("ascii").isprintable() else v.hex()
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    return v


def parse_hex(text: str) -> bytes:
    """Bytes from hex text; accepts spaces, ':' or '-' separators and a 0x prefix."""
    cleaned = text.strip()
    if cleaned.lower().startswith("0x"):
        cleaned = cleaned[2:]
    for sep in (" ", ":", "-", "\t", "\n"):
        cleaned = cleaned.replace(sep, "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise FrameError(f"not hex bytes: {text!r}") from None


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _addr(a: int) -> str:
    return f"address {a} (0x{a:04X})"


def _fc(fc: int) -> str:
    return f"FC {fc:02X} {pdus.FUNCTION_NAMES.get(fc, 'unknown function')}"


def _bits(bits: tuple[bool, ...]) -> str:
    return "".join("1" if b else "0" for b in bits)


def _words(values: tuple[int, ...]) -> str:
    return " ".join(f"{v:04X}" for v in values)


def _summary(pdu: pdus.Pdu, role: str) -> tuple[str, list[tuple[str, str]]]:
    """One sentence and a few labelled details for a PDU."""
    fc = pdu.function
    if isinstance(pdu, pdus.ReadRequest):
        return f"read request ({_fc(fc)}) for {_n(pdu.count, ITEMS[fc][0])} at {_addr(pdu.address)}", []
    if isinstance(pdu, pdus.ReadBitsResponse):
        return (
            f"read response ({_fc(fc)}): {len(pdu.bits) // 8} bytes, {len(pdu.bits)} bit states",
            [("bits (first item first)", _bits(pdu.bits))],
        )
    if isinstance(pdu, pdus.ReadRegistersResponse):
        return (
            f"read response ({_fc(fc)}): {_n(len(pdu.values), 'register')}",
            [("values (hex)", _words(pdu.values))],
        )
    if isinstance(pdu, pdus.WriteSingle):
        kind = "write request" if role == "request" else "write response (echo)"
        if fc == pdus.WRITE_SINGLE_COIL:
            state = "ON" if pdu.value == pdus.COIL_ON else "OFF"
            return f"{kind} ({_fc(fc)}): coil at {_addr(pdu.address)} = {state}", []
        return (
            f"{kind} ({_fc(fc)}): holding register at {_addr(pdu.address)} = {pdu.value} (0x{pdu.value:04X})",
            [],
        )
    if isinstance(pdu, pdus.WriteCoilsRequest):
        return (
            f"write request ({_fc(fc)}) for {_n(len(pdu.bits), 'coil')} at {_addr(pdu.address)}",
            [("bits (first item first)", _bits(pdu.bits))],
        )
    if isinstance(pdu, pdus.WriteRegistersRequest):
        return (
            f"write request ({_fc(fc)}) for {_n(len(pdu.values), 'holding register')} at {_addr(pdu.address)}",
            [("values (hex)", _words(pdu.values))],
        )
    if isinstance(pdu, pdus.WriteMultipleResponse):
        items = _n(pdu.count, ITEMS[fc][0])
        return f"write response ({_fc(fc)}): {items} written at {_addr(pdu.address)}", []
    if isinstance(pdu, pdus.Diagnostics):
        name = pdus.DIAGNOSTIC_NAMES.get(pdu.sub_function, "unsupported sub-function")
        return (
            f"diagnostics {role} ({_fc(fc)}): sub-function {pdu.sub_function:02X} {name}, "
            f"data {pdu.data} (0x{pdu.data:04X})",
            [],
        )
    if isinstance(pdu, pdus.ReadWriteRequest):
        return (
            f"read/write request ({_fc(fc)}): write {_n(len(pdu.values), 'holding register')} at "
            f"{_addr(pdu.write_address)}, then read {pdu.read_count} at {_addr(pdu.read_address)}",
            [("written values (hex)", _words(pdu.values))],
        )
    if isinstance(pdu, pdus.DeviceIdRequest):
        code = READ_CODES.get(pdu.read_code, "?")
        return (
            f"read device identification request (FC 2B/0E): read code {pdu.read_code} ({code}) "
            f"from object {pdu.object_id}",
            [],
        )
    if isinstance(pdu, pdus.DeviceIdResponse):
        details = [
            (DEVICE_OBJECTS.get(oid, f"object 0x{oid:02X}"), str(_jsonable(value)))
            for oid, value in pdu.objects
        ]
        more = f", more follow from object {pdu.next_object_id}" if pdu.more_follows else ""
        return (
            f"read device identification response (FC 2B/0E): {_n(len(pdu.objects), 'object')}, "
            f"conformity 0x{pdu.conformity:02X}{more}",
            details,
        )
    if isinstance(pdu, pdus.ExceptionResponse):
        name = ModbusException.NAMES.get(pdu.code, "unknown exception")
        return (
            f"exception response (FC {fc | 0x80:02X}: {_fc(fc)} failed): "
            f"exception {pdu.code:02X} {name}",
            [],
        )
    raise TypeError(f"not a PDU: {pdu!r}")  # pragma: no cover - Pdu is a closed union


def _name_registers(
    pdu: pdus.Pdu, regmap: RegisterMap | None, start: int | None
) -> tuple[list[Value], str | None]:
    """Registers named by the map, when the frame (or ``start``) says where they are."""
    if regmap is None:
        return [], None
    fc = pdu.function
    if isinstance(pdu, pdus.WriteRegistersRequest):
        return regmap.decode("holding", pdu.address, list(pdu.values)), "holding"
    if isinstance(pdu, pdus.ReadWriteRequest):
        return regmap.decode("holding", pdu.write_address, list(pdu.values)), "holding"
    if isinstance(pdu, pdus.WriteSingle) and fc == pdus.WRITE_SINGLE_REGISTER:
        return regmap.decode("holding", pdu.address, [pdu.value]), "holding"
    if isinstance(pdu, pdus.WriteSingle):
        return regmap.decode("coil", pdu.address, [int(pdu.value == pdus.COIL_ON)]), "coil"
    if isinstance(pdu, pdus.WriteCoilsRequest):
        return regmap.decode("coil", pdu.address, [int(b) for b in pdu.bits]), "coil"
    if start is None:
        return [], None
    table = ITEMS[fc][1] if fc in ITEMS else None
    if isinstance(pdu, pdus.ReadRegistersResponse) and table is not None:
        return regmap.decode(table, start, list(pdu.values)), table
    if isinstance(pdu, pdus.ReadBitsResponse) and table is not None:
        return regmap.decode(table, start, [int(b) for b in pdu.bits]), table
    return [], None


def interpret(
    adu: adus.Adu,
    role: pdus.Role,
    regmap: RegisterMap | None = None,
    start: int | None = None,
) -> Interpretation:
    """Describe an already decoded ADU."""
    summary, details = _summary(adu.pdu, role)
    device = "broadcast (device 0)" if adu.address == adus.BROADCAST else f"device {adu.address}"
    summary = f"{summary[0].upper()}{summary[1:]}, {device}"
    registers, table = _name_registers(adu.pdu, regmap, start)
    pdu = adu.pdu
    if regmap is not None and isinstance(pdu, pdus.ReadRequest):
        covered = [
            r.name
            for r in regmap.table(ITEMS[pdu.function][1])
            if r.address >= pdu.address and r.end <= pdu.address + pdu.count
        ]
        details = [*details, ("registers read", ", ".join(covered) or "none in the map")]
    return Interpretation(role, adu, summary, details, registers, table)


def decode_frame(
    frame: bytes | str,
    regmap: RegisterMap | None = None,
    start: int | None = None,
) -> Decoded:
    """Every reading of one RTU frame (bytes, or hex text).

    Raises CrcError when the CRC is wrong, FrameError when the frame is neither
    a valid request nor a valid response.
    """
    raw = parse_hex(frame) if isinstance(frame, str) else bytes(frame)
    address, data = adus.split(raw)  # CRC and length first: they decide for both readings
    found: list[Interpretation] = []
    rejected: dict[str, str] = {}
    roles: tuple[pdus.Role, ...] = ("request", "response")
    for role in roles:
        try:
            pdu = pdus.decode(data, role)
        except FrameError as exc:
            rejected[role] = str(exc)
            continue
        found.append(interpret(adus.Adu(address, pdu), role, regmap, start))
    if not found:
        reasons = "; ".join(f"as a {r}: {why}" for r, why in rejected.items())
        raise FrameError(f"CRC is good but the frame is neither a request nor a response ({reasons})")
    return Decoded(raw, found, rejected)
