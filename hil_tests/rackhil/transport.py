"""In-process host attachment: a serial-port-like object on the simulated bus.

:class:`HostPort` is what a test (or an in-process Modbus client) uses instead of a
UART.  It looks enough like ``serial.Serial`` (``write``, ``read``, ``in_waiting``,
``reset_input_buffer``, ``timeout``, ``flush``) for code written against pyserial,
but a blocking ``read`` does not sleep: it *steps the bus* in virtual time until the
bytes are there or the (virtual) timeout expires.  So a request/response exchange
with firmware nodes is deterministic and runs faster than real time.

Why not pymodbus's async client directly: pymodbus 3.16 opens its serial transport
through ``serial.serial_for_url`` and then waits on the port's file descriptor with
``loop.add_reader`` — it needs a real fd and real time.  That is what
:mod:`rackhil.pty_port` provides; this module is the virtual-time path.

pymodbus's *synchronous* ``ModbusSerialClient`` only needs ``write``, ``read`` and
``in_waiting`` from its ``socket``; it waits by polling ``in_waiting`` between
wall-clock sleeps.  A port made with ``step_on_poll=True`` advances the bus one
quantum per poll, so ``client.socket = HostPort(bus, step_on_poll=True)`` gives
pymodbus an in-process bus (contents deterministic, pace roughly one quantum per
pymodbus poll interval; its timeouts stay wall-clock).

The port is a *passive* attachment: the bus asks it for pending writes at the start
of each step and delivers to it only bytes that are final (collisions resolved),
so what ``read`` returns is exactly what was on the wire.
"""

from __future__ import annotations

from collections import deque

from .bus import Bus

DEFAULT_TIMEOUT_S = 1.0
MAX_FRAME_READ = 512  # twice the longest RTU frame (256 bytes)


class HostPort:
    """A host's UART + transceiver on the bus (a Modbus client's view of the wire)."""

    passive = True

    def __init__(
        self,
        bus: Bus,
        name: str = "host",
        *,
        timeout: float | None = DEFAULT_TIMEOUT_S,
        step_on_poll: bool = False,
    ) -> None:
        self.name = name
        self.bus = bus
        self.timeout = timeout  # seconds of *virtual* time; None = wait forever
        self.step_on_poll = step_on_poll
        self.is_open = True
        self.inter_byte_timeout: float | None = None  # pyserial attribute; unused here
        self._rx: deque[tuple[int, int]] = deque()  # (arrival_us, byte)
        self._tx: deque[tuple[int, bytes]] = deque()
        self._tx_end_us = 0
        self.bytes_written = 0
        self.bytes_read = 0
        bus.attach(self, passive=True)

    # ---- node contract (called by the bus) ------------------------------------
    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        rx = self._rx
        for i, b in enumerate(data):
            rx.append((t0_us + (i + 1) * byte_us, b))
        if len(rx) > len(data) and rx[-len(data) - 1][0] > rx[-len(data)][0]:
            # two drivers overlapped (a collision): keep the buffer in arrival order
            self._rx = deque(sorted(rx, key=lambda item: item[0]))

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        # Everything written is handed over at once: the UART sends it back to back
        # from the start times fixed by write(), and the bus delivers each byte when due.
        out = list(self._tx)
        self._tx.clear()
        return out

    # ---- serial-like API ------------------------------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Start sending now (or right after this port's previous write finishes)."""
        data = bytes(data)
        if not data:
            return 0
        start = max(self.bus.now_us, self._tx_end_us)
        self._tx_end_us = start + self.bus.line.duration_us(len(data))
        self._tx.append((start, data))
        self.bytes_written += len(data)
        return len(data)

    @property
    def in_waiting(self) -> int:
        """Bytes ready to read; with ``step_on_poll`` each poll first advances one quantum."""
        if self.step_on_poll:
            self.bus.step()
        return len(self._rx)

    @property
    def tx_end_us(self) -> int:
        """Virtual time at which the last written byte has left the wire."""
        return self._tx_end_us

    def flush(self) -> None:
        """Block (in virtual time) until everything written has been sent."""
        self.bus.run_until(self._tx_end_us)

    def reset_input_buffer(self) -> None:
        self._rx.clear()

    def reset_output_buffer(self) -> None:
        self._tx.clear()
        self._tx_end_us = self.bus.now_us

    def read(self, size: int = 1) -> bytes:
        """Up to ``size`` bytes; steps the bus until they arrived or ``timeout`` expired."""
        deadline = None if self.timeout is None else self.bus.now_us + round(self.timeout * 1_000_000)
        while len(self._rx) < size and (deadline is None or self.bus.now_us < deadline):
            self._wait_step(deadline)
        return self._take(min(size, len(self._rx)))

    def _wait_step(self, deadline: int | None) -> None:
        """One fine step while a reader waits: the reply is seen within one quantum of
        its arrival even on a bus that takes long steps when idle (``idle_quantum_us``)."""
        limit = self.bus.now_us + self.bus.quantum_us
        self.bus.step(limit if deadline is None else min(limit, deadline))

    def read_all(self) -> bytes:
        return self._take(len(self._rx))

    def _take(self, n: int) -> bytes:
        out = bytes(self._rx.popleft()[1] for _ in range(n))
        self.bytes_read += n
        return out

    def close(self) -> None:
        self.is_open = False
        self.bus.detach(self)

    # ---- frame-level helpers (Modbus RTU) -------------------------------------
    def read_frame(self, timeout: float | None = None, *, max_bytes: int = MAX_FRAME_READ) -> bytes:
        """Wait for a frame: its first byte within ``timeout`` s, then bytes until t3.5 of silence.

        Returns ``b""`` when nothing arrived in time.  The end of the frame is decided
        on arrival timestamps, exactly as an RTU receiver does.  A line that never
        falls silent (a babbling node) returns after ``max_bytes`` bytes, so the
        caller sees an over-long frame instead of waiting forever.
        """
        timeout = self.timeout if timeout is None else timeout
        t35 = self.bus.line.t35_us
        deadline = None if timeout is None else self.bus.now_us + round(timeout * 1_000_000)
        while not self._rx:
            if deadline is not None and self.bus.now_us >= deadline:
                return b""
            self._wait_step(deadline)
        frame = bytearray()
        last_t = 0
        while True:
            while self._rx:
                t, b = self._rx[0]
                if frame and t - last_t >= t35:
                    self.bytes_read += len(frame)
                    return bytes(frame)
                self._rx.popleft()
                frame.append(b)
                last_t = t
                if len(frame) >= max_bytes:
                    self.bytes_read += len(frame)
                    return bytes(frame)
            if self.bus.now_us - last_t >= t35:
                self.bytes_read += len(frame)
                return bytes(frame)
            self._wait_step(last_t + t35)

    def transact(self, request: bytes, timeout: float | None = None) -> bytes:
        """Send ``request`` (after flushing stale input), wait for the reply frame."""
        self.reset_input_buffer()
        self.write(request)
        self.flush()
        return self.read_frame(timeout)
