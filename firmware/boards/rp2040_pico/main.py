"""rackctl controller on a Raspberry Pi Pico (RP2040): pins, HAL objects, main loop.

This is the only file that knows pin numbers. It wraps ``machine`` peripherals
into the HAL of docs/contracts.md and hands them to ``rackfw.board.Board``.

Wiring (RS-485 through a MAX3485-class 3.3 V half-duplex transceiver)
---------------------------------------------------------------------
=========  ==========  ===================================================
Pico pin   GPIO        connection
=========  ==========  ===================================================
1          GP0         UART0 TX  -> MAX3485 DI
2          GP1         UART0 RX  <- MAX3485 RO (10 k pull-up: idle high)
4          GP2         MAX3485 DE and /RE tied together (high = transmit)
31         GP26/ADC0   CDU: supply temperature transmitter (0-3.3 V)
32         GP27/ADC1   CDU: return temperature transmitter
34         GP28/ADC2   CDU: differential pressure transmitter
--         ADC4        RP2040 internal sensor -> board temperature (channel 0)
21         GP16        PWM: pump 1 speed (25 kHz, to the pump driver's PWM in)
22         GP17        PWM: pump 2 speed
24         GP18        PWM: facility valve position (RC-filtered to 0-10 V stage)
26         GP20        pump 1 tachometer (open collector, 2 pulses/rev)
27         GP21        pump 2 tachometer
14-17      GP10..GP13  leak sensor zones 0..3 (active low, 10 k pull-up)
19         GP14        unit id strap bit 0 (jumper to GND = 1) ... GP15 bit 1
6          GP4         power shelf: I2C0 SDA -> PSU PMBus SDA (backplane)
7          GP5         power shelf: I2C0 SCL -> PSU PMBus SCL
9-12,29,5  GP6..GP9,   power shelf, optional: PSU1..PSU6 PRESENT# (active low,
           GP22, GP3   10 k pull-up; only with ``PSU_PRESENT_PINS = True``)
=========  ==========  ===================================================
MAX3485: VCC 3.3 V (pin 36), A/B to the bus pair with 120 ohm termination at
the two bus ends only, 560 ohm failsafe bias on the master. Line settings 8E1.

Hardware watchdog: ``machine.WDT(timeout=WDT_MS)``; the Board feeds it from
its control tick only while the loop is healthy (see rackfw.board).

Flash: the flash HAL spans the config copies (0x0000, 0x1000), the event log
(0x2000..0x5FFF) and the firmware-update staging area (0x6000 + STAGING_BYTES =
128 KiB, so `rackctl flash` can stage an image): FLASH_SIZE = 152 KiB. Two backends:

* ``FileFlash`` (default, works with the stock MicroPython image): one
  preallocated littlefs file, ``/rackfw.dat``. The filesystem owns the flash after
  the MicroPython image, so raw access there would corrupt it; littlefs is itself
  power-loss safe and the two-copy config store adds CRC/sequence guarantees. A
  24 KiB file from older firmware is grown in place (config and events kept).
  littlefs needs the 152 KiB free (the Pico's filesystem is 1.4 MB).
* ``RawFlash`` (``RAW_FLASH_START`` set): ``rp2.Flash(start=, len=)`` over a flash
  region outside the filesystem — only with a MicroPython build whose
  ``MICROPY_HW_FLASH_STORAGE_BYTES`` was reduced by FLASH_SIZE so the region is
  free (e.g. the 152 KiB just below the filesystem). True NOR semantics: erase is
  the sector erase ioctl, a write programs (ANDs) 256-byte pages.

Both preallocate their buffers: no allocation per erase or page write. Flash
operations stall the RP2040 (XIP), so the Board performs them only while the bus
is idle; the flash HAL is opened before the watchdog starts, because creating the
file on first boot takes longer than WDT_MS.

Power shelf variant: the six PSUs are read over PMBus (``rackfw.pmbus``,
``rackfw.pmbus_sensors``) on I2C0 at 100 kHz (standard mode: what every PMBus
PSU supports; 2.2 k pull-ups to 3.3 V on the backplane, the bus is 3.3 V
logic), PSU slots 1..6 at addresses 0x58..0x5D (the shelf's address straps),
PEC on.  The main loop does one PMBus transfer every ``PMBUS_STEP_US`` (< 0.7 ms
each, so Modbus is never held up by more than that); a full telemetry sweep of
all six PSUs takes 60 transfers = 150 ms (budget in rackfw/pmbus_sensors.py).
At boot, before the watchdog starts, the PSUs are probed (~0.1 s): inventory,
VOUT_MODE, one sweep, MFR_SERIAL / MFR_MODEL (published as ``psuN_serial`` /
``psuN_model``).  Without presence pins a slot is present while its PSU answers;
one that stops answering reads ``comms`` (values ``SENSOR_OPEN``) and, after ~2 s,
absent.  Feeds, DC bus and BBU channels are not wired on the Pico and read
``SENSOR_OPEN``.

Known limits on hardware: the UART FIFO hides per-byte arrival times, so the
t1.5 inter-byte check has the resolution of the poll period (POLL_MAX_US);
``send`` slices a memoryview, which allocates a few bytes per reply.
"""

import time

import machine
from micropython import const

BOARD_KIND = "cdu"  # or "power_shelf"
BAUD = 19200  # until a stored `baud` setting says otherwise (Board calls set_baud)
WDT_MS = const(2000)
POLL_MAX_US = const(200)
FLASH_FILE = "/rackfw.dat"
SECTOR = const(4096)
STAGING_BASE = const(0x6000)  # rackfw.update / rackproto.fwimage.STAGING_BASE
STAGING_BYTES = const(128 * 1024)
FLASH_SIZE = const(0x6000 + 128 * 1024)  # STAGING_BASE + STAGING_BYTES = 152 KiB
RAW_FLASH_START = const(0)  # byte offset of a reserved region in a custom build; 0: use the file
SERIAL = "PICO-0001"
HW_REV = const(1)

PIN_TX = const(0)
PIN_RX = const(1)
PIN_DE = const(2)
PIN_PUMP_PWM = (16, 17)
PIN_VALVE_PWM = const(18)
PIN_TACH = (20, 21)
PIN_LEAK = (10, 11, 12, 13)
PIN_STRAP = (14, 15)
PIN_I2C_SDA = const(4)   # I2C0
PIN_I2C_SCL = const(5)
I2C_FREQ = const(100000)
PMBUS_BASE_ADDR = const(0x58)
PMBUS_STEP_US = const(2500)  # one PMBus transfer per 2.5 ms: ~25 % bus load
PSU_PRESENT_PINS = False     # True on a backplane with PRESENT# lines wired
PIN_PSU_PRESENT = (6, 7, 8, 9, 22, 3)

_psus: list = []  # the PsuBus of the power-shelf variant (serviced by run())


class Rs485Uart:
    """machine.UART with the HAL's byte-wise, non-blocking interface."""

    def __init__(self, baud):
        self.baud = baud
        self.u = machine.UART(
            0, baudrate=baud, bits=8, parity=0, stop=1,
            tx=machine.Pin(PIN_TX), rx=machine.Pin(PIN_RX),
            timeout=0, txbuf=260, rxbuf=512,
        )
        self._b = bytearray(1)
        self._buf = bytearray(0)
        self._mv = memoryview(self._buf)

    def set_baud(self, baud):
        """Apply the stored ``baud`` setting (called by the Board at boot)."""
        self.baud = baud
        self.u.init(baudrate=baud, bits=8, parity=0, stop=1, timeout=0)

    def any(self):
        return self.u.any()

    def read_byte(self):
        if self.u.readinto(self._b, 1):
            return self._b[0]
        return -1

    def send(self, buf, n):
        if self._buf is not buf:
            self._buf = buf
            self._mv = memoryview(buf)
        self.u.write(self._mv[:n])

    def tx_done(self):
        return self.u.txdone()


class Clock:
    def ticks_us(self):
        return time.ticks_us()

    def ticks_ms(self):
        return time.ticks_ms()


class Tach:
    """Counts tachometer edges in a hard IRQ (an int increment: no allocation)."""

    def __init__(self, pin_no):
        self.count = 0
        self.pin = machine.Pin(pin_no, machine.Pin.IN, machine.Pin.PULL_UP)
        self.pin.irq(self._edge, machine.Pin.IRQ_FALLING, hard=True)
        self._last_count = 0
        self._last_ms = time.ticks_ms()
        self.rpm = 0

    def _edge(self, _pin):
        self.count += 1

    def update(self):
        now = time.ticks_ms()
        dt = time.ticks_diff(now, self._last_ms)
        if dt >= 500:
            pulses = self.count - self._last_count
            self._last_count = self.count
            self._last_ms = now
            self.rpm = pulses * 30000 // dt  # 2 pulses per revolution
        return self.rpm


class CduSensors:
    """ADC channels scaled to the integer units of rackfw.io_cdu."""

    def __init__(self):
        from rackfw import io_cdu as io

        self.io = io
        self.adc = (machine.ADC(26), machine.ADC(27), machine.ADC(28))
        self.temp = machine.ADC(4)
        self.tach = (Tach(PIN_TACH[0]), Tach(PIN_TACH[1]))
        self.leak = [machine.Pin(p, machine.Pin.IN, machine.Pin.PULL_UP) for p in PIN_LEAK]

    def read(self, ch):
        io = self.io
        if ch == io.S_BOARD_T:
            mv = self.temp.read_u16() * 3300 // 65535
            return 270 - (mv * 1000 - 706000) * 10 // 1721  # 0.1 degC (RP2040 datasheet 4.9.5)
        if ch == io.S_T_SUPPLY or ch == io.S_T_RETURN:
            raw = self.adc[0 if ch == io.S_T_SUPPLY else 1].read_u16()
            return raw * 10000 // 65535  # 0..100.00 degC transmitter, 0.01 degC
        if ch == io.S_DP:
            return self.adc[2].read_u16() * 3000 // 65535  # 0..300.0 kPa, 0.1 kPa
        if ch == io.S_LEAK:
            m = 0
            for i in range(len(self.leak)):
                if not self.leak[i].value():
                    m |= 1 << i
            return m
        base = io.S_PUMP_BASE
        if base <= ch < base + io.PUMP_COUNT * io.S_PUMP_STRIDE:
            i = (ch - base) // io.S_PUMP_STRIDE
            if (ch - base) % io.S_PUMP_STRIDE == io.S_PUMP_RPM:
                return self.tach[i].update()
        return io.SENSOR_OPEN  # not wired on this board


class ShelfSensors:
    """The shelf's non-PMBus channels: only the board temperature is wired on a Pico."""

    def __init__(self):
        from rackfw import io_power as io

        self.io = io
        self.temp = machine.ADC(4)

    def read(self, ch):
        if ch == self.io.S_BOARD_T:
            mv = self.temp.read_u16() * 3300 // 65535
            return 270 - (mv * 1000 - 706000) * 10 // 1721
        return self.io.SENSOR_OPEN  # feeds, DC bus, BBU: not wired on this board


class PresencePins:
    """PSU PRESENT# inputs (active low): ``pins(slot)`` -> 1 when a PSU is seated."""

    def __init__(self, numbers):
        self.pins = [machine.Pin(p, machine.Pin.IN, machine.Pin.PULL_UP) for p in numbers]

    def __call__(self, slot):
        return 0 if self.pins[slot].value() else 1


class PwmOutputs:
    """PWM outputs taking 0.1 % commands (0..1000); other channels are remembered only."""

    def __init__(self, pwm_by_channel, n):
        self.pwm = pwm_by_channel
        self.last = [0] * n

    def write(self, ch, value):
        self.last[ch] = value
        p = self.pwm.get(ch)
        if p is not None:
            v = 0 if value < 0 else (1000 if value > 1000 else value)
            p.duty_u16(v * 65535 // 1000)

    def read(self, ch):
        return self.last[ch]


class FileFlash:
    """The flash HAL on a littlefs file: erase = fill 0xFF, write = program (AND) bytes.

    NOR semantics like the simulated boards: a write is read, ANDed and written
    back in 256-byte pieces through one preallocated buffer.
    """

    def __init__(self, path, size):
        self.path = path
        self.n = size
        self._blank = b"\xff" * 256  # made once: erase allocates nothing
        self._page = bytearray(256)
        self._mv = memoryview(self._page)
        try:
            self.f = open(path, "r+b")
        except OSError:
            open(path, "wb").close()
            self.f = open(path, "r+b")
        have = self.f.seek(0, 2)
        if have < size:  # new file, or a smaller one from older firmware: keep its data
            for _ in range((size - have) // 256):
                self.f.write(self._blank)
            self.f.flush()

    def size(self):
        return self.n

    def read(self, offset, buf, n):
        self.f.seek(offset)
        if n == len(buf):
            self.f.readinto(buf)
        else:
            self.f.readinto(memoryview(buf)[:n])

    def write(self, offset, buf, n):
        f = self.f
        page = self._page
        i = 0
        while i < n:
            k = n - i if n - i < 256 else 256
            piece = page if k == 256 else self._mv[:k]
            f.seek(offset + i)
            f.readinto(piece)
            for j in range(k):
                page[j] &= buf[i + j]
            f.seek(offset + i)
            f.write(piece)
            i += k
        f.flush()

    def erase(self, offset, n):
        blank = self._blank
        self.f.seek(offset)
        for _ in range(n // 256):
            self.f.write(blank)
        self.f.flush()


class RawFlash:
    """The flash HAL on raw NOR flash through ``rp2.Flash`` (a region outside the filesystem).

    ``writeblocks(block, buf, offset)`` programs without erasing, but the SDK
    programs whole 256-byte pages only: each touched page is read into a
    preallocated buffer, ANDed with the new bytes and programmed back (programming
    a bit that is already 0 again is harmless on NOR).
    """

    def __init__(self, start, size):
        import rp2

        self.dev = rp2.Flash(start=start, len=size)
        self.n = size
        self._page = bytearray(256)

    def size(self):
        return self.n

    def read(self, offset, buf, n):
        mv = buf if n == len(buf) else memoryview(buf)[:n]
        self.dev.readblocks(offset // SECTOR, mv, offset % SECTOR)

    def write(self, offset, buf, n):
        page = self._page
        dev = self.dev
        i = 0
        while i < n:
            at = offset + i
            base = at & ~255
            dev.readblocks(base // SECTOR, page, base % SECTOR)
            j = at - base
            while j < 256 and i < n:
                page[j] &= buf[i]
                j += 1
                i += 1
            dev.writeblocks(base // SECTOR, page, base % SECTOR)

    def erase(self, offset, n):
        for s in range(offset // SECTOR, (offset + n) // SECTOR):
            self.dev.ioctl(6, s)  # MP_BLOCKDEV_IOCTL_BLOCK_ERASE


def open_flash():
    """The board's flash HAL: a reserved raw region if configured, else the littlefs file."""
    if RAW_FLASH_START:
        return RawFlash(RAW_FLASH_START, FLASH_SIZE)
    return FileFlash(FLASH_FILE, FLASH_SIZE)


def _pwm(pin_no):
    p = machine.PWM(machine.Pin(pin_no))
    p.freq(25000)
    p.duty_u16(0)
    return p


def _reset_cause():
    c = machine.reset_cause()
    if c == machine.WDT_RESET:
        return 2  # enum reset_cause.watchdog
    if c == machine.PWRON_RESET:
        return 1
    return 4  # software / debugger


def _unit_id():
    uid = 0
    for i in range(len(PIN_STRAP)):
        if not machine.Pin(PIN_STRAP[i], machine.Pin.IN, machine.Pin.PULL_UP).value():
            uid |= 1 << i
    return uid  # 0: no strap fitted -> the configured modbus_address is used


def _cdu():
    from rackfw import io_cdu as io
    from rackfw.cooling.app import CduApp

    pwm = {io.O_PUMP_BASE: _pwm(PIN_PUMP_PWM[0]), io.O_PUMP_BASE + 1: _pwm(PIN_PUMP_PWM[1]),
           io.O_VALVE: _pwm(PIN_VALVE_PWM)}
    return CduApp, CduSensors(), PwmOutputs(pwm, io.OUTPUT_COUNT)


def _shelf():
    from rackfw import io_power as io
    from rackfw.pmbus_sensors import PsuBus, PsuOutputs, PsuSensors
    from rackfw.power.app import PowerShelfApp

    i2c = machine.I2C(0, scl=machine.Pin(PIN_I2C_SCL), sda=machine.Pin(PIN_I2C_SDA),
                      freq=I2C_FREQ)
    present = PresencePins(PIN_PSU_PRESENT) if PSU_PRESENT_PINS else None
    psus = PsuBus(i2c, PMBUS_BASE_ADDR, io.PSU_COUNT, True, present)
    psus.probe()  # boot inventory + first sweep, before the watchdog starts
    _psus.append(psus)
    return (PowerShelfApp, PsuSensors(psus, ShelfSensors()),
            PsuOutputs(psus, PwmOutputs({}, io.OUTPUT_COUNT)))


def _publish_psu_identity(board, psus):
    """MFR_SERIAL / MFR_MODEL read at boot -> ``psuN_serial`` / ``psuN_model``."""
    from rackfw import regs_power_shelf as R

    for i in range(psus.n):
        base = R.PSU_BASE + i * R.PSU_STRIDE
        board.bank.set_ir_str(base + R.PSU_SERIAL, 8, psus.serial[i])
        board.bank.set_ir_str(base + R.PSU_MODEL, 8, psus.model[i])


def build():
    from rackfw import boot

    de = machine.Pin(PIN_DE, machine.Pin.OUT, value=0)
    uart = Rs485Uart(BAUD)
    flash = open_flash()  # before the watchdog: first boot creates a 152 KiB file
    # install a staged firmware image before any rackfw module it may replace is imported;
    # the filesystem persists here, so an image marked installed is not re-checked
    staged = boot.apply_staged(flash, 2 if BOARD_KIND == "cdu" else 1, "/", boot.STAGING_BASE,
                               None, False)
    from rackfw.board import Board

    app, sensors, outputs = _cdu() if BOARD_KIND == "cdu" else _shelf()
    wdt = machine.WDT(timeout=WDT_MS)
    cause = boot.RESET_UPDATE if staged == boot.S_INSTALLED else _reset_cause()
    board = Board(uart, de, Clock(), sensors, outputs, flash, wdt,
                  app, _unit_id(), None, SERIAL, HW_REV, cause, None, 0, machine.reset)
    boot.report(board, staged)
    if _psus:
        _publish_psu_identity(board, _psus[0])
    return board


def run(board):
    """The cooperative main loop: poll, PMBus at its pace, sleep no longer than allowed."""
    psus = _psus[0] if _psus else None
    due = time.ticks_us()
    while True:
        d = board.poll()
        if psus is not None:
            now = time.ticks_us()
            if time.ticks_diff(now, due) >= 0:
                psus.service(1)
                due = time.ticks_add(due, PMBUS_STEP_US)
                if time.ticks_diff(now, due) > 0:  # after a stall: no catch-up burst
                    due = time.ticks_add(now, PMBUS_STEP_US)
        time.sleep_us(d if d < POLL_MAX_US else POLL_MAX_US)


if __name__ == "__main__":
    run(build())
