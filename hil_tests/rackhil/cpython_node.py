"""Run firmware under CPython as a bus node: the fast path for unit and HIL tests.

``CPythonNode`` imports ``rackfw`` in this interpreter (``micropython`` comes from
the shim in ``rackhil/shim``), wires it to the fakes of :mod:`rackhil.fake_hal` and
runs the same discrete-event loop as the VM worker (mcu_worker.mjs): ``poll()`` is
called on every RX byte arrival, at the end of every transmission and when the delay
it returned has passed; the watchdog bites ``wdt_ms`` after the last feed and reboots
the board with flash kept. Same inputs, same outputs as ``VmNode`` -- only faster,
and with Python's debugger and coverage available.

Not emulated here: real-time hangs (a ``while True`` in firmware hangs the test;
pytest-timeout catches it) and MicroPython-only behaviour (heap_lock, small ints).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from . import shim
from .fake_hal import FakeFlash, FakeHal, PowerCut
from .mcu import RESET_POWER_ON, RESET_WATCHDOG, McuCrash

shim.install()

RESET_SOFT = 4

BoardFactory = Callable[[FakeHal, dict[str, Any]], Any]


def build_rackfw_board(hal: FakeHal, config: dict[str, Any]) -> Any:
    """The emulated board's construction (firmware/boards/emulated/main.py) on fake HAL."""
    from rackfw.board import Board

    kind = config.get("board", "power_shelf")
    app: Any = None
    if kind == "cdu":
        from rackfw.cooling.app import CduApp

        app = CduApp
    elif kind == "power_shelf":
        from rackfw.power.app import PowerShelfApp

        app = PowerShelfApp
    return Board(
        hal.uart, hal.de, hal.clock, hal.sensors, hal.outputs, hal.flash, hal.wdt,
        app=app,
        unit_id=config.get("unit_id", 0),
        serial=config.get("serial", "EMU-0001"),
        hw_rev=config.get("hw_rev", 1),
        reset_cause=config.get("reset_cause", RESET_POWER_ON),
        reset=hal.soft_reset,
    )


class _Lines(io.TextIOBase):
    """stdout sink that keeps complete lines (like the VM's line-buffered stdout)."""

    def __init__(self, out: list[str]) -> None:
        self.out = out
        self.partial = ""

    def write(self, s: str) -> int:
        text = self.partial + s
        *lines, self.partial = text.split("\n")
        self.out.extend(lines)
        return len(s)


class CPythonNode:
    """One board running ``rackfw`` (or any firmware ``build`` returns) under CPython.

    ``build(hal, config)`` constructs the firmware's board object from a
    :class:`~rackhil.fake_hal.FakeHal` (``hal.soft_reset(cause)`` is the software-reset
    hook) and the board config; it runs again on every reset.
    """

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any] | None = None,
        build: BoardFactory = build_rackfw_board,
        flash: bytes | FakeFlash = b"",
        flash_size: int = 256 * 1024,
        start_us: int = 0,
        **config_kw: Any,
    ) -> None:
        """``config`` (or keyword arguments: ``board``, ``unit_id``, ``baud``, ``serial``,
        ``wdt_ms``, ``byte_us``, ``reset_cause``) is what the VM board gets as JSON."""
        self.name = name
        self.config = dict(config or {}, **config_kw)
        self.build = build
        fl = flash if isinstance(flash, FakeFlash) else FakeFlash(flash_size, bytes(flash))
        self.hal = FakeHal(
            baud=self.config.get("baud", 115200),
            start_us=start_us,
            flash=fl,
            wdt_ms=self.config.get("wdt_ms", 2000),
            byte_us=self.config.get("byte_us"),
        )
        self.printed: list[str] = []
        self.resets: list[tuple[int, int, str]] = []
        self.crashed: str | None = None
        self.board: Any = None
        self._stdout = _Lines(self.printed)
        self._rxq: list[tuple[int, int, int]] = []  # heap of (arrival_us, order, byte)
        self._order = 0
        self._sent_seen = 0
        self._wake = start_us
        self._reset_request = 0
        self._crash_pending: str | None = None
        self._boot(self.config.get("reset_cause", RESET_POWER_ON))
        self._raise_crash()

    # -- hardware views (same names as VmNode)
    @property
    def now_us(self) -> int:
        return self.hal.clock.us

    @property
    def sensors(self) -> dict[int, int]:
        return self.hal.sensors.values

    @property
    def outputs(self) -> dict[int, int]:
        return self.hal.outputs.values

    @property
    def de_log(self) -> list[tuple[int, int]]:
        return self.hal.de.log

    @property
    def flash(self) -> FakeFlash:
        return self.hal.flash

    def set_sensor(self, ch: int, value: int) -> None:
        self.hal.sensors.values[ch] = int(value)

    def set_sensors(self, values: Mapping[int, int]) -> None:
        for ch, v in values.items():
            self.hal.sensors.values[ch] = int(v)

    def get_output(self, ch: int) -> int:
        return self.hal.outputs.read(ch)

    def get_outputs(self) -> dict[int, int]:
        return dict(self.hal.outputs.values)

    def read_flash(self) -> bytes:
        return bytes(self.hal.flash.mem)

    def cut_flash_after(self, nbytes: int) -> None:
        """Torn-write fault: power is lost after ``nbytes`` more flash bytes change."""
        self.hal.flash.cut_after = nbytes

    # -- lifecycle
    def _request_reset(self, cause: int = RESET_SOFT) -> None:
        self._reset_request = cause or RESET_SOFT

    def _boot(self, cause: int) -> None:
        self.hal.reset()
        self.board = None
        self.crashed = None
        self._wake = self.hal.clock.us
        self.hal.soft_reset = self._request_reset
        cfg = dict(self.config, reset_cause=cause)
        try:
            with contextlib.redirect_stdout(self._stdout):
                self.board = self.build(self.hal, cfg)
        except PowerCut:
            self._boot(RESET_POWER_ON)
        except Exception:
            self._crash(traceback.format_exc())

    def _crash(self, tb: str) -> None:
        self.crashed = tb
        self._crash_pending = tb

    def _raise_crash(self) -> None:
        if self._crash_pending is not None:
            tb, self._crash_pending = self._crash_pending, None
            raise McuCrash(self.name, tb)

    def power_cycle(self, keep_flash: bool = True, reset_cause: int = RESET_POWER_ON) -> None:
        """Reboot with RAM lost; flash kept unless ``keep_flash`` is false.

        ``reset_cause`` is what the firmware is told (e.g. 2 to model a watchdog reset).
        Bytes that arrived by ``now_us`` reach the old firmware first; bytes still on
        their way arrive at the rebooted board (as in ``VmNode``).
        """
        seen = self._sent_seen
        self.advance(self.now_us)
        self._sent_seen = seen  # what it sent is still reported by the next advance
        if not keep_flash:
            self.hal.flash.mem[:] = b"\xff" * len(self.hal.flash.mem)
        self.resets.append((self.now_us, reset_cause, "power_cycle"))
        self._boot(reset_cause)
        self._raise_crash()

    # -- Node protocol
    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        for i, b in enumerate(data):
            heapq.heappush(self._rxq, (t0_us + (i + 1) * byte_us, self._order, b))
            self._order += 1

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        """Run to ``until_us``; raise McuCrash once if the firmware raised on the way."""
        hal, uart, rxq = self.hal, self.hal.uart, self._rxq
        clock = hal.clock
        while True:
            alive = self.board is not None and self.crashed is None
            t = until_us
            if rxq and rxq[0][0] < t:
                t = rxq[0][0]
            if uart.busy and uart.tx_end < t:
                t = uart.tx_end
            if alive and self._wake < t:
                t = self._wake
            deadline = hal.wdt.deadline() if self.board is not None else None
            if deadline is not None and deadline < t:
                t = deadline
            if t < clock.us:
                t = clock.us  # bytes stamped in the past: shifted in now, no time travel
            clock.us = t
            got_rx = False
            while rxq and rxq[0][0] <= t:
                uart.push_rx(heapq.heappop(rxq)[2])
                got_rx = True
            tx_ended = uart.finish_tx()
            if deadline is not None and deadline <= t:
                self.resets.append((t, RESET_WATCHDOG, "watchdog"))
                self._boot(RESET_WATCHDOG)
                continue
            if alive and (got_rx or tx_ended or self._wake <= t):
                self._poll(t)
                if self._reset_request:
                    cause, self._reset_request = self._reset_request, 0
                    self.resets.append((t, cause, "software"))
                    self._boot(cause)
            if t >= until_us and not (rxq and rxq[0][0] <= until_us):
                break
        out = [(int(s), bytes(d)) for s, d in uart.sent[self._sent_seen :]]
        self._sent_seen = len(uart.sent)
        self._raise_crash()
        return out

    def _poll(self, t: int) -> None:
        try:
            with contextlib.redirect_stdout(self._stdout):
                delay = self.board.poll()
        except PowerCut:
            self.resets.append((t, RESET_POWER_ON, "power_cut"))
            self._boot(RESET_POWER_ON)
            return
        except Exception:
            self._crash(traceback.format_exc())
            return
        delay = int(delay) if delay is not None else 1
        self._wake = t + (delay if delay >= 1 else 1)
