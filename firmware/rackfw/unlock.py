"""Time-limited unlock for protected holding registers.

Why a two-step key: a single stray write (a host bug, a bit flip that still
passes CRC on a noisy bus) must not open the protection thresholds. The host
writes ``KEY`` to the unlock register and then its complement ``KEY ^ 0xFFFF``
within ``STEP_MS``; protected registers are then writable for ``HOLD_MS``.
Writing 0 locks at once. Every grant, expiry and bad key goes to the event log.
"""

from micropython import const

from rackfw.events import (
    EV_UNLOCK,
    UNLOCK_BAD_KEY,
    UNLOCK_EXPIRED,
    UNLOCK_GRANTED,
    UNLOCK_LOCKED,
)
from rackfw.timebase import ticks_diff

KEY = const(0xC0DE)
KEY_COMPLEMENT = const(0x3F21)  # KEY ^ 0xFFFF
STEP_MS = const(5000)
HOLD_MS = const(60000)

LOCKED = const(0)
ARMED = const(1)  # first key seen, waiting for the complement
UNLOCKED = const(2)


class Unlock:
    def __init__(self, events):
        self.events = events
        self.state = LOCKED
        self._t = 0

    def write_key(self, value, now_ms):
        """Handle a write of the unlock register; returns 0 or Modbus exception 3."""
        if value == 0:
            if self.state == UNLOCKED:
                self.events.log(EV_UNLOCK, UNLOCK_LOCKED, 0)
            self.state = LOCKED
            return 0
        if value == KEY:
            self.state = ARMED
            self._t = now_ms
            return 0
        if value == KEY_COMPLEMENT and self.state == ARMED:
            if ticks_diff(now_ms, self._t) <= STEP_MS:
                self.state = UNLOCKED
                self._t = now_ms
                self.events.log(EV_UNLOCK, UNLOCK_GRANTED, 0)
                return 0
        self.state = LOCKED
        self.events.log(EV_UNLOCK, UNLOCK_BAD_KEY, value)
        return 3

    def poll(self, now_ms):
        """Expire a grant or a half-entered key (call from the board loop)."""
        if self.state == UNLOCKED:
            if ticks_diff(now_ms, self._t) > HOLD_MS:
                self.state = LOCKED
                self.events.log(EV_UNLOCK, UNLOCK_EXPIRED, 0)
        elif self.state == ARMED:
            if ticks_diff(now_ms, self._t) > STEP_MS:
                self.state = LOCKED

    def unlocked(self, now_ms):
        if self.state != UNLOCKED:
            return False
        return ticks_diff(now_ms, self._t) <= HOLD_MS

    def remaining_s(self, now_ms):
        """Seconds left in the current grant (0 when locked), for the status register."""
        if not self.unlocked(now_ms):
            return 0
        return (HOLD_MS - ticks_diff(now_ms, self._t) + 999) // 1000
