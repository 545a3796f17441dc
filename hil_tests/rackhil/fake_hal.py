"""CPython fakes of the firmware HAL (docs/contracts.md, "Firmware HAL").

They behave like the JS HAL of the emulated board (hil_tests/rackhil/mcu_worker.mjs)
so that ``CPythonNode`` and ``VmNode`` give the same answers to the same inputs:

* the clock is virtual and wraps like MicroPython's ``time.ticks_*`` (2**30);
* a UART transmission takes ``n * byte_us`` and a ``send`` while busy continues the
  same transmission; ``tx_done`` turns true when the clock reaches its end;
* flash is NOR-like: erase (4 KiB sectors) sets 0xFF, programming only clears bits,
  and ``cut_after`` makes it lose power after N more bytes (torn-write tests);
* the watchdog expires ``timeout_ms`` after the last feed (0 disables it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from rackproto.errors import RackError

TICKS_PERIOD = 1 << 30
SECTOR = 4096
RX_FIFO_MAX = 4096


class PowerCut(RackError):
    """Flash lost power in the middle of a program or erase (``FakeFlash.cut_after``)."""


class VirtualClock:
    def __init__(self, start_us: int = 0) -> None:
        self.us = start_us

    def ticks_us(self) -> int:
        return self.us % TICKS_PERIOD

    def ticks_ms(self) -> int:
        return (self.us // 1000) % TICKS_PERIOD


class FakePin:
    """The RS-485 driver-enable pin, with a log of (time, level) writes."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.level = 0
        self.log: list[tuple[int, int]] = []

    def value(self, v: int) -> None:
        self.level = 1 if v else 0
        self.log.append((self.clock.us, self.level))


class FakeUart:
    """RX FIFO filled by the runner, TX captured as ``[start_us, bytes]`` transmissions."""

    def __init__(self, clock: VirtualClock, baud: int = 115200, byte_us: int | None = None) -> None:
        self.clock = clock
        self.baud = baud
        # 11 bits per character at 8E1, whole microseconds like rackhil.wire
        self.byte_us = byte_us or max(1, round(11_000_000 / baud))
        self.rx: deque[int] = deque()
        self.sent: list[list[Any]] = []  # [start_us, bytearray]
        self.tx_end = -1
        self.busy = False
        self.overruns = 0

    def any(self) -> int:
        return len(self.rx)

    def read_byte(self) -> int:
        return self.rx.popleft() if self.rx else -1

    def send(self, buf: Any, n: int) -> None:
        data = bytes(buf[:n])
        if self.busy and self.sent:
            self.sent[-1][1] += data  # queued behind the current frame
            self.tx_end += n * self.byte_us
        else:
            self.sent.append([self.clock.us, bytearray(data)])
            self.tx_end = self.clock.us + n * self.byte_us
        self.busy = n > 0

    def tx_done(self) -> bool:
        return not self.busy

    # runner side
    def push_rx(self, byte: int) -> None:
        if len(self.rx) >= RX_FIFO_MAX:
            self.rx.popleft()
            self.overruns += 1
        self.rx.append(byte)

    def finish_tx(self) -> bool:
        """Called by the runner when the clock reached ``tx_end``; True if a TX ended."""
        if self.busy and self.clock.us >= self.tx_end:
            self.busy = False
            return True
        return False


class FakeSensors:
    def __init__(self, values: Mapping[int, int] | None = None) -> None:
        self.values: dict[int, int] = dict(values or {})

    def read(self, ch: int) -> int:
        return self.values.get(ch, 0)


class FakeOutputs:
    """Last written values plus a log of changes ``(time, ch, value)``."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.values: dict[int, int] = {}
        self.changes: list[tuple[int, int, int]] = []

    def write(self, ch: int, value: int) -> None:
        if self.values.get(ch, 0) != value:
            self.changes.append((self.clock.us, ch, value))
        self.values[ch] = value

    def read(self, ch: int) -> int:
        return self.values.get(ch, 0)


class FakeFlash:
    """NOR-like flash over a bytearray.

    ``cut_after = N`` lets exactly N more bytes be programmed or erased, then raises
    :class:`PowerCut` -- the bytes before the cut are changed, the rest are not.
    """

    SECTOR = SECTOR

    def __init__(self, size: int = 256 * 1024, image: bytes = b"") -> None:
        self.mem = bytearray(b"\xff" * size)
        self.mem[: len(image)] = image[:size]
        self.cut_after: int | None = None
        self.writes = 0
        self.erases = 0

    def size(self) -> int:
        return len(self.mem)

    def _check(self, offset: int, n: int) -> None:
        if offset < 0 or n < 0 or offset + n > len(self.mem):
            raise ValueError("flash access out of range")

    def _budget(self, n: int) -> int:
        if self.cut_after is None:
            return n
        ok = min(n, self.cut_after)
        self.cut_after -= ok
        return ok

    def read(self, offset: int, buf: Any, n: int) -> None:
        self._check(offset, n)
        buf[:n] = self.mem[offset : offset + n]

    def write(self, offset: int, buf: Any, n: int) -> None:
        self._check(offset, n)
        self.writes += 1
        ok = self._budget(n)
        for i in range(ok):
            self.mem[offset + i] &= buf[i]
        if ok < n:
            raise PowerCut(f"power cut while programming at {offset + ok:#x}")

    def erase(self, offset: int, n: int) -> None:
        self._check(offset, n)
        if offset % SECTOR or n % SECTOR:
            raise ValueError("flash erase not sector aligned")
        self.erases += 1
        ok = self._budget(n)
        self.mem[offset : offset + ok] = b"\xff" * ok
        if ok < n:
            raise PowerCut(f"power cut while erasing at {offset + ok:#x}")


class FakeWdt:
    def __init__(self, clock: VirtualClock, timeout_ms: int = 2000) -> None:
        self.clock = clock
        self.timeout_ms = timeout_ms
        self.last_feed = clock.us
        self.feeds = 0

    def feed(self) -> None:
        self.feeds += 1
        self.last_feed = self.clock.us

    def deadline(self) -> int | None:
        """Virtual time at which the watchdog bites, or None when disabled."""
        if not self.timeout_ms:
            return None
        return self.last_feed + self.timeout_ms * 1000


def _no_soft_reset(cause: int = 4) -> None:
    raise RuntimeError("no runner attached to perform a software reset")


class FakeHal:
    """One board's worth of fake hardware; flash and sensors survive a reset."""

    def __init__(
        self,
        baud: int = 115200,
        start_us: int = 0,
        flash: FakeFlash | None = None,
        wdt_ms: int = 2000,
        byte_us: int | None = None,
    ) -> None:
        self.clock = VirtualClock(start_us)
        self.uart = FakeUart(self.clock, baud, byte_us)
        self.de = FakePin(self.clock)
        self.sensors = FakeSensors()
        self.outputs = FakeOutputs(self.clock)
        self.flash = flash if flash is not None else FakeFlash()
        self.wdt = FakeWdt(self.clock, wdt_ms)
        #: the firmware's software-reset hook (``Board(reset=...)``); the runner sets it
        self.soft_reset = _no_soft_reset

    def reset(self) -> None:
        """What a reset does to the hardware: UART and outputs back to idle, RAM gone."""
        uart = self.uart
        uart.rx.clear()
        uart.busy = False
        uart.tx_end = -1
        for ch, v in list(self.outputs.values.items()):
            if v:
                self.outputs.changes.append((self.clock.us, ch, 0))
        self.outputs.values.clear()
        self.wdt.last_feed = self.clock.us
