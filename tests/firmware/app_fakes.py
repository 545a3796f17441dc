"""Fakes for testing a firmware application, or one of its parts, without a Board.

An application sees the hardware only through what the Board hands its constructor
(docs/contracts.md, "Application contract"): ``app(bank, sensors, outputs, events,
clock)``. These are those five things at their simplest -- dicts instead of ADCs,
a list instead of the flash event log, a clock the test moves by hand -- so the app
tests can drive a condition through the sensors and read back outputs, registers and
events, one control tick at a time. (A Board with its full HAL is ``fwsim.SimBoard``.)
"""

from __future__ import annotations

from typing import Any

from rackhil import shim

shim.install()  # ``from micropython import const`` for rackfw under CPython

from rackfw.regbank import RegBank  # noqa: E402


class Sensors:
    """Sensor HAL: ``v[ch]`` is what ``read(ch)`` returns (0 for unset channels)."""

    def __init__(self) -> None:
        self.v: dict[int, int] = {}

    def read(self, ch: int) -> int:
        return self.v.get(ch, 0)


class Outputs(Sensors):
    """Output HAL: ``write`` stores into ``v``; ``read`` returns the last value."""

    def write(self, ch: int, value: int) -> None:
        self.v[ch] = value


class Events:
    """Event log: ``log_`` keeps every ``(kind, code, value)`` in order."""

    def __init__(self) -> None:
        self.log_: list[tuple[int, int, int]] = []

    def log(self, kind: int, code: int, value: int) -> None:
        self.log_.append((kind, code, value))

    def of(self, kind: int) -> list[tuple[int, int]]:
        """``(code, value)`` of every event of ``kind``."""
        return [(c, v) for k, c, v in self.log_ if k == kind]


class Clock:
    """A clock the test advances by setting ``ms``."""

    def __init__(self, ms: int = 0) -> None:
        self.ms = ms

    def ticks_ms(self) -> int:
        return self.ms

    def ticks_us(self) -> int:
        return self.ms * 1000


def default_bank(regs: Any) -> RegBank:
    """A register bank for the generated map ``regs`` with its factory defaults in
    place, as the Board leaves it before it constructs the app."""
    bank = RegBank(regs.IR_SIZE, regs.HR_SIZE, regs.COIL_SIZE, regs.DI_SIZE)
    for a in range(regs.HR_SIZE):
        bank.hr[a] = regs.HR_DEFAULT[a] & 0xFFFF
    return bank
