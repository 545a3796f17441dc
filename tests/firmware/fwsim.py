"""CPython fakes of the firmware HAL and a virtual-time runner for one Board.

These mirror the HAL in docs/contracts.md closely enough for the conformance
suite and follow the same ``deliver``/``advance`` semantics as the rackhil
nodes, so one suite runs against this runner and the MicroPython VM alike.
(rackhil.fake_hal / CPythonNode are the shared versions for HIL tests; the
core's tests keep their own so they can poke at flash cuts and timing edges.)
"""

from __future__ import annotations

import heapq
import sys
import types
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def ensure_micropython_shim() -> None:
    """Make ``from micropython import const`` work under CPython."""
    try:
        import micropython  # noqa: F401

        return
    except ImportError:
        pass
    shim = ROOT / "hil_tests" / "rackhil" / "shim"
    if (shim / "micropython.py").exists():
        sys.path.insert(0, str(shim))
        return
    m = types.ModuleType("micropython")
    m.const = lambda x: x  # type: ignore[attr-defined]
    m.heap_lock = lambda: 0  # type: ignore[attr-defined]
    m.heap_unlock = lambda: 0  # type: ignore[attr-defined]
    sys.modules["micropython"] = m


ensure_micropython_shim()

TICKS_MASK = (1 << 30) - 1


class PowerCut(Exception):
    """The fake flash lost power in the middle of an operation."""


class FakeClock:
    def __init__(self, start_us: int = 0) -> None:
        self.us = start_us

    def ticks_us(self) -> int:
        return self.us & TICKS_MASK

    def ticks_ms(self) -> int:
        return (self.us // 1000) & TICKS_MASK


class FakePin:
    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.level = 0
        self.log: list[tuple[int, int]] = []

    def value(self, v: int) -> None:
        self.level = v
        self.log.append((self.clock.us, v))


class FakeUart:
    def __init__(self, clock: FakeClock, baud: int = 115200, bits: int = 11) -> None:
        self.clock = clock
        self.baud = baud
        self.byte_us = bits * 1_000_000 // baud
        self.rx: list[int] = []
        self.sent: list[tuple[int, bytes]] = []
        self.tx_end = 0
        self.stuck = False  # True: transmissions never complete (wedged UART)

    def any(self) -> int:
        return len(self.rx)

    def read_byte(self) -> int:
        return self.rx.pop(0) if self.rx else -1

    def send(self, buf, n: int) -> None:
        self.sent.append((self.clock.us, bytes(buf[:n])))
        self.tx_end = self.clock.us + n * self.byte_us

    def tx_done(self) -> bool:
        return not self.stuck and self.clock.us >= self.tx_end


class FakeSensors:
    def __init__(self) -> None:
        self.values: dict[int, int] = {}

    def read(self, ch: int) -> int:
        return self.values.get(ch, 0)


class FakeOutputs:
    def __init__(self) -> None:
        self.values: dict[int, int] = {}

    def write(self, ch: int, value: int) -> None:
        self.values[ch] = value

    def read(self, ch: int) -> int:
        return self.values.get(ch, 0)


class FakeFlash:
    """NOR-like flash: erase sets 0xFF, programming can only clear bits.

    ``cut_after`` = N lets exactly N more bytes be programmed or erased, then
    raises PowerCut (the board lost power mid-operation).
    """

    SECTOR = 4096

    def __init__(self, size: int = 64 * 1024) -> None:
        self.mem = bytearray(b"\xff" * size)
        self.cut_after: int | None = None
        self.writes = 0
        self.erases = 0

    def size(self) -> int:
        return len(self.mem)

    def read(self, offset: int, buf, n: int) -> None:
        buf[:n] = self.mem[offset : offset + n]

    def _budget(self, n: int) -> int:
        if self.cut_after is None:
            return n
        ok = min(n, self.cut_after)
        self.cut_after -= ok
        return ok

    def write(self, offset: int, buf, n: int) -> None:
        self.writes += 1
        ok = self._budget(n)
        for i in range(ok):
            self.mem[offset + i] &= buf[i]
        if ok < n:
            raise PowerCut(f"cut while programming at {offset + ok:#x}")

    def erase(self, offset: int, n: int) -> None:
        if offset % self.SECTOR or n % self.SECTOR:
            raise ValueError("erase must be sector aligned")
        self.erases += 1
        ok = self._budget(n)
        self.mem[offset : offset + ok] = b"\xff" * ok
        if ok < n:
            raise PowerCut(f"cut while erasing at {offset + ok:#x}")


class FakeWdt:
    def __init__(self) -> None:
        self.feeds = 0

    def feed(self) -> None:
        self.feeds += 1


class SimBoard:
    """A Board under CPython in virtual time (Node protocol: deliver / advance)."""

    def __init__(
        self,
        app=None,
        unit_id: int = 1,
        baud: int = 115200,
        flash: FakeFlash | None = None,
        start_us: int = 1_000_000,
        board_kwargs: dict | None = None,
    ) -> None:
        from rackfw.board import Board

        self.clock = FakeClock(start_us)
        self.uart = FakeUart(self.clock, baud)
        self.de = FakePin(self.clock)
        self.sensors = FakeSensors()
        self.outputs = FakeOutputs()
        self.flash = flash if flash is not None else FakeFlash()
        self.wdt = FakeWdt()
        self.byte_us = self.uart.byte_us
        self._rx: list[tuple[int, int, int]] = []  # heap of (time, order, byte)
        self._order = 0
        self._sent_seen = 0
        self.board = Board(
            self.uart, self.de, self.clock, self.sensors, self.outputs, self.flash, self.wdt,
            app=app, unit_id=unit_id, **(board_kwargs or {}),
        )
        self._wake = self.clock.us + self._poll()

    def _poll(self) -> int:
        d = self.board.poll()
        assert d >= 0, d
        return d

    @property
    def now(self) -> int:
        return self.clock.us

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        for i, b in enumerate(data):
            heapq.heappush(self._rx, (t0_us + (i + 1) * byte_us, self._order, b))
            self._order += 1

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        uart = self.uart
        while True:
            cands = [self._wake]
            if self._rx:
                cands.append(self._rx[0][0])
            if self.clock.us < uart.tx_end:
                cands.append(uart.tx_end)
            t = max(min(cands), self.clock.us)
            if t > until_us:
                break
            self.clock.us = t
            while self._rx and self._rx[0][0] <= t:
                uart.rx.append(heapq.heappop(self._rx)[2])
            self._wake = t + self._poll()
        self.clock.us = max(self.clock.us, until_us)
        out = uart.sent[self._sent_seen :]
        self._sent_seen = len(uart.sent)
        return out


class Transactor:
    """Request/response over any Node: send an ADU, run until the reply is out."""

    def __init__(self, node, byte_us: int, now: Callable[[], int]) -> None:
        self.node = node
        self.byte_us = byte_us
        self._now = now
        self.t = now()

    def send(self, adu: bytes, gap_us: int = 5000) -> list[bytes]:
        t0 = self.t + gap_us
        self.node.deliver(adu, t0, self.byte_us)
        end = t0 + len(adu) * self.byte_us + 2000 + 260 * self.byte_us
        out = self.node.advance(end)
        self.t = end
        return [d for _, d in out]

    def send_parts(self, parts: list[bytes], gaps_us: list[int]) -> list[bytes]:
        """Deliver ``parts`` back to back with ``gaps_us[i]`` of silence after part i."""
        t = self.t + 5000
        for i, part in enumerate(parts):
            self.node.deliver(part, t, self.byte_us)
            t += len(part) * self.byte_us + (gaps_us[i] if i < len(gaps_us) else 0)
        end = t + 2000 + 260 * self.byte_us
        out = self.node.advance(end)
        self.t = end
        return [d for _, d in out]

    def transact(self, adu: bytes) -> bytes | None:
        out = self.send(adu)
        assert len(out) <= 1, out
        return out[0] if out else None

    def idle(self, us: int) -> None:
        self.t += us
        self.node.advance(self.t)
