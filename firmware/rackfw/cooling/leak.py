"""Leak detection: latch every wet zone, isolate the CDU for the zones configured to.

Any wet zone raises a latched leak alarm (a leak that dried up by itself still
needs a human to look).  Zones in the *isolate mask* (a protected register; by
default only the CDU's own drip tray) additionally isolate the unit: pumps off and
facility valve closed, so the CDU stops feeding the leak.  Leaks further out in the
rack are left to the rack's own valves: stopping the CDU there would cook the
servers.

``clear()`` (the fault-clear command) releases only zones that are dry now.
"""

from micropython import const

DEFAULT_ISOLATE_MASK = const(0x0001)   # LEAK_CDU_TRAY


class LeakMonitor:
    def __init__(self):
        self.wet = 0        # zones wet in the latest sample
        self.latched = 0    # zones latched since the last successful clear
        self.new = 0        # zones latched by the latest update()

    def update(self, wet_mask):
        """Take one sample of the zone bit mask; returns the newly latched zones."""
        self.wet = wet_mask
        self.new = wet_mask & ~self.latched
        self.latched |= wet_mask
        return self.new

    def isolating(self, isolate_mask):
        """True while a latched zone demands isolation."""
        return (self.latched & isolate_mask) != 0

    def clear(self):
        """Release the latched zones that are dry; returns the zones released."""
        released = self.latched & ~self.wet
        self.latched &= self.wet
        return released
