"""A virtual-time runner for one Board under CPython, on rackhil's HAL fakes.

The fakes themselves are :mod:`rackhil.fake_hal`'s (the ones ``CPythonNode`` uses,
built to behave like the VM's JS HAL), so the firmware-core tests and the HIL tests
agree on what a UART, a flash chip or a clock does. What this module adds is what
the core's tests need beyond a bus node:

* :class:`SimBoard` -- ``deliver``/``advance`` like the rackhil nodes, but with the
  hardware objects in reach (``sim.uart``, ``sim.flash``, ``sim.de`` ...), no
  watchdog resets, no stdout capture, and exceptions raised straight from
  ``poll()`` so a test sees the firmware's own traceback;
* :class:`FakeUart` with ``stuck`` (a wedged transmitter) and the module-level
  ``FakeUart`` name that ``SimBoard`` looks up at construction, so a test can swap
  in a subclass (e.g. one with ``set_baud``);
* :class:`FakeFlash` at 64 KiB by default (what the core's tests are written
  against; rackhil's default is 256 KiB);
* :class:`Transactor` -- request/response over any Node, and :func:`rig`, a
  booted application board with a Transactor in front of it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

from rackhil import fake_hal, shim
from rackhil.fake_hal import FakeOutputs, FakePin, FakeSensors, FakeWdt, PowerCut, VirtualClock

shim.install()  # ``from micropython import const`` for rackfw under CPython

__all__ = [
    "FakeClock", "FakeFlash", "FakeOutputs", "FakePin", "FakeSensors", "FakeUart", "FakeWdt",
    "PowerCut", "SimBoard", "Transactor", "rig",
]

#: rackhil's virtual clock (wraps at 2**30 like MicroPython's ``time.ticks_*``).
FakeClock = VirtualClock


class FakeUart(fake_hal.FakeUart):
    """rackhil's fake UART, plus ``stuck``: True wedges the transmitter (a started
    transmission never completes, so ``tx_done()`` stays false)."""

    stuck = False

    def finish_tx(self) -> bool:
        return False if self.stuck else super().finish_tx()


class FakeFlash(fake_hal.FakeFlash):
    """rackhil's NOR flash (``cut_after`` tears a write), 64 KiB unless told."""

    def __init__(self, size: int = 64 * 1024, image: bytes = b"") -> None:
        super().__init__(size, image)


class SimBoard:
    """A Board under CPython in virtual time (Node protocol: deliver / advance).

    ``poll()`` runs on every RX byte arrival, at the end of a transmission and when
    the delay it returned has passed -- the same schedule as ``CPythonNode`` and the
    VM worker. A negative delay fails the test (the Board contract says never).
    """

    def __init__(
        self,
        app: Any = None,
        unit_id: int = 1,
        baud: int = 115200,
        flash: FakeFlash | None = None,
        start_us: int = 1_000_000,
        board_kwargs: dict[str, Any] | None = None,
    ) -> None:
        from rackfw.board import Board

        self.clock = FakeClock(start_us)
        self.uart = FakeUart(self.clock, baud)
        self.de = FakePin(self.clock)
        self.sensors = FakeSensors()
        self.outputs = FakeOutputs(self.clock)
        self.flash = flash if flash is not None else FakeFlash()
        self.wdt = FakeWdt(self.clock, timeout_ms=0)  # counts feeds; never bites here
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
            t = self._wake
            if self._rx:
                t = min(t, self._rx[0][0])
            if self.clock.us < uart.tx_end:
                t = min(t, uart.tx_end)
            t = max(t, self.clock.us)
            if t > until_us:
                break
            self.clock.us = t
            while self._rx and self._rx[0][0] <= t:
                uart.push_rx(heapq.heappop(self._rx)[2])
            uart.finish_tx()
            self._wake = t + self._poll()
        self.clock.us = max(self.clock.us, until_us)
        out = [(int(start), bytes(data)) for start, data in uart.sent[self._sent_seen :]]
        self._sent_seen = len(uart.sent)
        return out


class Transactor:
    """Request/response over any Node: send an ADU, run until the reply is out."""

    def __init__(self, node: Any, byte_us: int, now: Callable[[], int]) -> None:
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


def rig(app: Any, sensors: dict[int, int], unit_id: int = 1,
        settle_us: int = 1_000_000) -> tuple[SimBoard, Transactor]:
    """``app`` (the class) on a SimBoard with ``sensors`` set, run ``settle_us`` so the
    app's boot settling is over, and a Transactor to talk Modbus to it."""
    sim = SimBoard(app=app, unit_id=unit_id)
    sim.sensors.values.update(sensors)
    t = Transactor(sim, sim.byte_us, lambda: sim.now)
    t.idle(settle_us)
    return sim, t
