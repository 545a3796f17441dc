"""Modbus RTU server: the meaning of each function code, on preallocated buffers.

The link (``rackfw.rtu``) hands over a complete frame with a good CRC; this
module decides whether to answer and builds the reply in ``link.tx``. Nothing
here allocates for any supported function (01-06, 08, 0F, 10, 17, 2B/0E; proved
with heap_lock in the VM by tests/firmware/test_heap.py): handlers are plain
integer loops over the RX/TX bytearrays and the register arrays, return a length
(or a negative exception code) instead of raising, and never slice.

Exception codes (Modbus Application Protocol V1.1b3, 4.4 and 6.x):
- 01 function (or FC 08 sub-function, FC 2B MEI type) not supported;
- 03 quantity out of range, byte count inconsistent, frame length wrong, or a
  value outside the register's write range -- the quantity is checked before the
  address, as the spec's state diagrams do;
- 02 start address / start + quantity outside the table, or a write to a
  read-only register;
- 04 the device cannot do it now: protected register while locked, or the
  application refused the value (e.g. it would break N+1 redundancy);
- 06 busy: a firmware update is being written.
Broadcast (unit 0) requests are executed only for the write functions and are
never answered; an exception raised by a broadcast write is still counted (FC 08
sub-function 0D, MSL 6.1.3).
"""

from micropython import const

_MAX_READ_REGS = const(125)
_MAX_WRITE_REGS = const(123)
_MAX_RW_WRITE_REGS = const(121)
_MAX_READ_BITS = const(2000)
_MAX_WRITE_BITS = const(1968)
_CNT_MASK = const(0x3FFFFFFF)  # counters stay small ints; FC 08 reports 16 bits

ACCESS_RO = const(0)
ACCESS_RW = const(1)
ACCESS_PROTECTED = const(2)


def _u16(b, o):
    return (b[o] << 8) | b[o + 1]


def _put16(b, o, v):
    b[o] = (v >> 8) & 0xFF
    b[o + 1] = v & 0xFF


class ModbusServer:
    """``device`` provides ``write_hr(addr, raw) -> code``, ``write_coil(addr, bit)
    -> code``, ``unlocked() -> bool`` and ``busy() -> bool``; it stores accepted
    values itself (so the board core can route them to the app)."""

    def __init__(self, link, bank, hr_min, hr_max, hr_access, hr_signed, device, devid, unit_id):
        self.link = link
        self.bank = bank
        self.hr_min = hr_min
        self.hr_max = hr_max
        self.hr_access = hr_access
        self.hr_signed = hr_signed
        self.device = device
        self.devid = devid
        self.unit_id = unit_id
        self.server_msgs = 0  # frames addressed to us or broadcast
        self.exceptions = 0
        self.no_response = 0  # broadcasts and dropped requests
        self.diag_register = 0

    def clear_counters(self):
        self.server_msgs = 0
        self.exceptions = 0
        self.no_response = 0
        self.diag_register = 0
        self.link.clear_counters()

    def handle(self, n):
        """Process the frame ``link.rx[0:n]``; return the reply length before CRC (0: silent)."""
        rx = self.link.rx
        uid = rx[0]
        if uid != self.unit_id and uid != 0:
            return 0
        self.server_msgs = (self.server_msgs + 1) & _CNT_MASK
        fc = rx[1]
        bcast = uid == 0
        if bcast and fc != 5 and fc != 6 and fc != 15 and fc != 16:
            self.no_response = (self.no_response + 1) & _CNT_MASK
            return 0
        r = self._dispatch(fc, rx, n)
        if r < 0:
            # MSL 6.1.3: the exception count includes errors in broadcasts, which
            # are never answered
            self.exceptions = (self.exceptions + 1) & _CNT_MASK
        if bcast:
            self.no_response = (self.no_response + 1) & _CNT_MASK
            return 0
        tx = self.link.tx
        tx[0] = uid
        if r < 0:
            tx[1] = fc | 0x80
            tx[2] = -r
            return 3
        return r

    def _dispatch(self, fc, rx, n):
        if fc == 3:
            return self._read_regs(rx, n, self.bank.hr, self.bank.hr_size)
        if fc == 4:
            return self._read_regs(rx, n, self.bank.ir, self.bank.ir_size)
        if fc == 6:
            return self._write_single_reg(rx, n)
        if fc == 16:
            return self._write_multiple_regs(rx, n)
        if fc == 1:
            return self._read_bits(rx, n, self.bank.coils, self.bank.coil_size)
        if fc == 2:
            return self._read_bits(rx, n, self.bank.di, self.bank.di_size)
        if fc == 5:
            return self._write_single_coil(rx, n)
        if fc == 15:
            return self._write_multiple_coils(rx, n)
        if fc == 23:
            return self._read_write_regs(rx, n)
        if fc == 8:
            return self._diagnostics(rx, n)
        if fc == 0x2B:
            if n < 5:
                return -3  # no MEI type: malformed, not an unknown function
            if rx[2] == 0x0E:
                return self.devid.respond(rx, n, self.link.tx)
            return -1  # other MEI types (0x0D CANopen) are not offered
        return -1

    # reads --------------------------------------------------------------
    def _read_regs(self, rx, n, regs, size):
        if n != 8:
            return -3
        start = _u16(rx, 2)
        qty = _u16(rx, 4)
        if qty < 1 or qty > _MAX_READ_REGS:
            return -3
        if start + qty > size:
            return -2
        tx = self.link.tx
        tx[1] = rx[1]
        tx[2] = 2 * qty
        return self._pack_regs(regs, start, qty, tx, 3)

    def _pack_regs(self, regs, start, qty, tx, o):
        for i in range(qty):
            v = regs[start + i]
            tx[o] = v >> 8
            tx[o + 1] = v & 0xFF
            o += 2
        return o

    def _read_bits(self, rx, n, bits, size):
        if n != 8:
            return -3
        start = _u16(rx, 2)
        qty = _u16(rx, 4)
        if qty < 1 or qty > _MAX_READ_BITS:
            return -3
        if start + qty > size:
            return -2
        tx = self.link.tx
        nbytes = (qty + 7) >> 3
        tx[1] = rx[1]
        tx[2] = nbytes
        for i in range(nbytes):
            tx[3 + i] = 0
        for i in range(qty):
            if bits[start + i]:
                tx[3 + (i >> 3)] |= 1 << (i & 7)
        return 3 + nbytes

    # register writes ----------------------------------------------------
    def _check_hr(self, addr, raw):
        """0 when ``raw`` may be written to holding register ``addr``, else the exception code."""
        acc = self.hr_access[addr]
        if acc == ACCESS_RO:
            return 2
        if acc == ACCESS_PROTECTED and not self.device.unlocked():
            return 4
        v = raw
        if self.hr_signed[addr] and raw & 0x8000:
            v = raw - 0x10000
        if v < self.hr_min[addr] or v > self.hr_max[addr]:
            return 3
        return 0

    def _write_single_reg(self, rx, n):
        if n != 8:
            return -3
        addr = _u16(rx, 2)
        raw = _u16(rx, 4)
        if addr >= self.bank.hr_size:
            return -2
        if self.device.busy():
            return -6
        c = self._check_hr(addr, raw)
        if c:
            return -c
        c = self.device.write_hr(addr, raw)
        if c:
            return -c
        return self._echo(6)

    def _echo(self, k):
        rx = self.link.rx
        tx = self.link.tx
        for i in range(1, k):
            tx[i] = rx[i]
        return k

    def _write_regs_from(self, rx, o, start, qty):
        """Check then write ``qty`` registers whose values start at ``rx[o]``; 0 or code."""
        if start + qty > self.bank.hr_size:
            return 2
        if self.device.busy():
            return 6
        for i in range(qty):
            c = self._check_hr(start + i, _u16(rx, o + 2 * i))
            if c:
                return c
        dev = self.device
        for i in range(qty):
            c = dev.write_hr(start + i, _u16(rx, o + 2 * i))
            if c:
                return c
        return 0

    def _write_multiple_regs(self, rx, n):
        if n < 9:
            return -3
        start = _u16(rx, 2)
        qty = _u16(rx, 4)
        if qty < 1 or qty > _MAX_WRITE_REGS or rx[6] != 2 * qty or n != 9 + 2 * qty:
            return -3
        c = self._write_regs_from(rx, 7, start, qty)
        if c:
            return -c
        return self._echo(6)

    def _read_write_regs(self, rx, n):
        if n < 13:
            return -3
        rstart = _u16(rx, 2)
        rqty = _u16(rx, 4)
        wstart = _u16(rx, 6)
        wqty = _u16(rx, 8)
        if rqty < 1 or rqty > _MAX_READ_REGS or wqty < 1 or wqty > _MAX_RW_WRITE_REGS:
            return -3
        if rx[10] != 2 * wqty or n != 13 + 2 * wqty:
            return -3
        if rstart + rqty > self.bank.hr_size:
            return -2
        c = self._write_regs_from(rx, 11, wstart, wqty)  # the write happens first (spec 6.17)
        if c:
            return -c
        tx = self.link.tx
        tx[1] = 23
        tx[2] = 2 * rqty
        return self._pack_regs(self.bank.hr, rstart, rqty, tx, 3)

    # coils ----------------------------------------------------------------
    def _write_single_coil(self, rx, n):
        if n != 8:
            return -3
        addr = _u16(rx, 2)
        v = _u16(rx, 4)
        if v != 0xFF00 and v != 0:
            return -3
        if addr >= self.bank.coil_size:
            return -2
        if self.device.busy():
            return -6
        c = self.device.write_coil(addr, 1 if v else 0)
        if c:
            return -c
        return self._echo(6)

    def _write_multiple_coils(self, rx, n):
        if n < 10:
            return -3
        start = _u16(rx, 2)
        qty = _u16(rx, 4)
        nbytes = (qty + 7) >> 3
        if qty < 1 or qty > _MAX_WRITE_BITS or rx[6] != nbytes or n != 9 + nbytes:
            return -3
        if start + qty > self.bank.coil_size:
            return -2
        if self.device.busy():
            return -6
        dev = self.device
        for i in range(qty):
            c = dev.write_coil(start + i, (rx[7 + (i >> 3)] >> (i & 7)) & 1)
            if c:
                return -c
        return self._echo(6)

    # diagnostics ------------------------------------------------------------
    def _diagnostics(self, rx, n):
        """FC 08. Sub-functions 00 and 0A-0F; others (01 restart, 02 diagnostic
        register, 04 listen only, 10-14) are answered 01, which the MAP 6.8 state
        diagram checks before the data field (03)."""
        if n < 6:
            return -3
        sub = _u16(rx, 2)
        if sub == 0:  # return query data: echo the whole request PDU, any length
            return self._echo(n - 2)
        if sub < 0x0A or sub > 0x0F:
            return -1
        if n != 8 or _u16(rx, 4) != 0:
            return -3
        link = self.link
        if sub == 0x0A:
            self.clear_counters()
            v = 0
        elif sub == 0x0B:  # good-CRC frames for any address (bad CRC: not counted)
            v = link.bus_msgs
        elif sub == 0x0C:
            # MSL 6.1.3 counter 2: CRC errors, and frames whose CRC could not be
            # computed (overrun, too short, t1.5 gap) -- link.framing_errors
            v = link.crc_errors + link.framing_errors
        elif sub == 0x0D:
            v = self.exceptions
        elif sub == 0x0E:
            v = self.server_msgs
        else:  # 0x0F
            v = self.no_response
        tx = link.tx
        tx[1] = 8
        _put16(tx, 2, sub)
        _put16(tx, 4, v & 0xFFFF)
        return 6
