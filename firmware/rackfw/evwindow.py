"""The event-log window: 8 records of the log mapped onto input registers.

The host writes the (16-bit) sequence number of the first event it wants to
``event_select``; the board copies up to ``EVENT_COUNT`` records from the log
into the ``event`` block and says which and how many in ``event_window_seq`` /
``event_window_len``. Until the host selects, the window follows the newest
events. Copying reads flash into one preallocated record buffer: no allocation.
"""

from rackfw.eventlog import REC


class EventWindow:
    def __init__(self, bank, log, regs):
        self.bank = bank
        self.log = log
        # block "event" (regs_* since map v1); "event_rec" in early generated files
        blk = "EVENT_" if hasattr(regs, "EVENT_BASE") else "EVENT_REC_"
        self.base = getattr(regs, blk + "BASE")
        self.stride = getattr(regs, blk + "STRIDE")
        self.size = getattr(regs, blk + "COUNT")
        self.o_seq = getattr(regs, blk + "SEQ")
        self.o_time = getattr(regs, blk + "TIME")
        self.o_kind = getattr(regs, blk + "KIND")
        self.o_code = getattr(regs, blk + "CODE")
        self.o_value = getattr(regs, blk + "VALUE")
        self.r_count = regs.EVENTS_STORED if hasattr(regs, "EVENTS_STORED") else regs.EVENT_COUNT
        self.r_head = regs.EVENT_HEAD
        self.r_wseq = regs.EVENT_WINDOW_SEQ
        self.r_wlen = regs.EVENT_WINDOW_LEN
        self.r_select = regs.EVENT_SELECT
        self.follow = True
        self.first = 0  # full (not 16-bit) sequence number of the first window slot
        self._seen = -1
        self._rec = bytearray(REC)

    def select(self, seq16):
        """Host picked the window start (16 bits): map it onto the log's full numbers."""
        head = self.log.next_seq - 1
        s = (head & ~0xFFFF) | seq16
        if s > head:
            s -= 0x10000
        if s < 0:
            s = seq16
        self.first = s
        self.follow = False
        self.refresh()

    def changed(self):
        return self._seen != self.log.next_seq

    def refresh(self):
        log = self.log
        bank = self.bank
        ir = bank.ir
        self._seen = log.next_seq
        if self.follow:
            f = log.next_seq - self.size
            self.first = f if f > log.oldest else log.oldest
        buf = self._rec
        n = 0
        for i in range(self.size):
            a = self.base + i * self.stride
            if log.read(self.first + i, buf):
                ir[a + self.o_seq] = (buf[2] << 8) | buf[3]
                ir[a + self.o_time] = (buf[4] << 8) | buf[5]
                ir[a + self.o_time + 1] = (buf[6] << 8) | buf[7]
                ir[a + self.o_kind] = buf[10]
                ir[a + self.o_code] = (buf[12] << 8) | buf[13]
                ir[a + self.o_value] = (buf[14] << 8) | buf[15]
                n += 1
            else:
                for j in range(self.stride):
                    ir[a + j] = 0
        ir[self.r_count] = log.count & 0xFFFF
        ir[self.r_head] = (log.next_seq - 1) & 0xFFFF
        ir[self.r_wseq] = self.first & 0xFFFF
        ir[self.r_wlen] = n
        bank.hr[self.r_select] = self.first & 0xFFFF
