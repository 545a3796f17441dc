"""A small synchronous Modbus RTU master for scenarios: registers by name, honest counters.

Scenarios talk to the boards the way the host does, over the simulated wire, but
without pymodbus's wall-clock waiting: :class:`Master` sits on a
:class:`~rackhil.transport.HostPort`, whose blocking reads step the bus in *virtual*
time, so a poll costs exactly its wire time plus the board's turnaround and a run is
deterministic.  Frames are built and checked with ``rackproto.adu``/``pdu``, values
encoded and decoded with the register maps (``rackproto.regmap``), so a scenario reads
``master.read(3, "t_supply")`` and gets 30.02 (°C), not a raw word.

Client rules from the Modbus serial-line spec that the counters depend on:

* t3.5 of silence before each request, stale input flushed before it;
* one response timeout per attempt (first byte), then the frame ends at t3.5 silence;
* failed *attempts* are counted by cause — ``crc_errors`` (a reply arrived but its CRC
  is wrong), ``timeouts`` (no reply), ``frame_errors`` (a reply from the wrong unit, the
  wrong function, or malformed), ``exceptions`` (the device answered with an exception;
  never retried: it is an answer).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rackproto import adu as adus
from rackproto import pdu as pdus
from rackproto import regmap
from rackproto.errors import CrcError, DeviceTimeout, FrameError, ModbusException
from rackproto.regmap import RegisterMap

from .transport import HostPort

log = logging.getLogger(__name__)

UNLOCK_KEYS = (0xC0DE, 0x3F21)  # the firmware's two-step unlock (docs/contracts.md)
_READ_FC = {
    "holding": pdus.READ_HOLDING_REGISTERS,
    "input": pdus.READ_INPUT_REGISTERS,
    "coil": pdus.READ_COILS,
    "discrete": pdus.READ_DISCRETE_INPUTS,
}


@dataclass
class MasterCounters:
    """What the master saw on the wire, per failed attempt (retries counted separately)."""

    requests: int = 0  # transactions started (not attempts)
    attempts: int = 0
    ok: int = 0
    retries: int = 0
    crc_errors: int = 0
    timeouts: int = 0
    frame_errors: int = 0
    exceptions: int = 0
    exception_codes: dict[int, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        """Transactions that ended without a good answer."""
        return self.requests - self.ok - self.exceptions

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "attempts": self.attempts,
            "ok": self.ok,
            "retries": self.retries,
            "crc_errors": self.crc_errors,
            "timeouts": self.timeouts,
            "frame_errors": self.frame_errors,
            "exceptions": self.exceptions,
            "exception_codes": dict(self.exception_codes),
        }


@dataclass(frozen=True)
class Event:
    """One record of a board's event log, as the event window shows it."""

    seq: int
    time_ms: int
    kind: str
    code: int
    value: int


class Master:
    """Synchronous Modbus RTU client on a :class:`HostPort` (virtual time).

    ``maps`` maps unit ids to register maps (a ``RegisterMap`` or a map name); the
    name-based methods need the unit's map, the raw ones do not.
    """

    def __init__(
        self,
        port: HostPort,
        maps: Mapping[int, RegisterMap | str] | None = None,
        *,
        timeout: float = 0.1,
        retries: int = 0,
    ) -> None:
        self.port = port
        self.timeout = timeout
        self.retries = retries
        self.maps: dict[int, RegisterMap] = {}
        self.counters = MasterCounters()
        self.per_unit: dict[int, MasterCounters] = {}
        self._t_idle_us = 0
        for unit, m in (maps or {}).items():
            self.add_device(unit, m)

    def add_device(self, unit: int, regs: RegisterMap | str) -> None:
        self.maps[unit] = regmap.load(regs) if isinstance(regs, str) else regs

    def regmap(self, unit: int) -> RegisterMap:
        try:
            return self.maps[unit]
        except KeyError:
            raise KeyError(f"no register map known for unit {unit}") from None

    # ---- transactions ------------------------------------------------------------
    def _count(self, unit: int, attr: str, n: int = 1) -> None:
        setattr(self.counters, attr, getattr(self.counters, attr) + n)
        per = self.per_unit.setdefault(unit, MasterCounters())
        setattr(per, attr, getattr(per, attr) + n)

    def transact(self, unit: int, request: pdus.Pdu) -> pdus.Pdu | None:
        """Send ``request`` to ``unit``; return the response PDU (None for broadcast).

        Raises ``ModbusException`` (device answered with an exception),
        ``DeviceTimeout``, ``CrcError`` or ``FrameError`` (the last attempt's failure).
        """
        frame = adus.build(unit, request)
        self._count(unit, "requests")
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                self._count(unit, "retries")
            self._count(unit, "attempts")
            try:
                response = self._attempt(unit, request, frame)
            except ModbusException as exc:
                self._count(unit, "exceptions")
                for c in (self.counters, self.per_unit[unit]):
                    c.exception_codes[exc.code] = c.exception_codes.get(exc.code, 0) + 1
                raise
            except DeviceTimeout as exc:
                self._count(unit, "timeouts")
                last = exc
                continue
            except CrcError as exc:
                self._count(unit, "crc_errors")
                last = exc
                continue
            except FrameError as exc:
                self._count(unit, "frame_errors")
                last = exc
                continue
            self._count(unit, "ok")
            return response
        assert last is not None
        raise last

    def _attempt(self, unit: int, request: pdus.Pdu, frame: bytes) -> pdus.Pdu | None:
        port = self.port
        bus = port.bus
        self._step_until(self._t_idle_us)
        port.reset_input_buffer()
        port.write(frame)
        self._step_until(port.tx_end_us)
        # The bus hands a frame to the *other* boards one quantum after it ended, so
        # the silence they see before our next request is t3.5 + one quantum shorter
        # than ours: keep the turnaround long enough that they still see >= t3.5.
        quiet_us = bus.line.t35_us + bus.quantum_us
        if unit == adus.BROADCAST:
            self._t_idle_us = bus.now_us + quiet_us
            return None
        reply = self._read_reply()
        self._t_idle_us = bus.now_us + quiet_us
        if not reply:
            raise DeviceTimeout(f"unit {unit}: no reply within {self.timeout * 1000:.0f} ms")
        answer = adus.parse_response(reply)  # CrcError / FrameError
        if answer.address != unit:
            raise FrameError(f"reply from unit {answer.address}, expected {unit}")
        if isinstance(answer.pdu, pdus.ExceptionResponse):
            if answer.pdu.function != request.function:
                raise FrameError(f"exception for function {answer.pdu.function:#x}, sent {request.function:#x}")
            raise ModbusException(answer.pdu.code, answer.pdu.function)
        if answer.pdu.function != request.function:
            raise FrameError(f"reply function {answer.pdu.function:#x}, sent {request.function:#x}")
        return answer.pdu

    def _read_reply(self) -> bytes:
        """One reply frame: first byte within the response timeout, then bytes until
        t3.5 of silence — but never longer than the longest legal frame takes, so a
        babbling node costs one failed attempt, not a master stuck reading forever.

        Uses the port's timestamped receive queue (``HostPort._rx``) because the end of
        an RTU frame is a matter of arrival times.
        """
        port = self.port
        bus = port.bus
        t35 = bus.line.t35_us
        deadline = bus.now_us + round(self.timeout * 1_000_000)
        # (re-read port._rx every time: the port replaces the deque to re-sort it
        # after a collision)
        while not port._rx:
            if bus.now_us >= deadline:
                return b""
            self._step(deadline)
        first_t = port._rx[0][0]
        cap = first_t + adus.MAX_FRAME * bus.line.byte_us + t35
        frame = bytearray()
        last_t = first_t
        while True:
            rx = port._rx
            while rx:
                t, b = rx[0]
                if frame and t - last_t >= t35:
                    return bytes(frame)
                rx.popleft()
                frame.append(b)
                last_t = t
            if bus.now_us - last_t >= t35:
                return bytes(frame)
            if bus.now_us >= cap or len(frame) > adus.MAX_FRAME:
                port.reset_input_buffer()
                raise FrameError(f"{len(frame)}+ bytes without a t3.5 gap (a babbling node?)")
            self._step(min(last_t + t35, cap))

    def _step(self, limit_us: int) -> None:
        """One fine bus step: never an idle stride while a reply may be on its way."""
        bus = self.port.bus
        bus.step(min(limit_us, bus.now_us + bus.quantum_us))

    def _step_until(self, until_us: int) -> None:
        while self.port.bus.now_us < until_us:
            self._step(until_us)

    # ---- raw access ----------------------------------------------------------------
    def read_registers(self, unit: int, table: str, address: int, count: int) -> list[int]:
        """Read ``count`` words (holding/input) or bits (coil/discrete) from ``address``."""
        fc = _READ_FC[table]
        pdu = self.transact(unit, pdus.ReadRequest(fc, address, count))
        if isinstance(pdu, pdus.ReadRegistersResponse):
            if len(pdu.values) != count:
                raise FrameError(f"asked for {count} registers, got {len(pdu.values)}")
            return list(pdu.values)
        if isinstance(pdu, pdus.ReadBitsResponse):
            return [int(b) for b in pdu.bits[:count]]
        raise FrameError(f"unexpected reply {pdu!r}")

    def write_register(self, unit: int, address: int, value: int) -> None:
        self.transact(unit, pdus.WriteSingle(pdus.WRITE_SINGLE_REGISTER, address, value & 0xFFFF))

    def write_registers(self, unit: int, address: int, values: Iterable[int]) -> None:
        self.transact(unit, pdus.WriteRegistersRequest(address, tuple(v & 0xFFFF for v in values)))

    # ---- by name -------------------------------------------------------------------
    def read_many(self, unit: int, names: Iterable[str]) -> dict[str, Any]:
        """Read registers by name in as few requests as the map allows (same table, ≤ 125)."""
        m = self.regmap(unit)
        regs = sorted((m.get(n) for n in names), key=lambda r: (r.table, r.address))
        out: dict[str, Any] = {}
        i = 0
        while i < len(regs):
            first = regs[i]
            j = i
            end = first.address + first.count
            while (
                j + 1 < len(regs)
                and regs[j + 1].table == first.table
                and regs[j + 1].address + regs[j + 1].count - first.address <= pdus.MAX_READ_REGISTERS
            ):
                j += 1
                end = max(end, regs[j].address + regs[j].count)
            words = self.read_registers(unit, first.table, first.address, end - first.address)
            for v in m.decode(first.table, first.address, words):
                out[v.name] = v.value
            i = j + 1
        return {n: out[n] for n in (r.name for r in regs)}

    def read(self, unit: int, name: str) -> Any:
        """One register's engineering value (scaled number, flag names, enum name, str)."""
        return self.read_many(unit, [name])[name]

    def read_block(self, unit: int, block: str) -> dict[str, Any]:
        """Every register of a block (``"loop"``, ``"psu3"``, ``"status"``) in one request."""
        b = self.regmap(unit).block(block)
        words = self.read_registers(unit, b.table, b.base, b.size)
        return {v.name: v.value for v in self.regmap(unit).decode(b.table, b.base, words)}

    def write(self, unit: int, name: str, value: Any, *, unlock: bool = False) -> None:
        """Encode (range-checked: ``RangeError``) and write a holding register by name."""
        m = self.regmap(unit)
        reg = m.get(name)
        words = m.encode_value(reg, value)
        if unlock:
            self.unlock(unit)
        if len(words) == 1:
            self.write_register(unit, reg.address, words[0])
        else:
            self.write_registers(unit, reg.address, words)

    def unlock(self, unit: int) -> None:
        """The firmware's two-step key: protected registers are writable for a while."""
        addr = self.regmap(unit).get("unlock_key").address
        for key in UNLOCK_KEYS:
            self.write_register(unit, addr, key)

    def clear_faults(self, unit: int) -> None:
        """The fault-clear command (latched faults whose cause is gone are cleared)."""
        self.write_register(unit, self.regmap(unit).get("fault_clear").address, 1)

    def _window(self, unit: int) -> list[Event]:
        """The records the event window shows now (oldest first)."""
        m = self.regmap(unit)
        first = m.block("event1")
        last = m.block(f"event{len([b for b in m.blocks if b.template == first.template])}")
        n = int(self.read(unit, "event_window_len"))
        words = self.read_registers(unit, "input", first.base, last.end - first.base)
        decoded = {v.name: v.value for v in m.decode("input", first.base, words)}
        return [
            Event(
                seq=int(decoded[f"event{i}_seq"]),
                time_ms=int(decoded[f"event{i}_time"]),
                kind=str(decoded[f"event{i}_kind"]),
                code=int(decoded[f"event{i}_code"]),
                value=int(decoded[f"event{i}_value"]),
            )
            for i in range(1, n + 1)
        ]

    def events(self, unit: int, last: int | None = None) -> list[Event]:
        """Stored events, oldest first (only the newest ``last`` when given).

        Pages the window through ``event_select``, so it works whatever the window
        showed before (the board stops following the newest events once selected).
        """
        st = self.read_many(unit, ["events_stored", "event_head"])
        stored, head = int(st["events_stored"]), int(st["event_head"])
        want = stored if last is None else min(stored, last)
        sel = self.regmap(unit).get("event_select").address
        out: list[Event] = []
        seq = (head - want + 1) & 0xFFFF
        while len(out) < want:
            self.write_register(unit, sel, seq)
            page = self._window(unit)
            if not page:
                break
            out.extend(page[: want - len(out)])
            seq = (page[-1].seq + 1) & 0xFFFF
        return out
