"""A thin Modbus RTU client over pymodbus 3.16's AsyncModbusSerialClient.

pymodbus does the framing and PDU encoding; this wrapper adds what a bus master on a
shared RS-485 line owes the devices and the operator:

* **t3.5 before transmit** — a request is only sent once the line has been idle for
  3.5 character times (fixed 1.75 ms above 19200 baud, Modbus over serial line §2.5.1.1),
  measured from the last received byte or the end of our own last frame;
* **stale input flushed** before every attempt, so a late answer to an earlier,
  timed-out request can never be taken for the answer to this one;
* **response timeout and retries** done here (pymodbus runs with ``retries=0``) so each
  failed attempt is classified and counted;
* **separate counters per device** for CRC errors, timeouts and exception responses.
  pymodbus silently discards a frame whose CRC is bad; we watch the received bytes
  through its ``trace_packet`` hook, recognise a complete-but-corrupt answer and count a
  CRC error instead of a timeout.

Errors raised are the rackproto hierarchy: :class:`DeviceTimeout` (no answer after all
attempts), :class:`CrcError` (the last attempt got a corrupt frame), :class:`FrameError`
(the last attempt got a valid frame that does not fit the request), and
:class:`ModbusException` (the device answered with an exception; never retried).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from pymodbus.client import AsyncModbusSerialClient
from pymodbus.exceptions import ModbusException as PymodbusError
from pymodbus.pdu import ModbusPDU

from rackproto.crc import check as crc_ok
from rackproto.errors import CrcError, DeviceTimeout, FrameError, ModbusException

log = logging.getLogger(__name__)

READ_FUNCTIONS = {"coil": 0x01, "discrete": 0x02, "holding": 0x03, "input": 0x04}
MAX_READ = {"coil": 2000, "discrete": 2000, "holding": 125, "input": 125}


@dataclass
class Counters:
    """Per-device request statistics; every failed *attempt* is counted once."""

    requests: int = 0  # logical requests (each may take several attempts)
    ok: int = 0
    retries: int = 0
    crc_errors: int = 0
    timeouts: int = 0
    exceptions: int = 0
    mismatched: int = 0  # well-formed answers that do not fit the request (late replies)
    exception_codes: dict[int, int] = field(default_factory=dict)
    stale_bytes: int = 0  # unexpected input flushed before a request
    last_ok: float | None = None  # wall-clock time of the last good answer

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ModbusLink(Protocol):
    """What a bus scheduler needs from a bus; RtuClient is the real one, tests fake it."""

    def counters(self, unit: int) -> Counters: ...

    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]: ...

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None: ...

    async def write_coil(self, unit: int, address: int, value: bool) -> None: ...

    async def read_identification(self, unit: int) -> dict[int, bytes]: ...


def char_time(baud: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """Seconds on the wire per character: start + data + parity + stop bits."""
    return (1 + bytesize + (0 if parity == "N" else 1) + stopbits) / baud


def t35(baud: int, bytesize: int = 8, parity: str = "N", stopbits: int = 1) -> float:
    """Inter-frame silence: 3.5 characters, fixed at 1.75 ms above 19200 baud."""
    if baud > 19200:
        return 0.00175
    return 3.5 * char_time(baud, bytesize, parity, stopbits)


def expected_length(frame: bytes) -> int | None:
    """Length of the RTU response that starts ``frame``, once the header says so."""
    if len(frame) < 2:
        return None
    function = frame[1]
    if function & 0x80:
        return 5
    if function in (1, 2, 3, 4):
        return 5 + frame[2] if len(frame) >= 3 else None
    if function in (5, 6, 15, 16):
        return 8
    return None


class RtuClient:
    """One serial port; all requests are serialised (one outstanding request per bus)."""

    def __init__(
        self,
        port: str,
        *,
        baud: int = 19200,
        parity: str = "E",
        bytesize: int = 8,
        stopbits: int = 1,
        timeout: float = 0.5,
        retries: int = 2,
        client: AsyncModbusSerialClient | None = None,
    ):
        self.port = port
        self.baud = baud
        self.timeout = timeout
        self.retries = retries
        self.char_time = char_time(baud, bytesize, parity, stopbits)
        self.t35 = t35(baud, bytesize, parity, stopbits)
        self._client = client or AsyncModbusSerialClient(
            port,
            baudrate=baud,
            parity=parity,
            bytesize=bytesize,
            stopbits=stopbits,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace_packet,
            name=f"rtu:{port}",
        )
        self._client.set_max_no_responses(1 << 30)  # a serial bus is never "disconnected"
        self._counters: dict[int, Counters] = {}
        self._lock = asyncio.Lock()
        self._line_idle_at = 0.0  # monotonic time from which the line counts as idle
        self._unit = 0
        self._crc_bad = False
        self._stale_rx = 0  # bytes received while no request was outstanding
        self._idle_rx = b""

    # -- connection -------------------------------------------------------------------
    async def connect(self) -> None:
        if not await self._client.connect():
            raise DeviceTimeout(f"{self.port}: cannot open serial port")

    def close(self) -> None:
        self._client.close()

    @property
    def connected(self) -> bool:
        return self._client.connected

    def counters(self, unit: int) -> Counters:
        return self._counters.setdefault(unit, Counters())

    # -- requests ---------------------------------------------------------------------
    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
        """Read ``count`` registers (words) or bits (0/1) from ``table`` at ``address``."""
        if not 1 <= count <= MAX_READ[table]:
            raise ValueError(f"{table} read of {count} exceeds the Modbus limit")
        client = self._client
        call = {
            "holding": client.read_holding_registers,
            "input": client.read_input_registers,
            "coil": client.read_coils,
            "discrete": client.read_discrete_inputs,
        }[table]
        function = READ_FUNCTIONS[table]
        words = table in ("holding", "input")

        def fits(rsp: Any) -> bool:
            n = len(rsp.registers) if words else (len(rsp.bits) + 7) // 8 * 8
            return rsp.function_code == function and (
                n == count if words else n == (count + 7) // 8 * 8)

        rsp = await self._request(unit, lambda: call(address, count=count, device_id=unit), fits)
        if words:
            return list(rsp.registers)
        return [int(b) for b in rsp.bits[:count]]

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        """FC 16 (FC 6 for one word, as many small firmwares only implement that one)."""
        if len(values) == 1:
            await self._request(
                unit, lambda: self._client.write_register(address, values[0], device_id=unit)
            )
        else:
            await self._request(
                unit, lambda: self._client.write_registers(address, values, device_id=unit)
            )

    async def write_coil(self, unit: int, address: int, value: bool) -> None:
        await self._request(unit, lambda: self._client.write_coil(address, value, device_id=unit))

    async def read_identification(self, unit: int) -> dict[int, bytes]:
        """FC 2B/0E basic device identification: object id -> bytes."""
        rsp = await self._request(
            unit, lambda: self._client.read_device_information(read_code=1, device_id=unit)
        )
        return {int(k): bytes(v) for k, v in rsp.information.items()}  # type: ignore[attr-defined]

    async def _request(
        self, unit: int, send: Any, fits: Callable[[Any], bool] | None = None
    ) -> ModbusPDU:
        """One logical request with retries; ``fits`` rejects a well-formed answer that
        does not match the request (a late reply to an earlier one: wrong length)."""
        counters = self.counters(unit)
        counters.requests += 1
        async with self._lock:
            last_error: Exception | None = None
            for attempt in range(self.retries + 1):
                if attempt:
                    counters.retries += 1
                await self._before_transmit(counters, unit)
                try:
                    rsp = await send()
                except PymodbusError as exc:
                    if self._crc_bad:
                        counters.crc_errors += 1
                        last_error = CrcError(f"unit {unit}: response failed CRC check")
                    else:
                        counters.timeouts += 1
                        last_error = DeviceTimeout(f"unit {unit}: no response ({exc})")
                    log.debug("%s attempt %d: %s", self.port, attempt + 1, last_error)
                    continue
                self._line_idle_at = time.monotonic() + self.t35
                if rsp.isError():
                    code = int(getattr(rsp, "exception_code", 0))
                    counters.exceptions += 1
                    counters.exception_codes[code] = counters.exception_codes.get(code, 0) + 1
                    raise ModbusException(code, rsp.function_code & 0x7F)
                if fits is not None and not fits(rsp):
                    counters.mismatched += 1
                    last_error = FrameError(f"unit {unit}: response does not match the request")
                    log.debug("%s attempt %d: %s", self.port, attempt + 1, last_error)
                    continue
                counters.ok += 1
                counters.last_ok = time.time()
                return rsp
            assert last_error is not None
            raise last_error

    async def _before_transmit(self, counters: Counters, unit: int) -> None:
        """Wait out t3.5 since the last line activity, then drop any stale input."""
        delay = self._line_idle_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ctx = self._client.ctx
        stale, self._stale_rx, self._idle_rx = self._stale_rx, 0, b""
        ser = getattr(ctx.transport, "sync_serial", None)
        if ser is not None:
            try:
                stale += ser.in_waiting
                ser.reset_input_buffer()
            except OSError:  # pragma: no cover - port vanished; the request will time out
                pass
        if stale:
            counters.stale_bytes += stale
            log.debug("%s: flushed %d stale bytes", self.port, stale)
        ctx.recv_buffer = b""
        self._unit = unit
        self._crc_bad = False

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        """pymodbus hook on every frame sent and every receive buffer; returns data as is."""
        now = time.monotonic()
        if sending:
            self._line_idle_at = now + len(data) * self.char_time + self.t35
            return data
        self._line_idle_at = now + self.t35
        if not self._lock.locked():  # nobody asked: a late answer or line noise
            grown = data.startswith(self._idle_rx) and len(data) > len(self._idle_rx)
            self._stale_rx += len(data) - len(self._idle_rx) if grown else len(data)
            self._idle_rx = data
            return data
        size = expected_length(data)
        if size is not None and len(data) >= size and data[0] == self._unit:
            if not crc_ok(data[:size]):
                self._crc_bad = True
        return data
