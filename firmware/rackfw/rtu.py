"""Modbus RTU link layer: frame boundaries from silence, CRC, RS-485 driver enable.

Timing rules (Modbus over Serial Line V1.02, 2.5.1.1):
- a frame ends after >= t3.5 of silence (3.5 character times, fixed 1750 us
  above 19200 baud);
- silence > t1.5 inside a frame makes it incomplete. Per the receiver state
  diagram (Figure 14) the receiver then waits in "control and waiting": bytes
  that arrive before t3.5 of silence belong to the same, flagged (NOK) frame,
  which is deleted whole at t3.5 -- so a request glued on less than t3.5 after
  a broken frame is dropped too. One framing error is counted per NOK frame.
- an ADU is at most 256 bytes; a longer one is an overrun and is discarded.

Counters follow MSL 6.1.3: ``bus_msgs`` counts good-CRC frames for any address;
``crc_errors`` and ``framing_errors`` (overrun, < 4 bytes, t1.5 gap) together
make the "bus communication error count" of FC 08 sub-function 0C.

Bytes are time-stamped when ``service`` reads them, so the caller must poll at
least as often as ``next_us`` asks (the runners poll on every RX byte). A byte's
time-stamp is the end of its stop bit, so the silence before it is the stamp
difference minus one character time.

The driver-enable pin is high only while our own reply is on the wire: set
before ``uart.send``, cleared as soon as ``uart.tx_done()``. Bytes read while we
transmit cannot be a request to us (half duplex) and are dropped.
"""

from micropython import const

from rackfw.crc import crc16
from rackfw.timebase import ticks_diff

ADU_MAX = const(256)
_CNT_MASK = const(0x3FFFFFFF)  # counters stay small ints


class RtuLink:
    def __init__(self, uart, de, baud, bits_per_char=11):
        self.uart = uart
        self.de = de
        self.rx = bytearray(ADU_MAX)
        self.tx = bytearray(ADU_MAX)
        self.rx_len = 0
        self._last = 0
        self._nok = False  # overrun or t1.5 gap: delete the frame at t3.5
        self.transmitting = False
        self._tx_start = 0
        self._tx_budget = 0
        self.set_baud(baud, bits_per_char)
        # counters (FC 08 and the link-counter registers)
        self.bus_msgs = 0  # frames with a good CRC, any address
        self.crc_errors = 0
        self.framing_errors = 0  # inter-byte gap, runt frame, overrun
        de.value(0)

    def set_baud(self, baud, bits_per_char=11):
        self.baud = baud
        self.char_us = (bits_per_char * 1000000 + baud - 1) // baud
        if baud > 19200:
            self.t15 = 750
            self.t35 = 1750
        else:
            self.t15 = (bits_per_char * 1500000) // baud
            self.t35 = (bits_per_char * 3500000) // baud

    def clear_counters(self):
        self.bus_msgs = 0
        self.crc_errors = 0
        self.framing_errors = 0

    def service(self, now_us):
        """Do due link work; return the length of a complete good frame in ``rx`` or 0.

        A returned frame stays in ``rx`` until the next call, which starts a new one.
        """
        if self.transmitting:
            if not self.uart.tx_done():
                self._drop_rx()
                return 0
            self.de.value(0)
            self.transmitting = False
            self._drop_rx()
        n = self.rx_len
        if n and ticks_diff(now_us, self._last) >= self.t35:
            self.rx_len = 0
            return self._finish(n)
        uart = self.uart
        rx = self.rx
        while uart.any():
            b = uart.read_byte()
            if b < 0:
                break
            n = self.rx_len
            if n and ticks_diff(now_us, self._last) - self.char_us > self.t15:
                self._nok = True
            if n < ADU_MAX:
                rx[n] = b
                self.rx_len = n + 1
            else:
                self._nok = True  # overrun: more than one ADU without t3.5
            self._last = now_us
        return 0

    def _finish(self, n):
        if self._nok or n < 4:
            self._nok = False
            self.framing_errors = (self.framing_errors + 1) & _CNT_MASK
            return 0
        if crc16(self.rx, 0, n) != 0:
            self.crc_errors = (self.crc_errors + 1) & _CNT_MASK
            return 0
        self.bus_msgs = (self.bus_msgs + 1) & _CNT_MASK
        return n

    def _drop_rx(self):
        uart = self.uart
        while uart.any():
            if uart.read_byte() < 0:
                break
        self.rx_len = 0

    def send(self, n, now_us):
        """Append the CRC to ``tx[0:n]`` and start sending it with DE asserted."""
        c = crc16(self.tx, 0, n)
        self.tx[n] = c & 0xFF
        self.tx[n + 1] = c >> 8
        self.de.value(1)
        self.uart.send(self.tx, n + 2)
        self.transmitting = True
        self._tx_start = now_us
        self._tx_budget = 2 * (n + 2) * self.char_us + 20000

    def wedged(self, now_us):
        """True when a transmission has taken far longer than its bytes need."""
        return self.transmitting and ticks_diff(now_us, self._tx_start) > self._tx_budget

    def next_us(self, now_us):
        """Microseconds until the link needs a poll (-1: only on the next RX byte)."""
        if self.transmitting:
            return self.char_us
        if self.rx_len:
            d = self.t35 - ticks_diff(now_us, self._last)
            return d if d > 0 else 0
        return -1
