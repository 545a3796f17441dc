"""Configuration store: two flash copies, each with a sequence number and a CRC.

Why two copies: a power cut while saving must never lose the last good
configuration. ``save`` always overwrites the slot that does *not* hold the
newest valid copy, and programs the commit magic last, so until the final four
bytes land the new copy is invalid and ``load`` still picks the old one.

Image layout (big-endian, at the start of a 4 KiB sector):
  0  u32 magic      b"RKC1", written last
  4  u32 seq        one more than the copy it supersedes
  8  u16 signature  CRC of the register map's write tables: a copy saved by a
                    firmware with another register layout is not restored
  10 u16 n          number of (address, value) pairs
  12 n x (u16 address, u16 value)
  12+4n u16 crc     CRC-16/MODBUS of bytes 4 .. 12+4n
"""

from micropython import const

from rackfw.crc import crc16

SECTOR = const(4096)
_HDR = const(12)
_M0 = const(0x52)  # "RKC1"
_M1 = const(0x4B)
_M2 = const(0x43)
_M3 = const(0x31)


class ConfigStore:
    def __init__(self, flash, base, signature, max_pairs):
        self.flash = flash
        self.slots = (base, base + SECTOR)
        self.signature = signature & 0xFFFF
        self.max_pairs = max_pairs
        self._buf = bytearray(_HDR + 4 * max_pairs + 2)
        self.seq = 0  # seq of the newest valid copy (0: none)
        self.slot = -1  # index of the slot holding it
        self.loaded = 0  # pairs in the copy found by load()

    def _valid(self, base):
        """Read the copy at ``base`` into the buffer; return its seq or -1."""
        b = self._buf
        self.flash.read(base, b, _HDR)
        if b[0] != _M0 or b[1] != _M1 or b[2] != _M2 or b[3] != _M3:
            return -1
        n = (b[10] << 8) | b[11]
        if n > self.max_pairs:
            return -1
        end = _HDR + 4 * n
        self.flash.read(base, b, end + 2)
        if crc16(b, 4, end) != (b[end] | (b[end + 1] << 8)):
            return -1
        if b[4] & 0xC0:
            return -1
        return (b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7]

    def load(self, apply):
        """Find the newest valid copy and call ``apply(addr, value)`` for each pair.

        Returns the number of pairs applied; 0 when no valid copy exists or the
        newest one has another map signature (defaults stay in force). Either
        way the next ``save`` goes to the right slot with the right sequence.
        """
        s0 = self._valid(self.slots[0])
        s1 = self._valid(self.slots[1])
        if s0 < 0 and s1 < 0:
            self.seq = 0
            self.slot = -1
            self.loaded = 0
            return 0
        self.slot = 0 if s0 >= s1 else 1
        self.seq = s0 if s0 >= s1 else s1
        b = self._buf
        if self._valid(self.slots[self.slot]) < 0:  # re-read the winner into the buffer
            return 0
        if ((b[8] << 8) | b[9]) != self.signature:
            self.loaded = 0
            return 0
        n = (b[10] << 8) | b[11]
        for i in range(n):
            o = _HDR + 4 * i
            apply((b[o] << 8) | b[o + 1], (b[o + 2] << 8) | b[o + 3])
        self.loaded = n
        return n

    def save(self, hr, addrs, n):
        """Write ``hr[a]`` for the first ``n`` addresses in ``addrs``; returns the new seq."""
        if n > self.max_pairs:
            n = self.max_pairs
        seq = self.seq + 1
        target = 1 - self.slot if self.slot >= 0 else 0
        b = self._buf
        b[4] = (seq >> 24) & 0xFF
        b[5] = (seq >> 16) & 0xFF
        b[6] = (seq >> 8) & 0xFF
        b[7] = seq & 0xFF
        b[8] = self.signature >> 8
        b[9] = self.signature & 0xFF
        b[10] = n >> 8
        b[11] = n & 0xFF
        for i in range(n):
            a = addrs[i]
            v = hr[a]
            o = _HDR + 4 * i
            b[o] = a >> 8
            b[o + 1] = a & 0xFF
            b[o + 2] = v >> 8
            b[o + 3] = v & 0xFF
        end = _HDR + 4 * n
        c = crc16(b, 4, end)
        b[end] = c & 0xFF
        b[end + 1] = c >> 8
        base = self.slots[target]
        self.flash.erase(base, SECTOR)
        # body first, magic last: the copy becomes valid only when complete
        b[0] = 0xFF
        b[1] = 0xFF
        b[2] = 0xFF
        b[3] = 0xFF
        self.flash.write(base, b, end + 2)
        b[0] = _M0
        b[1] = _M1
        b[2] = _M2
        b[3] = _M3
        self.flash.write(base, b, 4)
        self.seq = seq
        self.slot = target
        return seq
