"""Wrapping tick arithmetic and a monotonic uptime, with no allocation.

The clock HAL returns ``time.ticks_us()``-style values that wrap. On a 32-bit
MicroPython port small ints are 31-bit, so the ports wrap ticks at 2**30 to keep
them small (no heap allocation). We do the same arithmetic here so a CPython
fake clock that never wraps, and a real port that does, behave alike.
"""

from micropython import const

TICKS_PERIOD = const(1 << 30)
TICKS_MAX = const((1 << 30) - 1)
_HALF = const(1 << 29)


def ticks_diff(a, b):
    """Signed ``a - b`` for wrapping ticks (valid while |a - b| < 2**29)."""
    return ((a - b + _HALF) & TICKS_MAX) - _HALF


def ticks_add(t, delta):
    """``t + delta`` wrapped into the tick range."""
    return (t + delta) & TICKS_MAX


class Uptime:
    """Seconds since boot from a wrapping millisecond clock.

    Kept as whole seconds plus a millisecond remainder so it stays a small int
    for decades (a plain millisecond count overflows 2**30 after 12 days and
    would then allocate a long int on every update).
    """

    def __init__(self, now_ms):
        self._last = now_ms
        self._frac = 0
        self.seconds = 0

    def update(self, now_ms):
        """Advance by the ticks elapsed since the last call; returns seconds."""
        d = ticks_diff(now_ms, self._last)
        if d > 0:
            self._last = now_ms
            frac = self._frac + d
            while frac >= 1000:
                frac -= 1000
                self.seconds += 1
            self._frac = frac
        return self.seconds

    def millis(self):
        """Milliseconds within the current second (0..999)."""
        return self._frac
