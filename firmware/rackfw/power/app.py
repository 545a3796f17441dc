"""Power-shelf application: measure every PSU, protect, supervise feeds and BBU.

Runs once per control tick (``PERIOD_MS``) from the board core (App contract in
docs/contracts.md).  Each tick:

1. AC feeds -> feed state enum, ``ac_flags``, degraded redundancy when one is bad;
2. every PSU slot -> hot-swap detection (``EV_HOTSWAP``, code = slot 1..6, value =
   1 inserted / 0 removed), protection (``protection.py``), output enable, voltage
   setpoint, current limit (derating) and fan duty, telemetry;
3. DC bus totals, N+1 redundancy (``redundancy.py``), BBU mode (``bbu.py``),
   shelf status flags and the alarm output.

Event codes: ``(slot << 8) | bit`` where ``bit`` is the bit number of the flag in the
register map (``psu_status`` for slots 1..6; ``shelf_status`` with slot 0 for
shelf-level conditions).  Latched PSU faults (OV, OC, OT) log ``EV_FAULT_RAISED``
with the measured value and ``EV_FAULT_CLEARED`` with 0; warnings (OT derate, fan,
AC fail, overload, degraded feed, battery) log ``EV_WARNING`` with value 1 when they
appear and 0 when they go.  BBU mode changes log ``EV_MODE`` (code = new mode,
value = previous mode).

Refusals (``on_write``):
* switching a PSU off when the others could not carry the load -> exception 04;
* an output setpoint at or above the OV threshold, an OV threshold at or below the
  setpoint, or an OT warning level at or above the OT fault level -> exception 03.
"""

from micropython import const

from rackfw import io_power as io
from rackfw import regs_power_shelf as R
from rackfw.events import EV_FAULT_CLEARED, EV_FAULT_RAISED, EV_HOTSWAP, EV_MODE, EV_WARNING
from rackfw.power.bbu import MODE_DISCHARGING, MODE_FAULT, Bbu
from rackfw.power.psu import PsuSlot
from rackfw.power.redundancy import Redundancy
from rackfw.timebase import ticks_diff

N = const(6)

FEED_LOST_V = const(500)    # 0.1 V: below this a feed is absent
FEED_LOW_V = const(2000)    # 0.1 V: 200 V
FEED_HIGH_V = const(2640)   # 0.1 V: 264 V

SETTLE_TICKS = const(5)     # after boot: inputs settle (ADC filters, PMBus first reads)

_FEED_LOST = const(0)
_FEED_OK = const(1)
_FEED_LOW = const(2)
_FEED_HIGH = const(3)

# shelf-level conditions logged as warnings (slot 0): shelf_status mask
_SHELF_LOGGED = const(0x00C6)  # degraded_feed | on_battery | overload | bbu_fault


def _bitno(mask):
    n = 0
    while mask > 1:
        mask >>= 1
        n += 1
    return n


def feed_state(v):
    if v < FEED_LOST_V:
        return _FEED_LOST
    if v < FEED_LOW_V:
        return _FEED_LOW
    if v > FEED_HIGH_V:
        return _FEED_HIGH
    return _FEED_OK


class PowerShelfApp:
    REGS = R
    BOARD_TYPE = 1
    PERIOD_MS = 100

    def __init__(self, bank, sensors, outputs, events, clock):
        self.bank = bank
        self.sensors = sensors
        self.outputs = outputs
        self.events = events
        self.clock = clock
        self.slots = [PsuSlot(i, bank, sensors, outputs) for i in range(N)]
        self.red = Redundancy(N)
        self.bbu = Bbu()
        self.shelf = 0
        self.feeds_ok = 0
        self.settle = SETTLE_TICKS
        self.last_ms = 0
        self.started = False

    # ------------------------------------------------------------ contract
    def start(self):
        """Begin the boot settle window: for ``SETTLE_TICKS`` ticks the inventory is
        taken silently (a PSU already seated is not a hot-swap) and the BBU is not
        judged; protection runs from the first tick."""
        for s in self.slots:
            s.present = 1 if self.sensors.read(s.s_base + io.S_PSU_PRESENT) else 0
        self.last_ms = self.clock.ticks_ms()
        self.settle = SETTLE_TICKS
        self.started = True

    def tick(self, now_ms):
        if not self.started:
            self.start()
            return
        dt = ticks_diff(now_ms, self.last_ms)
        self.last_ms = now_ms
        if dt <= 0 or dt > 1000:
            dt = self.PERIOD_MS
        b = self.bank
        ac_present = self._feeds()
        vset = b.get_hr(R.VOUT_SETPOINT)
        fan_ovr = b.get_hr(R.FAN_OVERRIDE)
        ov = b.get_hr(R.OV_THRESHOLD)
        oc = b.get_hr(R.OC_THRESHOLD)
        warn = b.get_hr_s(R.OT_WARNING)
        fault = b.get_hr_s(R.OT_FAULT)
        npresent = 0
        non = 0
        latched = 0
        warnings = 0
        derating = 0
        cap = self.red.cap_w
        settling = self.settle > 0
        if settling:
            self.settle -= 1
        for s in self.slots:
            st = s.tick(dt, vset, fan_ovr, ov, oc, warn, fault)
            if settling:
                s.hotswap = False
            self._log_slot(s)
            cap[s.i] = s.capacity_w(vset)
            if s.present:
                npresent += 1
                if st & R.F_PSU_STATUS_POWER_GOOD:
                    non += 1
                latched |= st & (R.F_PSU_STATUS_OV | R.F_PSU_STATUS_OT | R.F_PSU_STATUS_OC)
                warnings |= st & (R.F_PSU_STATUS_FAN_FAIL | R.F_PSU_STATUS_AC_FAIL
                                  | R.F_PSU_STATUS_OT_WARNING)
                derating |= st & R.F_PSU_STATUS_OT_WARNING
        load_w = self._bus()
        b.set_ir(R.PSUS_PRESENT, npresent)
        b.set_ir(R.PSUS_ON, non)
        shelf = 0
        if self.red.update(load_w):
            shelf |= R.F_SHELF_STATUS_REDUNDANCY_OK
        mode = self._bbu(ac_present, load_w, settling)
        if self.feeds_ok == 1:
            shelf |= R.F_SHELF_STATUS_DEGRADED_FEED
        if mode == MODE_DISCHARGING:
            shelf |= R.F_SHELF_STATUS_ON_BATTERY
        if mode == MODE_FAULT:
            shelf |= R.F_SHELF_STATUS_BBU_FAULT
        if ac_present and load_w > self.red.total_w:
            shelf |= R.F_SHELF_STATUS_OVERLOAD
        if latched or mode == MODE_FAULT:
            shelf |= R.F_SHELF_STATUS_ANY_FAULT
        if warnings or shelf & (R.F_SHELF_STATUS_DEGRADED_FEED | R.F_SHELF_STATUS_OVERLOAD):
            shelf |= R.F_SHELF_STATUS_ANY_WARNING
        if derating:
            shelf |= R.F_SHELF_STATUS_DERATING
        if not settling:
            self._log_shelf(shelf)   # boot conditions are logged once settled
        b.set_ir(R.SHELF_STATUS, shelf)
        alarm = 1 if shelf & (R.F_SHELF_STATUS_ANY_FAULT | R.F_SHELF_STATUS_OVERLOAD) else 0
        b.set_di(R.FAULT_ACTIVE, alarm)
        self.outputs.write(io.O_ALARM, alarm)

    def on_write(self, addr, value):
        b = self.bank
        if R.PSU_CTL_BASE <= addr < R.PSU_CTL_BASE + N * R.PSU_CTL_STRIDE:
            off = addr - R.PSU_CTL_BASE
            if off % R.PSU_CTL_STRIDE == R.PSU_CTL_ON_CMD and value == 0:
                if not self.red.may_turn_off(off // R.PSU_CTL_STRIDE):
                    return 4
            return 0
        if addr == R.VOUT_SETPOINT and value >= b.get_hr(R.OV_THRESHOLD):
            return 3
        if addr == R.OV_THRESHOLD and value <= b.get_hr(R.VOUT_SETPOINT):
            return 3
        if addr == R.OT_WARNING and _s16(value) >= b.get_hr_s(R.OT_FAULT):
            return 3
        if addr == R.OT_FAULT and _s16(value) <= b.get_hr_s(R.OT_WARNING):
            return 3
        return 0

    def clear_faults(self):
        b = self.bank
        ov = b.get_hr(R.OV_THRESHOLD)
        oc = b.get_hr(R.OC_THRESHOLD)
        warn = b.get_hr_s(R.OT_WARNING)
        for s in self.slots:
            s.clear(ov, oc, warn)
            self._log_slot(s)

    # ------------------------------------------------------------ pieces
    def _feeds(self):
        """Publish both feeds; returns True when at least one feed is usable."""
        b = self.bank
        sn = self.sensors
        flags = 0
        ok = 0
        for f in range(2):
            ch = io.S_FEED1_V + 2 * f
            v = sn.read(ch)
            i = sn.read(ch + 1)
            st = feed_state(v)
            base = R.FEED_BASE + f * R.FEED_STRIDE
            b.set_ir(base + R.FEED_STATE, st)
            b.set_ir(base + R.FEED_V, v)
            b.set_ir(base + R.FEED_I, i)
            b.set_ir(base + R.FEED_P, v * i // 1000)
            b.set_ir(base + R.FEED_FREQ, sn.read(io.S_FEED1_HZ + f))
            if st != _FEED_LOST:
                flags |= R.F_AC_FLAGS_FEED_A_PRESENT << (2 * f)
            if st == _FEED_OK:
                flags |= R.F_AC_FLAGS_FEED_A_IN_RANGE << (2 * f)
                ok += 1
        b.set_ir(R.AC_FLAGS, flags)
        self.feeds_ok = ok
        return ok > 0

    def _bus(self):
        """Publish the DC bus; returns the load in W."""
        b = self.bank
        v = self.sensors.read(io.S_BUS_V)
        i = self.sensors.read(io.S_BUS_I)
        if i < 0:
            i = 0
        b.set_ir(R.DC_V, v)
        b.set_ir(R.DC_I, i)
        p = v * i // 100          # 0.01 V x 0.1 A = 1 mW -> 0.1 W
        b.set_ir32(R.DC_P, p)
        return p // 10

    def _bbu(self, ac_present, load_w, settling):
        b = self.bank
        sn = self.sensors
        v = sn.read(io.S_BBU_V)
        i = sn.read(io.S_BBU_I)
        t = sn.read(io.S_BBU_T)
        soc = sn.read(io.S_BBU_SOC)
        soh = sn.read(io.S_BBU_SOH)
        old = self.bbu.mode
        if settling:
            mode = old
        else:
            mode = self.bbu.update(ac_present, v, i, t, soc, soh)
            if self.bbu.changed:
                self.events.log(EV_MODE, mode, old)
        enable = self.bbu.enable() if b.get_hr(R.BBU_ENABLE) else 0
        self.outputs.write(io.O_BBU_ENABLE, enable)
        self.outputs.write(io.O_BBU_CHARGE_I, self.bbu.charge_current(b.get_hr(R.BBU_CHARGE_CURRENT)))
        b.set_ir(R.BBU_SOC, soc)
        b.set_ir(R.BBU_V, v)
        b.set_ir(R.BBU_I, i)
        b.set_ir(R.BBU_TEMP, t)
        b.set_ir(R.BBU_CYCLES, self.bbu.cycles)
        b.set_ir(R.BBU_HEALTH, soh)
        b.set_ir(R.BBU_MODE, mode)
        runtime = 0xFFFF
        if load_w > 0:
            wh = io.BBU_CAPACITY_WH * soc // 1000 * soh // 1000
            runtime = wh * 3600 // load_w
            if runtime > 0xFFFF:
                runtime = 0xFFFF
        b.set_ir(R.BBU_RUNTIME, runtime)
        return mode

    def _log_slot(self, s):
        ev = self.events
        if s.hotswap:
            ev.log(EV_HOTSWAP, s.i + 1, s.present)
            s.hotswap = False
        raised = s.raised
        cleared = s.cleared
        if not (raised | cleared):
            return
        code = (s.i + 1) << 8
        m = 1
        while m <= R.F_PSU_STATUS_CURRENT_LIMIT:
            if m & (raised | cleared):
                fault = m & (R.F_PSU_STATUS_OV | R.F_PSU_STATUS_OC | R.F_PSU_STATUS_OT)
                if m & raised:
                    if fault:
                        ev.log(EV_FAULT_RAISED, code | _bitno(m), s.fault_value(m))
                    else:
                        ev.log(EV_WARNING, code | _bitno(m), 1)
                elif fault:
                    ev.log(EV_FAULT_CLEARED, code | _bitno(m), 0)
                else:
                    ev.log(EV_WARNING, code | _bitno(m), 0)
            m <<= 1
        s.raised = 0
        s.cleared = 0

    def _log_shelf(self, shelf):
        changed = (shelf ^ self.shelf) & _SHELF_LOGGED
        self.shelf = shelf
        m = 1
        while changed:
            if changed & m:
                if m == R.F_SHELF_STATUS_BBU_FAULT:
                    kind = EV_FAULT_RAISED if shelf & m else EV_FAULT_CLEARED
                else:
                    kind = EV_WARNING
                self.events.log(kind, _bitno(m), 1 if shelf & m else 0)
                changed &= ~m
            m <<= 1


def _s16(v):
    return v - 0x10000 if v & 0x8000 else v

