"""Persistent event log: a ring of fixed 16-byte records over dedicated flash sectors.

Why this layout: record ``seq`` is always stored at slot ``seq % capacity``, so
the host can ask for any event by its sequence number and the firmware finds it
with one flash read (no index in RAM). When the writer reaches a new sector it
erases it first, losing that sector's oldest events; everything else survives a
power cut. A record torn by a power cut fails its check byte and is skipped.

Record (big-endian):
  0  u32 seq        monotonically increasing from 0 over the device's life
  4  u32 time_ms    uptime in ms when logged (mod 2**32) of the boot that wrote it
  8  u16 boot       boot counter (one more than the newest record's on each boot)
  10 u8  kind       ``rackfw.events.EV_*``
  11 u8  check      low byte of CRC-16 over the other 15 bytes
  12 u16 code
  14 u16 value

``log()`` only fills a small RAM queue (it is called from the control tick and
from register writes); ``flush()`` programs flash and is called by the board
outside the request path.
"""

from micropython import const

from rackfw.crc import crc16

REC = const(16)
SECTOR = const(4096)
PER_SECTOR = const(SECTOR // REC)
_QUEUE = const(16)


def _u32(b, o):
    return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]


def _check(b, o):
    c = crc16(b, o, o + 11)
    c = crc16(b, o + 12, o + 16, c)
    return c & 0xFF


def record_seq(b, o=0):
    """Sequence number of the valid record at ``b[o:o+16]``, or -1."""
    if b[o] & 0xC0:  # erased (0xFF..) or beyond 30 bits: keeps seq a small int
        return -1
    if b[o + 11] != _check(b, o):
        return -1
    return _u32(b, o)


class EventLog:
    def __init__(self, flash, base, nsectors, uptime):
        self.flash = flash
        self.base = base
        self.capacity = nsectors * PER_SECTOR
        self.nsectors = nsectors
        self.uptime = uptime
        self._rec = bytearray(REC)
        self._q = bytearray(_QUEUE * REC)
        self._qn = 0
        self.dropped = 0
        self.next_seq = 0  # seq the next event gets
        self.oldest = 0  # oldest seq still readable
        self.boot = 0
        self._scan()

    def _scan(self):
        """Find the newest valid record (sets next_seq, oldest, boot)."""
        best = -1
        boot = -1
        buf = self._rec
        for slot in range(self.capacity):
            self.flash.read(self.base + slot * REC, buf, REC)
            s = record_seq(buf)
            if s >= 0 and s % self.capacity == slot and s > best:
                best = s
                boot = (buf[8] << 8) | buf[9]
        if best < 0:
            self.next_seq = 0
            self.oldest = 0
            self.boot = 0
            return
        self.next_seq = best + 1
        self.boot = (boot + 1) & 0xFFFF
        # the sector holding `best` is partly filled; the others are full
        first = best - (best % PER_SECTOR) - (self.nsectors - 1) * PER_SECTOR
        self.oldest = first if first > 0 else 0
        # skip the holes a torn write or an erase left at the old end
        while self.oldest < best and not self._read_flash(self.oldest, buf):
            self.oldest += 1

    @property
    def count(self):
        """Number of events readable (flash plus queued)."""
        return self.next_seq - self.oldest

    @property
    def head(self):
        """Sequence number of the newest event, or -1 when empty."""
        return self.next_seq - 1

    def log(self, kind, code, value):
        """Append an event (no flash access, no allocation)."""
        if self._qn >= _QUEUE:
            self.flush()
        o = self._qn * REC
        q = self._q
        s = self.next_seq
        # time_ms = seconds * 1000 + ms, mod 2**32, in 16-bit halves: no long ints
        sec = self.uptime.seconds
        lo = (sec & 0xFFFF) * 1000 + self.uptime.millis()
        hi = ((sec >> 16) * 1000 + (lo >> 16)) & 0xFFFF
        q[o] = (s >> 24) & 0xFF
        q[o + 1] = (s >> 16) & 0xFF
        q[o + 2] = (s >> 8) & 0xFF
        q[o + 3] = s & 0xFF
        q[o + 4] = hi >> 8
        q[o + 5] = hi & 0xFF
        q[o + 6] = (lo >> 8) & 0xFF
        q[o + 7] = lo & 0xFF
        q[o + 8] = (self.boot >> 8) & 0xFF
        q[o + 9] = self.boot & 0xFF
        q[o + 10] = kind & 0xFF
        q[o + 12] = (code >> 8) & 0xFF
        q[o + 13] = code & 0xFF
        q[o + 14] = (value >> 8) & 0xFF
        q[o + 15] = value & 0xFF
        q[o + 11] = _check(q, o)
        self._qn += 1
        self.next_seq = s + 1

    def pending(self):
        return self._qn

    def flush(self):
        """Program the queued records into flash (erasing a sector when entering it)."""
        q = self._q
        rec = self._rec
        for i in range(self._qn):
            o = i * REC
            s = _u32(q, o)
            slot = s % self.capacity
            if slot % PER_SECTOR == 0:
                self.flash.erase(self.base + slot * REC, SECTOR)
                lost = s - (self.nsectors - 1) * PER_SECTOR
                if lost > self.oldest:
                    self.oldest = lost
            for j in range(REC):
                rec[j] = q[o + j]
            self.flash.write(self.base + slot * REC, rec, REC)
        self._qn = 0

    def _read_flash(self, seq, buf):
        self.flash.read(self.base + (seq % self.capacity) * REC, buf, REC)
        return record_seq(buf) == seq

    def read(self, seq, buf):
        """Copy event ``seq`` into ``buf[0:16]``; True when it exists (no allocation)."""
        if seq < self.oldest or seq >= self.next_seq:
            return False
        q = self._q
        for i in range(self._qn):
            o = i * REC
            if _u32(q, o) == seq:
                for j in range(REC):
                    buf[j] = q[o + j]
                return True
        return self._read_flash(seq, buf)
