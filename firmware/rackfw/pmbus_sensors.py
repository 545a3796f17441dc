"""Power-shelf sensors/outputs HAL over the PSUs' PMBus: round-robin polling, cached values.

Why a cache and a round robin: the application reads nine channels of each of six
PSUs every 100 ms control tick and writes four outputs of each.  Doing that as
PMBus transfers inside ``sensors.read`` would block the loop for tens of ms per
tick; instead ``PsuBus.service(n)`` performs at most ``n`` transfers (called from the
board's main loop at a fixed pace) and ``read``/``write`` only touch RAM.

I2C time budget (100 kHz, PEC on; bit counts include START/STOP/ACK bits):

============================  =====  =========
transfer                      bits   time
============================  =====  =========
read word + PEC (telemetry)    57    0.57 ms
read word, no PEC              48    0.48 ms
write word + PEC (VOUT_CMD)    47    0.47 ms
write byte + PEC (OPERATION)   38    0.38 ms
NACKed address (empty slot)    11    0.11 ms
============================  =====  =========

A full sweep is ``len(SEQ)`` = 10 reads x 6 PSUs = 60 reads = 34 ms of bus time
(~40 ms with MicroPython call overhead).  At one transfer every ``STEP_US`` = 2.5 ms
(the RP2040 board file) the bus is busy ~25 % of the time, the loop is never
blocked for more than one transfer (< 0.7 ms, well inside the UART FIFO), and every
PSU value is refreshed every 60 x 2.5 = 150 ms: about every control tick and a half.
A command change (on/off, setpoint, fan) jumps the queue: it goes out on the next
transfer.

Presence and faults, as the application (``rackfw.power.psu``) sees them:

* with presence pins (``present`` callable), the pin says whether a PSU is seated;
  a newly seated one is reported once its first sweep is read (or, if it does not
  answer, after ``COMMS_AFTER`` failures, as present with ``comms``);
* without them, a slot is present once its PSU has answered a full sweep, and
  absent again after ``ABSENT_AFTER`` consecutive failed transfers (~1.9 s; a NACKing
  address is an empty slot: this is how a hot-swap removal shows up, first as
  ``comms`` for up to 1.9 s, then as a removal);
* ``COMMS_AFTER`` consecutive failures (NACK or PEC error) on a present PSU make all
  its readings ``SENSOR_OPEN``: the app flags ``comms`` and keeps its last commands
  (protection is not run on stale data);
* ``S_PSU_AC_OK`` comes from STATUS_WORD (INPUT / VIN_UV bits); the whole word is
  kept in ``status[slot]`` and ``rackfw.pmbus.status_flags`` maps it to
  ``psu_status`` flags for diagnostics.

Outputs ``O_PSU_ON`` -> OPERATION, ``O_PSU_VSET`` -> VOUT_COMMAND (LINEAR16 with the
PSU's VOUT_MODE exponent), ``O_PSU_FAN`` -> FAN_COMMAND_1 (percent duty, LINEAR11);
``O_PSU_ILIM`` is remembered only (the app enforces the limit through its own OC
protection).  Commands are re-sent whenever a PSU (re)appears.  Channels that are
not PSU channels go to the ``other`` sensors/outputs objects (board ADC, BBU, relay).
"""

from micropython import const

from rackfw import io_power as io
from rackfw import pmbus as pm

COMMS_AFTER = const(3)      # consecutive failures before a PSU's readings go SENSOR_OPEN
ABSENT_AFTER = const(128)   # ... before a PSU without a presence pin counts as removed
                            # (128 x 6 slots x STEP_US 2.5 ms = 1.9 s of silence)

# per-slot states
ST_ABSENT = const(0)        # not answering (probing with STATUS_WORD only)
ST_INIT = const(1)          # answered: reading VOUT_MODE, then a first sweep
ST_UP = const(2)            # a full sweep done: present

# the round robin: command, io member (-1: kept elsewhere), scale (units per unit)
SEQ_CMD = (pm.STATUS_WORD, pm.READ_VOUT, pm.READ_IOUT, pm.READ_VIN, pm.READ_IIN,
           pm.READ_TEMPERATURE_1, pm.READ_TEMPERATURE_2, pm.READ_FAN_SPEED_1,
           pm.READ_PIN, pm.READ_POUT)
SEQ_MEMBER = (io.S_PSU_AC_OK, io.S_PSU_OUT_V, io.S_PSU_OUT_I, io.S_PSU_IN_V, io.S_PSU_IN_I,
              io.S_PSU_T_INLET, io.S_PSU_T_HOT, io.S_PSU_FAN_RPM, -1, -1)
SEQ_MUL = (1, 100, 100, 10, 100, 10, 10, 1, 1, 1)
SEQ_LEN = const(10)
_I_PIN = const(8)
_I_POUT = const(9)

# dirty bits per slot (pending commands)
_D_ON = const(1)
_D_VSET = const(2)
_D_FAN = const(4)

VOUT_EXP_DEFAULT = const(-9)   # used until VOUT_MODE has been read


class PsuBus:
    """Six (``count``) PSUs at consecutive PMBus addresses, polled round robin."""

    def __init__(self, i2c, base_addr=0x58, count=io.PSU_COUNT, pec=True, present=None):
        self.pm = pm.Pmbus(i2c, pec)
        self.base = base_addr
        self.n = count
        self.present_pin = present     # callable(slot) -> 0/1, or None
        n = count
        self.state = bytearray(n)
        self.fails = [0] * n
        self.idx = bytearray(n)        # next SEQ index per slot
        self.exp = [VOUT_EXP_DEFAULT] * n
        self.status = [0] * n          # last STATUS_WORD
        self.pin_w = [0] * n           # READ_PIN, W
        self.pout_w = [0] * n          # READ_POUT, W
        self.vals = [io.SENSOR_OPEN] * (n * io.S_PSU_STRIDE)
        self.dirty = bytearray(n)
        self.written = bytearray(n)    # commands the app has issued (re-sent on reappearance)
        self.cmd_on = bytearray(n)
        self.cmd_vset = [0] * n
        self.cmd_fan = bytearray(n)
        self.slot = 0                  # next slot to serve
        self.transfers = 0
        self.serial = [""] * n         # MFR_SERIAL / MFR_MODEL, read by probe()
        self.model = [""] * n

    # ---------------------------------------------------------------- state
    def present(self, i):
        """1 when PSU ``i`` is seated (pin) / answering (no pin)."""
        st = self.state[i]
        if self.present_pin is not None:
            # a seated PSU shows up once read (no ``comms`` flicker while it is
            # initialised), or at once when it does not answer at all (``comms``)
            if not self.present_pin(i):
                return 0
            return 1 if st == ST_UP or self.fails[i] >= COMMS_AFTER else 0
        return 1 if st == ST_UP else 0

    def comms_ok(self, i):
        return self.state[i] == ST_UP and self.fails[i] < COMMS_AFTER

    def value(self, i, member):
        """Cached reading of io member ``member`` of PSU ``i`` (``SENSOR_OPEN`` if stale)."""
        if member == io.S_PSU_PRESENT:
            return self.present(i)
        if not self.comms_ok(i):
            return io.SENSOR_OPEN
        return self.vals[i * io.S_PSU_STRIDE + member]

    # ---------------------------------------------------------------- commands
    def command(self, i, member, v):
        """Queue output ``member`` of PSU ``i`` (sent only when it changes)."""
        if member == io.O_PSU_ON:
            v = 1 if v else 0
            if v != self.cmd_on[i] or not self.written[i] & _D_ON:
                self.cmd_on[i] = v
                self.dirty[i] |= _D_ON
                self.written[i] |= _D_ON
        elif member == io.O_PSU_VSET:
            if v != self.cmd_vset[i] or not self.written[i] & _D_VSET:
                self.cmd_vset[i] = v
                self.dirty[i] |= _D_VSET
                self.written[i] |= _D_VSET
        elif member == io.O_PSU_FAN:
            v = 0 if v < 0 else (100 if v > 100 else v)
            if v != self.cmd_fan[i] or not self.written[i] & _D_FAN:
                self.cmd_fan[i] = v
                self.dirty[i] |= _D_FAN
                self.written[i] |= _D_FAN

    def _send(self, i, addr):
        """One pending command of PSU ``i``; True when it was sent (ok or not)."""
        d = self.dirty[i]
        p = self.pm
        if d & _D_VSET:   # setpoint before switching on
            ok = p.write_word(addr, pm.VOUT_COMMAND,
                              pm.linear16_encode(self.cmd_vset[i], 100, self.exp[i]))
            bit = _D_VSET
        elif d & _D_ON:
            ok = p.write_byte(addr, pm.OPERATION, pm.OP_ON if self.cmd_on[i] else pm.OP_OFF)
            bit = _D_ON
        else:
            ok = p.write_word(addr, pm.FAN_COMMAND_1, pm.linear11_encode(self.cmd_fan[i], 1))
            bit = _D_FAN
        if ok:   # an ACKed write does not reset ``fails``: only good reads prove the data path
            self.dirty[i] = d & ~bit
        else:
            self._failed(i)
        return True

    # ---------------------------------------------------------------- polling
    def _failed(self, i):
        f = self.fails[i] + 1
        if f > ABSENT_AFTER:
            f = ABSENT_AFTER
        self.fails[i] = f
        if self.state[i] == ST_INIT:
            self.state[i] = ST_ABSENT
        elif f >= ABSENT_AFTER and self.present_pin is None:
            self.state[i] = ST_ABSENT

    def _store(self, i, k, raw):
        if k == 0:
            self.status[i] = raw
            self.vals[i * io.S_PSU_STRIDE + io.S_PSU_AC_OK] = pm.ac_ok(raw)
            return
        if k == 1:
            v = pm.linear16(raw, self.exp[i], 100)
        else:
            v = pm.linear11(raw, SEQ_MUL[k])
        if k == _I_PIN:
            self.pin_w[i] = v
        elif k == _I_POUT:
            self.pout_w[i] = v
        else:
            self.vals[i * io.S_PSU_STRIDE + SEQ_MEMBER[k]] = v

    def _poll(self, i, addr):
        p = self.pm
        st = self.state[i]
        if self.present_pin is not None and not self.present_pin(i):
            self.state[i] = ST_ABSENT   # pulled: the next unit starts from VOUT_MODE again
            self.fails[i] = 0
            return
        if st == ST_ABSENT:
            raw = p.read_word(addr, pm.STATUS_WORD)
            if raw < 0:
                self._failed(i)
                return
            self.status[i] = raw
            self.state[i] = ST_INIT
            self.idx[i] = 0
            self.fails[i] = 0
            self.exp[i] = -0x100   # VOUT_MODE not read yet
            # re-send what the app commanded; nothing at boot, so a controller reboot
            # never switches a running PSU off before the app has decided
            self.dirty[i] = self.written[i]
            return
        if st == ST_INIT and self.exp[i] == -0x100:
            mode = p.read_byte(addr, pm.VOUT_MODE)
            if mode < 0:
                self._failed(i)
                return
            e = pm.vout_exponent(mode)
            self.exp[i] = VOUT_EXP_DEFAULT if e is None else e
            return
        k = self.idx[i]
        raw = p.read_word(addr, SEQ_CMD[k])
        if raw < 0:
            self._failed(i)
            return
        self.fails[i] = 0
        self._store(i, k, raw)
        k += 1
        if k >= SEQ_LEN:
            k = 0
            if st == ST_INIT:
                self.state[i] = ST_UP
        self.idx[i] = k

    def service(self, n):
        """Do up to ``n`` PMBus transfers (pending commands first, then the round robin).

        Allocation-free; call it at a fixed pace from the main loop."""
        for _ in range(n):
            i = self.slot
            self.slot = i + 1 if i + 1 < self.n else 0
            addr = self.base + i
            self.transfers += 1
            if self.dirty[i] and self.state[i] != ST_ABSENT and self.exp[i] != -0x100:
                self._send(i, addr)
            else:
                self._poll(i, addr)

    def probe(self):
        """Boot time: find the PSUs, read their identity and one full sweep of telemetry,
        so the app's first tick sees the real inventory.  Allocates (strings)."""
        p = self.pm
        for _ in range(SEQ_LEN + 2):   # STATUS_WORD probe, VOUT_MODE, one sweep
            self.service(self.n)
        for i in range(self.n):
            if self.state[i] != ST_ABSENT:
                s = p.read_block(self.base + i, pm.MFR_SERIAL)
                m = p.read_block(self.base + i, pm.MFR_MODEL)
                self.serial[i] = s or ""
                self.model[i] = m or ""


class PsuSensors:
    """Sensors HAL: PSU channels from the ``PsuBus`` cache, the rest from ``other``."""

    def __init__(self, bus, other=None):
        self.bus = bus
        self.other = other
        self.lo = io.S_PSU_BASE
        self.hi = io.S_PSU_BASE + bus.n * io.S_PSU_STRIDE

    def read(self, ch):
        if self.lo <= ch < self.hi:
            off = ch - self.lo
            return self.bus.value(off // io.S_PSU_STRIDE, off % io.S_PSU_STRIDE)
        if self.other is not None:
            return self.other.read(ch)
        return io.SENSOR_OPEN


class PsuOutputs:
    """Outputs HAL: PSU channels become queued PMBus commands, the rest go to ``other``."""

    def __init__(self, bus, other=None):
        self.bus = bus
        self.other = other
        self.last = [0] * io.OUTPUT_COUNT
        self.hi = io.O_PSU_BASE + bus.n * io.O_PSU_STRIDE

    def write(self, ch, value):
        self.last[ch] = value
        if io.O_PSU_BASE <= ch < self.hi:
            off = ch - io.O_PSU_BASE
            self.bus.command(off // io.O_PSU_STRIDE, off % io.O_PSU_STRIDE, value)
        elif self.other is not None:
            self.other.write(ch, value)

    def read(self, ch):
        return self.last[ch]
