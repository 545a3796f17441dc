"""Pump run hours that survive a reboot without wearing the flash out (``RunHours``)."""

# Why and how (comments, not a docstring: from source, a docstring costs its
# length in MicroPython heap -- measured by tests/firmware/test_ram_budget.py):
#
# The live counter is ``PumpPair.run_s`` (whole seconds of tach-confirmed turning).
# It is mirrored, in the map's 0.01 h units, into the persisted holding registers
# ``pump<n>_hours`` (u32, ``persist = true``), so it rides along in the board's
# config store: restored into ``run_s`` at boot (``restore``), and saved whenever
# the board saves its configuration.
#
# Why the registers are ``protected`` rather than read-only: the counter belongs to
# the pump, and a pump gets replaced.  While unlocked, the operator presets it (0
# for a new pump, the old value after a board swap) with one FC 16 of both words;
# ``RunHours.write`` adopts the value into ``run_s`` at once (each word as it lands, the
# high word first), so the live input register and the rotation logic follow.  A
# locked host gets exception 04 like for every protected register, so telemetry
# software cannot reset it by accident.  Anything that changes the registers
# *behind* the app's back (the factory-defaults command, which resets every
# persisted register) is undone on the next tick and saved again: factory defaults
# reset settings, not the pump's life.
#
# Flash wear budget: a config save erases and rewrites one 4 KiB sector (the store
# alternates two).  Run hours ask for a save (``save_due``) once per hour during
# which at least one pump turned -- not per pump, not per 0.01 h step -- so at most
# **24 saves a day**, i.e. 12 erase cycles a day on each config sector, plus
# whatever the operator writes.  Against the NOR flash of the RP2040 boards
# (W25Q16JV: 100 000 erase cycles) that is 100 000 / 12 = 8 300 days, ~22 years.
# STM32 on-chip flash is rated 10 000 cycles: ~2.3 years at this rate, so a board
# with on-chip config flash must put the config store on a part with more
# endurance (or append copies within a sector) before it runs a CDU.
# What a power cut costs: the run time since the last save, < 1 h per pump
# (a reboot command saves the live value first).

from micropython import const

from rackfw.cooling.pumps import NO_TACH_RPM

SAVE_EVERY_MS = const(3600 * 1000)   # pump running time between two saves
S_PER_UNIT = const(36)               # run_s per register unit (0.01 h)
HOURS_MAX = const(20000000)          # register max (200000.00 h): run_s stays < 2**30
_HI_MAX = const(HOURS_MAX >> 16)


class RunHours:
    """Mirror ``pumps.run_s`` into the u32 holding registers at ``base`` (``stride`` apart)."""

    def __init__(self, bank, pumps, base, stride):
        self.bank = bank
        self.pumps = pumps
        self.base = base
        self.stride = stride
        self.pub = [0, 0]            # register value as this object last wrote it
        self.unsaved_ms = 0          # pump running time since the last save request
        self.save_due = False        # a save should be made (the app passes it on)

    def restore(self):
        """Boot: the stored configuration is in the bank; continue counting from it."""
        for i in range(2):
            v = self.bank.get_hr32(self.base + i * self.stride)
            if v > HOURS_MAX:
                v = HOURS_MAX
            self.pumps.set_run_s(i, v * S_PER_UNIT)
            self.pub[i] = v

    def tick(self, dt_ms):
        """Publish the live counters; set ``save_due`` once per hour of pump running."""
        b = self.bank
        p = self.pumps
        pub = self.pub
        running = False
        for i in range(2):
            addr = self.base + i * self.stride
            v = p.run_s[i] // S_PER_UNIT
            if b.get_hr32(addr) != pub[i]:
                # changed behind our back (factory defaults): put the pump's value back
                # and get it into flash again
                self.save_due = True
                pub[i] = -1
            if v != pub[i]:
                b.set_hr32(addr, v)
                pub[i] = v
            if p.rpm[i] >= NO_TACH_RPM:
                running = True
        if running:
            self.unsaved_ms += dt_ms
            if self.unsaved_ms >= SAVE_EVERY_MS:
                self.unsaved_ms = 0
                self.save_due = True

    def write(self, addr, raw):
        """A host write to one word of a counter: 0 (adopted) or exception 03."""
        # access-checked, not yet stored; the other word comes from the bank, so an
        # FC 16 of both words (high word first) ends with exactly the written value
        off = addr - self.base
        i = off // self.stride
        a = addr - off % self.stride
        b = self.bank
        if addr == a:
            if raw > _HI_MAX:
                return 3
            v = (raw << 16) | b.get_hr(a + 1)
            stored = v
            if v > HOURS_MAX:   # only the first half of a valid FC 16: the low word follows
                v = HOURS_MAX
        else:
            v = (b.get_hr(a) << 16) | raw
            if v > HOURS_MAX:
                return 3
            stored = v
        self.pumps.set_run_s(i, v * S_PER_UNIT)
        self.pub[i] = stored   # what the bank will hold once the board stores the word
        return 0
