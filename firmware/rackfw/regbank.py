"""Dense register storage that the Modbus server serves and the apps publish into.

Why dense arrays: the maps keep every table compact (a few hundred registers),
so one ``array('H')`` per register table costs less RAM than any sparse
structure and makes a block read a plain indexed loop with no allocation.
Bits (coils, discrete inputs) are one byte each for the same reason.
"""

from array import array


class RegBank:
    def __init__(self, ir_size, hr_size, coil_size, di_size):
        self.ir_size = ir_size
        self.hr_size = hr_size
        self.coil_size = coil_size
        self.di_size = di_size
        self.ir = array("H", bytes(2 * ir_size))
        self.hr = array("H", bytes(2 * hr_size))
        self.coils = bytearray(coil_size)
        self.di = bytearray(di_size)

    # input registers -------------------------------------------------------
    def set_ir(self, addr, v):
        """Store ``v`` (negative values as two's complement) in input register ``addr``."""
        self.ir[addr] = v & 0xFFFF

    def set_ir32(self, addr, v):
        """Store a 32-bit value in two input registers, high word first."""
        self.ir[addr] = (v >> 16) & 0xFFFF
        self.ir[addr + 1] = v & 0xFFFF

    def get_ir(self, addr):
        return self.ir[addr]

    def set_ir_str(self, addr, nwords, s):
        """ASCII string, two bytes per word, big-endian, NUL padded (init time only)."""
        n = len(s)
        for i in range(nwords):
            hi = ord(s[2 * i]) if 2 * i < n else 0
            lo = ord(s[2 * i + 1]) if 2 * i + 1 < n else 0
            self.ir[addr + i] = (hi << 8) | lo

    # holding registers -----------------------------------------------------
    def get_hr(self, addr):
        return self.hr[addr]

    def get_hr_s(self, addr):
        """Holding register as a signed 16-bit int."""
        v = self.hr[addr]
        if v & 0x8000:
            return v - 0x10000
        return v

    def set_hr(self, addr, v):
        self.hr[addr] = v & 0xFFFF

    def get_hr32(self, addr):
        """Two holding registers as one unsigned 32-bit value, high word first."""
        return (self.hr[addr] << 16) | self.hr[addr + 1]

    def set_hr32(self, addr, v):
        self.hr[addr] = (v >> 16) & 0xFFFF
        self.hr[addr + 1] = v & 0xFFFF

    # bits ------------------------------------------------------------------
    def set_di(self, addr, bit):
        self.di[addr] = 1 if bit else 0

    def get_di(self, addr):
        return self.di[addr]

    def get_coil(self, addr):
        return self.coils[addr]

    def set_coil(self, addr, bit):
        self.coils[addr] = 1 if bit else 0
