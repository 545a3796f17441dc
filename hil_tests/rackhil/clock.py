"""Pacing virtual time: as fast as possible (lockstep, default) or tied to the wall clock.

The bus keeps time as integer microseconds that only move when the simulator steps.
Tests run that clock flat out, which is deterministic and faster than real time.
A program on the other side of a pty (pymodbus, mbpoll) lives in wall-clock time,
so the pty mode paces the virtual clock with :class:`RealTimePacer`: before each
step it sleeps until the wall clock has caught up with the step's target.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Sequence

US_PER_S = 1_000_000


def s_to_us(seconds: float) -> int:
    return round(seconds * US_PER_S)


def us_to_s(us: int) -> float:
    return us / US_PER_S


class AsFastAsPossible:
    """The lockstep default: never waits."""

    def start(self, virtual_us: int) -> None:
        pass

    def wait_until(self, virtual_us: int) -> float:
        return 0.0

    def wait_or_wake(self, virtual_us: int, fds: Sequence[int]) -> int:
        return virtual_us


class RealTimePacer:
    """Keep virtual time at most a step ahead of ``speed`` x the wall clock.

    ``wait_until`` returns how far (seconds) the simulation lags behind the wall
    clock; a lag that keeps growing means the nodes are slower than real time.
    ``sleep`` and ``monotonic`` are injectable so tests need no real waiting.
    """

    def __init__(
        self,
        speed: float = 1.0,
        *,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._sleep = sleep
        self._monotonic = monotonic
        self._wall0 = 0.0
        self._virt0 = 0
        self._started = False

    def start(self, virtual_us: int) -> None:
        """Virtual time ``virtual_us`` corresponds to the wall clock now."""
        self._wall0 = self._monotonic()
        self._virt0 = virtual_us
        self._started = True

    def wall_target(self, virtual_us: int) -> float:
        """Wall-clock time (``monotonic`` scale) at which ``virtual_us`` is due."""
        if not self._started:
            self.start(virtual_us)
        return self._wall0 + (virtual_us - self._virt0) / US_PER_S / self.speed

    def wait_until(self, virtual_us: int) -> float:
        target = self.wall_target(virtual_us)
        ahead = target - self._monotonic()
        if ahead > 0:
            self._sleep(ahead)
            return 0.0
        return -ahead

    def wait_or_wake(self, virtual_us: int, fds: Sequence[int]) -> int:
        """Like :meth:`wait_until`, but return early when one of ``fds`` becomes
        readable (a program wrote to the pty); returns the virtual time reached:
        ``virtual_us``, or the virtual time of the wall clock at the wake-up.

        This lets a real-time bus take long idle strides (few steps, little CPU) and
        still start a host's request the moment it is written."""
        target = self.wall_target(virtual_us)
        ahead = target - self._monotonic()
        if ahead <= 0:
            return virtual_us
        ready, _, _ = select.select(list(fds), [], [], ahead)
        if not ready:
            return virtual_us
        reached = self._virt0 + int((self._monotonic() - self._wall0) * self.speed * US_PER_S)
        return min(virtual_us, reached)
