"""Modbus function codes, spec limits, the typed PDU classes and their checks.

Split from :mod:`rackproto.pdu` so the vocabulary of a Modbus message -- which
function codes exist, how many items one may carry, the small frozen dataclasses a
parsed PDU becomes (``ReadRequest``, ``ReadRegistersResponse``, ...) and
:func:`validate`, which holds a PDU to the limits of the Modbus Application
Protocol Specification V1.1b3 -- can be read without the Construct layouts and the
codec behind them. :mod:`rackproto.pdu` re-exports every name here, so
``from rackproto import pdu`` stays the one import callers need.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, TypeAlias

from rackproto.errors import FrameError, QuantityError

Role = Literal["request", "response"]

# Function codes -------------------------------------------------------------
READ_COILS = 0x01
READ_DISCRETE_INPUTS = 0x02
READ_HOLDING_REGISTERS = 0x03
READ_INPUT_REGISTERS = 0x04
WRITE_SINGLE_COIL = 0x05
WRITE_SINGLE_REGISTER = 0x06
DIAGNOSTICS = 0x08
WRITE_MULTIPLE_COILS = 0x0F
WRITE_MULTIPLE_REGISTERS = 0x10
READ_WRITE_MULTIPLE_REGISTERS = 0x17
ENCAPSULATED_INTERFACE = 0x2B
MEI_READ_DEVICE_ID = 0x0E

FUNCTION_NAMES: dict[int, str] = {
    READ_COILS: "read coils",
    READ_DISCRETE_INPUTS: "read discrete inputs",
    READ_HOLDING_REGISTERS: "read holding registers",
    READ_INPUT_REGISTERS: "read input registers",
    WRITE_SINGLE_COIL: "write single coil",
    WRITE_SINGLE_REGISTER: "write single register",
    DIAGNOSTICS: "diagnostics",
    WRITE_MULTIPLE_COILS: "write multiple coils",
    WRITE_MULTIPLE_REGISTERS: "write multiple registers",
    READ_WRITE_MULTIPLE_REGISTERS: "read/write multiple registers",
    ENCAPSULATED_INTERFACE: "read device identification",
}

#: Every FC 08 sub-function of MAP V1.1b3 6.8 (rackfw answers 00 and 0A-0F; the
#: others get exception 01 from it, but a host may talk to other servers).
DIAGNOSTIC_NAMES: dict[int, str] = {
    0x00: "return query data",
    0x01: "restart communications option",
    0x02: "return diagnostic register",
    0x03: "change ASCII input delimiter",
    0x04: "force listen only mode",
    0x0A: "clear counters and diagnostic register",
    0x0B: "return bus message count",
    0x0C: "return bus communication error count",
    0x0D: "return bus exception error count",
    0x0E: "return server message count",
    0x0F: "return server no response count",
    0x10: "return server NAK count",
    0x11: "return server busy count",
    0x12: "return bus character overrun count",
    0x14: "clear overrun counter and flag",
}
RETURN_QUERY_DATA = 0x00

# Spec limits (quantity of items per request) --------------------------------
MAX_READ_BITS = 2000
MAX_READ_REGISTERS = 125
MAX_WRITE_COILS = 1968
MAX_WRITE_REGISTERS = 123
MAX_RW_READ = 125
MAX_RW_WRITE = 121
COIL_ON = 0xFF00
COIL_OFF = 0x0000
MAX_PDU = 253  # 256-byte RTU ADU minus address and CRC


@dataclass(frozen=True)
class ReadRequest:
    """FC 01/02/03/04: read ``count`` items starting at ``address``."""

    function: int
    address: int
    count: int


@dataclass(frozen=True)
class ReadBitsResponse:
    """FC 01/02 response. ``bits`` holds every bit of every byte sent (a multiple of 8,
    LSB of the first byte = first item); trim with the request's count."""

    function: int
    bits: tuple[bool, ...]


@dataclass(frozen=True)
class ReadRegistersResponse:
    """FC 03/04/17 response: register values (unsigned 16-bit)."""

    function: int
    values: tuple[int, ...]


@dataclass(frozen=True)
class WriteSingle:
    """FC 05/06 request, and its echo response. For FC 05 ``value`` is 0xFF00 (on) or 0."""

    function: int
    address: int
    value: int


@dataclass(frozen=True)
class WriteCoilsRequest:
    """FC 0F: write ``len(bits)`` coils from ``address``."""

    address: int
    bits: tuple[bool, ...]
    function: ClassVar[int] = WRITE_MULTIPLE_COILS


@dataclass(frozen=True)
class WriteRegistersRequest:
    """FC 10: write ``len(values)`` holding registers from ``address``."""

    address: int
    values: tuple[int, ...]
    function: ClassVar[int] = WRITE_MULTIPLE_REGISTERS


@dataclass(frozen=True)
class WriteMultipleResponse:
    """FC 0F/10 response: where and how many items were written."""

    function: int
    address: int
    count: int


@dataclass(frozen=True)
class Diagnostics:
    """FC 08 request or response: sub-function and its 16-bit data word.

    ``extra`` holds data bytes after the first word. Only sub-function 00 (return
    query data) may carry them: its data field is "any" and the server echoes it
    (MAP V1.1b3 6.8.1), e.g. ``08 0000 A537 0102``."""

    sub_function: int
    data: int
    extra: bytes = b""
    function: ClassVar[int] = DIAGNOSTICS


@dataclass(frozen=True)
class ReadWriteRequest:
    """FC 17: write ``values`` at ``write_address``, then read ``read_count`` registers."""

    read_address: int
    read_count: int
    write_address: int
    values: tuple[int, ...]
    function: ClassVar[int] = READ_WRITE_MULTIPLE_REGISTERS


@dataclass(frozen=True)
class DeviceIdRequest:
    """FC 2B / MEI 0E: read device identification (read code 1..4 from ``object_id``)."""

    read_code: int
    object_id: int
    function: ClassVar[int] = ENCAPSULATED_INTERFACE


@dataclass(frozen=True)
class DeviceIdResponse:
    """FC 2B / MEI 0E response; ``objects`` keeps wire order as (id, value) pairs."""

    read_code: int
    conformity: int
    more_follows: int
    next_object_id: int
    objects: tuple[tuple[int, bytes], ...]
    function: ClassVar[int] = ENCAPSULATED_INTERFACE


@dataclass(frozen=True)
class ExceptionResponse:
    """An exception response: ``function`` is the request's code (without 0x80)."""

    function: int
    code: int


Pdu: TypeAlias = (
    ReadRequest
    | ReadBitsResponse
    | ReadRegistersResponse
    | WriteSingle
    | WriteCoilsRequest
    | WriteRegistersRequest
    | WriteMultipleResponse
    | Diagnostics
    | ReadWriteRequest
    | DeviceIdRequest
    | DeviceIdResponse
    | ExceptionResponse
)


PDU_TYPES = (
    ReadRequest,
    ReadBitsResponse,
    ReadRegistersResponse,
    WriteSingle,
    WriteCoilsRequest,
    WriteRegistersRequest,
    WriteMultipleResponse,
    Diagnostics,
    ReadWriteRequest,
    DeviceIdRequest,
    DeviceIdResponse,
    ExceptionResponse,
)


# Checks shared by parse and build ------------------------------------------------
def check_quantity(what: str, value: int, high: int) -> None:
    """A quantity field (items to read or write) must be 1..``high`` (exception 03)."""
    if not 1 <= value <= high:
        raise QuantityError(f"{what} {value} outside 1..{high}")


def check_words_16(values: tuple[int, ...]) -> None:
    """Register values must fit a 16-bit word before they are built into a frame."""
    for v in values:
        if not 0 <= v <= 0xFFFF:
            raise FrameError(f"register value {v} is not an unsigned 16-bit word")


def check_register_payload(byte_count: int, high: int) -> None:
    """A register payload is an even byte count of 1..``high`` words."""
    if byte_count % 2 or not 2 <= byte_count <= 2 * high:
        raise QuantityError(f"register byte count {byte_count} is odd or outside 2..{2 * high}")


_FUNCTIONS_OF: dict[type, tuple[int, ...]] = {
    ReadRequest: (READ_COILS, READ_DISCRETE_INPUTS, READ_HOLDING_REGISTERS, READ_INPUT_REGISTERS),
    ReadBitsResponse: (READ_COILS, READ_DISCRETE_INPUTS),
    ReadRegistersResponse: (
        READ_HOLDING_REGISTERS,
        READ_INPUT_REGISTERS,
        READ_WRITE_MULTIPLE_REGISTERS,
    ),
    WriteSingle: (WRITE_SINGLE_COIL, WRITE_SINGLE_REGISTER),
    WriteMultipleResponse: (WRITE_MULTIPLE_COILS, WRITE_MULTIPLE_REGISTERS),
}


def validate(pdu: Pdu, *, check_words: bool = True) -> None:
    """Raise QuantityError/FrameError when ``pdu`` breaks a spec limit.

    ``check_words=False`` skips the per-value 16-bit range check, which cannot fail
    for a PDU that was just parsed from bytes (it is the decoder's hot loop).
    """
    allowed = _FUNCTIONS_OF.get(type(pdu))
    if allowed is not None and pdu.function not in allowed:
        raise FrameError(f"{type(pdu).__name__} cannot carry function 0x{pdu.function:02X}")
    if isinstance(pdu, ReadRequest):
        high = MAX_READ_BITS if pdu.function in (READ_COILS, READ_DISCRETE_INPUTS) else MAX_READ_REGISTERS
        check_quantity("read quantity", pdu.count, high)
    elif isinstance(pdu, ReadBitsResponse):
        if len(pdu.bits) % 8 or not 8 <= len(pdu.bits) <= 8 * ((MAX_READ_BITS + 7) // 8):
            raise QuantityError(f"bit count {len(pdu.bits)} is not 1..250 whole bytes")
    elif isinstance(pdu, ReadRegistersResponse):
        high = MAX_RW_READ if pdu.function == READ_WRITE_MULTIPLE_REGISTERS else MAX_READ_REGISTERS
        check_register_payload(2 * len(pdu.values), high)
        if check_words:
            check_words_16(pdu.values)
    elif isinstance(pdu, WriteSingle):
        if pdu.function == WRITE_SINGLE_COIL and pdu.value not in (COIL_ON, COIL_OFF):
            # MAP 6.5: any other output value is answered with exception 03
            raise QuantityError(f"coil value 0x{pdu.value:04X} is neither 0xFF00 nor 0x0000")
    elif isinstance(pdu, WriteCoilsRequest):
        check_quantity("coil quantity", len(pdu.bits), MAX_WRITE_COILS)
    elif isinstance(pdu, WriteRegistersRequest):
        check_quantity("register quantity", len(pdu.values), MAX_WRITE_REGISTERS)
        check_words_16(pdu.values)
    elif isinstance(pdu, WriteMultipleResponse):
        high = MAX_WRITE_COILS if pdu.function == WRITE_MULTIPLE_COILS else MAX_WRITE_REGISTERS
        check_quantity("written quantity", pdu.count, high)
    elif isinstance(pdu, ReadWriteRequest):
        check_quantity("read quantity", pdu.read_count, MAX_RW_READ)
        check_quantity("write quantity", len(pdu.values), MAX_RW_WRITE)
        check_words_16(pdu.values)
    elif isinstance(pdu, Diagnostics):
        if pdu.extra and pdu.sub_function != RETURN_QUERY_DATA:
            raise FrameError(
                f"diagnostics sub-function 0x{pdu.sub_function:02X} carries one data word, "
                f"not {2 + len(pdu.extra)} bytes (only 00 echoes any length)"
            )
    elif isinstance(pdu, DeviceIdRequest | DeviceIdResponse):
        if not 1 <= pdu.read_code <= 4:
            raise FrameError(f"device-id read code {pdu.read_code} outside 1..4")
        if isinstance(pdu, DeviceIdResponse) and pdu.more_follows not in (0x00, 0xFF):
            # MAP 6.21: 00 no more objects, FF more follow (paging by next_object_id)
            raise FrameError(f"device-id 'more follows' 0x{pdu.more_follows:02X} is neither 00 nor FF")
    elif isinstance(pdu, ExceptionResponse) and not 1 <= pdu.function < 0x80:
        raise FrameError(f"exception for function 0x{pdu.function:02X} (must be below 0x80)")
