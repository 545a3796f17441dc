"""PMBus 1.2 client over an injected I2C bus: word/byte/block transfers, PEC, LINEAR formats.

Why a hand-written driver: the PSUs of a power shelf report telemetry over PMBus
(SMBus framing on I2C), and the control tick must read it without allocating
(floats and exceptions with fresh arguments allocate on the RP2040).  So:

* every transfer goes through buffers made once in ``__init__``; a word read
  returns an int (0..65535) or ``-1`` on failure, with the reason in ``err``;
* LINEAR11 / LINEAR16 values are turned straight into the scaled integers of
  ``rackfw.io_power`` (``mul`` = units per engineering unit, e.g. 100 for 0.01 V)
  with integer shifts, rounded to nearest, saturated to ``SAT_LO..SAT_HI`` so a
  reading can never collide with the ``SENSOR_OPEN`` / ``SENSOR_SHORT`` sentinels
  and never grows into a (heap-allocated) long int;
* PEC (SMBus CRC-8, polynomial 0x07, over every byte on the wire including the
  address bytes) is appended to writes and checked on reads when ``pec`` is on.

The I2C object is anything with the ``machine.I2C`` memory API:
``readfrom_mem_into(addr, reg, buf)`` and ``writeto_mem(addr, reg, buf)``, raising
``OSError`` when the device does not acknowledge (a NACK).
"""

from micropython import const

# ---- command codes (PMBus 1.2 part II, table 31) ---------------------------
OPERATION = const(0x01)
CLEAR_FAULTS = const(0x03)
VOUT_MODE = const(0x20)
VOUT_COMMAND = const(0x21)
FAN_COMMAND_1 = const(0x3B)
STATUS_BYTE = const(0x78)
STATUS_WORD = const(0x79)
READ_VIN = const(0x88)
READ_IIN = const(0x89)
READ_VOUT = const(0x8B)
READ_IOUT = const(0x8C)
READ_TEMPERATURE_1 = const(0x8D)
READ_TEMPERATURE_2 = const(0x8E)
READ_FAN_SPEED_1 = const(0x90)
READ_POUT = const(0x96)
READ_PIN = const(0x97)
MFR_MODEL = const(0x9A)
MFR_SERIAL = const(0x9E)

OP_ON = const(0x80)      # OPERATION: on, margins off
OP_OFF = const(0x00)     # OPERATION: immediate off (no sequencing)

# ---- STATUS_WORD bits (low byte = STATUS_BYTE) -----------------------------
SW_NONE_OF_ABOVE = const(0x0001)
SW_CML = const(0x0002)          # communication / memory / logic fault
SW_TEMPERATURE = const(0x0004)  # a temperature fault or warning
SW_VIN_UV = const(0x0008)       # input under-voltage fault
SW_IOUT_OC = const(0x0010)      # output over-current fault
SW_VOUT_OV = const(0x0020)      # output over-voltage fault
SW_OFF = const(0x0040)          # the unit is not delivering power
SW_BUSY = const(0x0080)
SW_UNKNOWN = const(0x0100)
SW_OTHER = const(0x0200)
SW_FANS = const(0x0400)         # a fan fault or warning
SW_POWER_GOOD_N = const(0x0800)  # set: POWER_GOOD is negated
SW_MFR = const(0x1000)
SW_INPUT = const(0x2000)        # an input voltage/current/power fault or warning
SW_IOUT_POUT = const(0x4000)    # an output current/power fault or warning
SW_VOUT = const(0x8000)         # an output voltage fault or warning

# ---- errors (``Pmbus.err`` after a failed transfer) -------------------------
ERR_NONE = const(0)
ERR_NACK = const(1)   # OSError from the bus: no device, or it refused the command
ERR_PEC = const(2)    # the packet error code did not match: the data is discarded

SAT_HI = const(32766)    # io_power.SENSOR_OPEN - 1
SAT_LO = const(-32767)   # io_power.SENSOR_SHORT + 1
_SHIFT_LIMIT = const(0x3FFFFFF)  # keep intermediate products small ints (< 2**30)

BLOCK_MAX = const(32)    # SMBus block transfers carry at most 32 data bytes


def _crc8_table():
    t = bytearray(256)
    for i in range(256):
        c = i
        for _ in range(8):
            c = ((c << 1) ^ 0x07) & 0xFF if c & 0x80 else (c << 1) & 0xFF
        t[i] = c
    return bytes(t)


CRC8 = _crc8_table()


def crc8(crc, buf, n):
    """SMBus PEC: CRC-8 (poly 0x07, no reflection) of ``buf[0:n]`` continuing ``crc``."""
    t = CRC8
    for i in range(n):
        crc = t[crc ^ buf[i]]
    return crc


def _saturate(v):
    if v > SAT_HI:
        return SAT_HI
    if v < SAT_LO:
        return SAT_LO
    return v


def _scale_pow2(m, n):
    """``round(m * 2**n)`` for int ``m`` and exponent ``n``, saturated (no long ints)."""
    if n >= 0:
        if m > (_SHIFT_LIMIT >> n) or -m > (_SHIFT_LIMIT >> n):
            return SAT_HI if m > 0 else SAT_LO
        return _saturate(m << n)
    k = -n
    if k > 24:
        return 0
    return _saturate((m + (1 << (k - 1))) >> k)   # round half up; >> floors negatives


def linear11(raw, mul):
    """LINEAR11 word -> scaled int: ``Y * 2**N * mul`` rounded (Y: bits 10..0, N: 15..11)."""
    y = raw & 0x7FF
    if y & 0x400:
        y -= 0x800
    n = (raw >> 11) & 0x1F
    if n & 0x10:
        n -= 0x20
    return _scale_pow2(y * mul, n)


def vout_exponent(mode):
    """The LINEAR16 exponent from a VOUT_MODE byte; ``None`` if the mode is not linear."""
    if mode & 0xE0:
        return None
    n = mode & 0x1F
    return n - 0x20 if n & 0x10 else n


def linear16(raw, exp, mul):
    """LINEAR16 word (unsigned mantissa) with VOUT_MODE exponent -> scaled int."""
    return _scale_pow2(raw * mul, exp)


def linear16_encode(value, div, exp):
    """Scaled int ``value`` (``value / div`` engineering units) -> LINEAR16 word, clamped."""
    if value <= 0:
        return 0
    if exp <= 0:
        raw = ((value << -exp) * 2 + div) // (2 * div)
    else:
        raw = ((value * 2 // div) + (1 << exp)) >> (exp + 1)
    return 0xFFFF if raw > 0xFFFF else raw


def linear11_encode(value, div):
    """Scaled int ``value`` (``value / div`` units) -> LINEAR11 word with the finest
    exponent whose mantissa fits in 11 bits (exponents -12..15)."""
    for n in range(-12, 16):
        if n <= 0:
            m = ((value << -n) * 2 + div) // (2 * div)
        else:
            m = ((value * 2 // div) + (1 << n)) >> (n + 1)
        if -1024 <= m <= 1023:
            return ((n & 0x1F) << 11) | (m & 0x7FF)
    return (15 << 11) | (1023 if value > 0 else 0x400)


class Pmbus:
    """PMBus transfers on one I2C bus (one instance serves every device on it)."""

    def __init__(self, i2c, pec=True):
        self.i2c = i2c
        self.pec = pec
        self.err = ERR_NONE
        self.nacks = 0
        self.pec_errors = 0
        self._r1 = bytearray(1)
        self._r2 = bytearray(2)
        self._r3 = bytearray(3)
        self._w1 = bytearray(1)
        self._w2 = bytearray(2)
        self._w3 = bytearray(3)
        self._hdr = bytearray(3)
        self._blk = bytearray(BLOCK_MAX + 2)   # count + data + PEC

    def _head_crc(self, addr, cmd, read):
        h = self._hdr
        h[0] = (addr << 1) & 0xFF
        h[1] = cmd
        if read:
            h[2] = h[0] | 1
            return crc8(0, h, 3)
        return crc8(0, h, 2)

    def _read(self, addr, cmd, buf):
        try:
            self.i2c.readfrom_mem_into(addr, cmd, buf)
        except OSError:
            self.err = ERR_NACK
            self.nacks += 1
            return False
        n = len(buf)
        if self.pec and crc8(self._head_crc(addr, cmd, True), buf, n - 1) != buf[n - 1]:
            self.err = ERR_PEC
            self.pec_errors += 1
            return False
        self.err = ERR_NONE
        return True

    def read_word(self, addr, cmd):
        """Read word command ``cmd``: 0..65535, or -1 (``err`` says why)."""
        b = self._r3 if self.pec else self._r2
        if not self._read(addr, cmd, b):
            return -1
        return b[0] | (b[1] << 8)

    def read_byte(self, addr, cmd):
        """Read byte command ``cmd``: 0..255, or -1."""
        b = self._r2 if self.pec else self._r1
        if not self._read(addr, cmd, b):
            return -1
        return b[0]

    def _write(self, addr, cmd, buf, n):
        if self.pec:
            buf[n] = crc8(self._head_crc(addr, cmd, False), buf, n)
        try:
            self.i2c.writeto_mem(addr, cmd, buf)
        except OSError:
            self.err = ERR_NACK
            self.nacks += 1
            return False
        self.err = ERR_NONE
        return True

    def write_byte(self, addr, cmd, v):
        """Write byte command (e.g. OPERATION); True when acknowledged."""
        b = self._w2 if self.pec else self._w1
        b[0] = v & 0xFF
        return self._write(addr, cmd, b, 1)

    def write_word(self, addr, cmd, v):
        """Write word command (e.g. VOUT_COMMAND), low byte first; True when acknowledged."""
        b = self._w3 if self.pec else self._w2
        b[0] = v & 0xFF
        b[1] = (v >> 8) & 0xFF
        return self._write(addr, cmd, b, 2)

    def send_byte(self, addr, cmd):
        """Send-byte command (e.g. CLEAR_FAULTS): the command code only (+ PEC)."""
        # with PEC the one-byte buffer carries the PEC; without, nothing follows the code
        return self._write(addr, cmd, self._w1 if self.pec else b"", 0)

    def read_block(self, addr, cmd):
        """Block read (MFR_* strings): the data as ``str`` (ASCII, trailing NUL/space
        stripped), or ``None``.  Allocates: boot-time / maintenance use only.

        The whole buffer is clocked in because the count byte arrives inside the same
        transaction; bytes after the PEC are ignored."""
        b = self._blk
        try:
            self.i2c.readfrom_mem_into(addr, cmd, b)
        except OSError:
            self.err = ERR_NACK
            self.nacks += 1
            return None
        n = b[0]
        if n > BLOCK_MAX:
            self.err = ERR_PEC
            self.pec_errors += 1
            return None
        if self.pec and crc8(self._head_crc(addr, cmd, True), b, n + 1) != b[n + 1]:
            self.err = ERR_PEC
            self.pec_errors += 1
            return None
        self.err = ERR_NONE
        s = bytes(b[1:n + 1]).decode()
        return s.rstrip("\x00 ")


# ---- STATUS_WORD -> register-map psu_status flags ---------------------------
# Same values as regs_power_shelf.F_PSU_STATUS_* (kept literal so this module does
# not pull the generated table in; tests check they agree).
PS_ON = const(0x0002)
PS_POWER_GOOD = const(0x0004)
PS_OV = const(0x0008)
PS_OC = const(0x0010)
PS_FAN_FAIL = const(0x0040)
PS_AC_FAIL = const(0x0080)
PS_COMMS = const(0x0100)
PS_OT_WARNING = const(0x0200)
PS_CURRENT_LIMIT = const(0x0400)


def status_flags(sw):
    """What the PSU says about itself, as ``psu_status`` flags.

    VOUT_OV -> ov, IOUT_OC -> oc (faults: the PSU has shut down), TEMPERATURE -> ot_warning
    (STATUS_WORD cannot tell a warning from a fault; the app's own OT protection,
    fed by READ_TEMPERATURE_2, decides trips), FANS -> fan_fail, INPUT or VIN_UV ->
    ac_fail, IOUT/POUT (warning or fault) -> current_limit, CML -> comms; on = not OFF;
    power_good = on and not POWER_GOOD#.
    """
    f = 0
    if not (sw & SW_OFF):
        f |= PS_ON
        if not (sw & SW_POWER_GOOD_N):
            f |= PS_POWER_GOOD
    if sw & SW_VOUT_OV:
        f |= PS_OV
    if sw & SW_IOUT_OC:
        f |= PS_OC
    if sw & SW_TEMPERATURE:
        f |= PS_OT_WARNING
    if sw & SW_FANS:
        f |= PS_FAN_FAIL
    if sw & (SW_INPUT | SW_VIN_UV):
        f |= PS_AC_FAIL
    if sw & SW_IOUT_POUT:
        f |= PS_CURRENT_LIMIT
    if sw & SW_CML:
        f |= PS_COMMS
    return f


def ac_ok(sw):
    """1 when STATUS_WORD reports the AC input good (no INPUT / VIN_UV bit)."""
    return 0 if sw & (SW_INPUT | SW_VIN_UV) else 1
