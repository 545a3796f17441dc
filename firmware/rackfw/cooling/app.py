"""CDU application: measure the loops, guard them, control temperature and pressure."""

# (Comments, not a docstring: run from source, MicroPython keeps a docstring in heap.)
#
# Runs once per control tick (``PERIOD_MS``) from the board core (App contract in
# docs/contracts.md).  Each tick:
#
# 1. sample every transmitter and check it (``sensorcheck.py``: open / short / out of
#    range / stuck); the ``sensor_faults`` register shows the faulted ones;
# 2. leak zones (``leak.py``): latch, and isolate for zones in the isolate mask;
# 3. mode machine (``modes.py``): FAULT when a leak isolates, both pumps failed, or —
#    in AUTO — a control input (supply temperature, supply or return pressure) is bad;
# 4. actuators (``control.py``): PID loops in AUTO, manual values, fail-safe or
#    isolation, then lead/lag pump handling (``pumps.py``);
# 5. alarms and telemetry.
#
# Alarms: ``leak``, ``leak_isolated``, ``sensor_fault``, ``pump_failover`` and
# ``pump_fault`` are latched until the fault-clear command finds their cause gone;
# ``low_level``, ``high_temp``, ``low_flow`` and ``high_dp`` follow the process
# (after the ``process_alarm_delay`` register, so a transient does not flap them;
# ``high_dp`` is dp above ``high_dp_pct`` % of its setpoint).
#
#
# Event log: alarms raise/clear as ``EV_ALARM`` (code = alarm bit number, value =
# 1 / 0; for ``leak`` the value is the mask of newly wet zones); a sensor fault is
# ``EV_FAULT_RAISED`` / ``EV_FAULT_CLEARED`` with code ``0x200 | sensor bit`` and the
# fault kind as value; a pump failure is ``EV_FAULT_RAISED`` with code
# ``0x300 | pump number`` and the ``PF_*`` bits as value; a failover or rotation is
# ``EV_ALARM`` code ``pump_failover`` bit, value = new lead pump number (rotation:
# ``0x100 | new lead``); mode transitions are ``EV_MODE`` (see ``modes.py``).
#
# Refusals (``on_write``): choosing a failed pump as lead -> exception 04; a run-hours
# preset over the register's maximum -> exception 03.
#
# Limits that used to be constants are protected, persisted holding registers
# (map defaults = the old constants): pump_oc_limit, rotate_hours, high_dp_pct,
# process_alarm_delay; read every tick, so a write takes effect on the next one.
#
# Run hours (runhours.py) are mirrored into the persisted pump<n>_hours registers
# and restored at boot.  The board core saves the config only for host writes, so
# the app asks for a save by setting ``save_request`` (at most once per hour of pump
# running); the board core clears it when it takes the request.

from micropython import const

from rackfw import io_cdu as io
from rackfw import regs_cdu as R
from rackfw.cooling import modes as M
from rackfw.cooling.control import CduControl
from rackfw.cooling.leak import LeakMonitor
from rackfw.cooling.pumps import NO_TACH_RPM, PF_NO_TACH, PF_OC, PumpPair
from rackfw.cooling.runhours import RunHours
from rackfw.cooling.sensorcheck import SensorCheck
from rackfw.events import EV_ALARM, EV_FAULT_CLEARED, EV_FAULT_RAISED
from rackfw.timebase import ticks_diff

NSENS = const(8)
_S_PER_H = const(3600)

# sensor index (= bit in sensor_faults) -> channel; ranges follow
_CH = (io.S_T_SUPPLY, io.S_T_RETURN, io.S_T_FAC_IN, io.S_T_FAC_OUT, io.S_FLOW,
       io.S_P_SUPPLY, io.S_P_RETURN, io.S_LEVEL)
_LO = (io.RANGE_T_MIN, io.RANGE_T_MIN, io.RANGE_T_MIN, io.RANGE_T_MIN, io.RANGE_FLOW_MIN,
       io.RANGE_P_MIN, io.RANGE_P_MIN, io.RANGE_LEVEL_MIN)
_HI = (io.RANGE_T_MAX, io.RANGE_T_MAX, io.RANGE_T_MAX, io.RANGE_T_MAX, io.RANGE_FLOW_MAX,
       io.RANGE_P_MAX, io.RANGE_P_MAX, io.RANGE_LEVEL_MAX)
# which actuator visibly moves each sensor (for stuck detection): 1 valve, 2 pump, 0 none.
# Only strong, direct couplings: the return pressure is held by the expansion tank and
# the facility outlet / return temperatures follow the load, so those are never "stuck".
_ACT = (1, 0, 0, 0, 2, 2, 0, 0)
_CONTROL_SENSORS = const(0x61)   # t_supply | p_supply | p_return

_LATCHED = const(0x00C7)   # leak | sensor_fault | pump_failover | pump_fault | leak_isolated
_PROCESS = const(0x0138)   # low_level | high_temp | low_flow | high_dp


def _bitno(mask):
    n = 0
    while mask > 1:
        mask >>= 1
        n += 1
    return n


class CduApp:
    REGS = R
    BOARD_TYPE = 2
    PERIOD_MS = 100

    def __init__(self, bank, sensors, outputs, events, clock):
        self.bank = bank
        self.sensors = sensors
        self.outputs = outputs
        self.events = events
        self.clock = clock
        self.check = SensorCheck(NSENS)
        for i in range(NSENS):
            self.check.configure(i, _LO[i], _HI[i])
        self.val = [0] * NSENS          # last good value per sensor
        self.leak = LeakMonitor()
        self.pumps = PumpPair()
        self.hours = RunHours(bank, self.pumps, R.PUMP_HOURS_BASE, R.PUMP_HOURS_STRIDE)
        self.save_request = False       # set: the board core should save the config
        self.modes = M.ModeMachine(events)
        self.ctl = CduControl()
        self.alarms = 0
        self.proc_ms = [0] * 16         # debounce timers of the process alarms
        self.faults_seen = 0            # sensor fault mask last logged
        self.pump_fail_seen = [0, 0]
        self.last_ms = 0
        self.started = False

    # ------------------------------------------------------------ contract
    def start(self):
        self.last_ms = self.clock.ticks_ms()
        self.started = True
        self.hours.restore()
        self.modes.request(self.bank.get_hr(R.MODE_CMD))

    def tick(self, now_ms):
        if not self.started:
            self.start()
        dt = ticks_diff(now_ms, self.last_ms)
        self.last_ms = now_ms
        if dt <= 0 or dt > 1000:
            dt = self.PERIOD_MS
        b = self.bank
        self._sample(dt)
        new_wet = self.leak.update(self.sensors.read(io.S_LEAK))
        isolate = self.leak.isolating(b.get_hr(R.LEAK_ISOLATE_MASK))
        modes = self.modes
        if isolate:
            modes.fault(M.FC_LEAK)
        if self.pumps.all_failed():
            modes.fault(M.FC_PUMPS)
        if modes.mode == M.AUTO and self.check.mask & _CONTROL_SENSORS:
            modes.fault(M.FC_SENSOR)
        isolate = modes.mode == M.FAULT and (modes.causes & M.FC_LEAK) != 0

        ctl = self.ctl
        ctl.set_gains(b.get_hr(R.TEMP_KP), b.get_hr(R.TEMP_KI), b.get_hr(R.TEMP_KD),
                      b.get_hr(R.DP_KP), b.get_hr(R.DP_KI), b.get_hr(R.DP_KD))
        v = self.val
        ctl.step(modes.mode, isolate, dt, b.get_hr_s(R.T_SUPPLY_SP), v[0],
                 b.get_hr(R.DP_SP), v[5] - v[6],
                 b.get_hr(R.MANUAL_PUMP_SPEED), b.get_hr(R.MANUAL_VALVE_POS),
                 b.get_hr(R.PUMP_SAFE_SPEED), b.get_hr(R.VALVE_SAFE_POS))
        self._pumps(dt, ctl.speed)
        hours = self.hours
        hours.tick(dt)
        if hours.save_due:
            hours.save_due = False
            self.save_request = True
        o = self.outputs
        o.write(io.O_VALVE, ctl.valve)
        o.write(io.O_PUMP_BASE, self.pumps.cmd[0])
        o.write(io.O_PUMP_BASE + 1, self.pumps.cmd[1])

        alarms = self.alarms
        if new_wet:
            alarms |= R.F_ALARMS_LEAK
            self.events.log(EV_ALARM, _bitno(R.F_ALARMS_LEAK), new_wet)
        if isolate:
            alarms |= R.F_ALARMS_LEAK_ISOLATED
        if self.check.mask:
            alarms |= R.F_ALARMS_SENSOR_FAULT
        alarms = (alarms & ~_PROCESS) | self._process_alarms(dt)
        self._set_alarms(alarms)
        self._publish()

    def on_write(self, addr, value):
        if addr == R.MODE_CMD:
            return self.modes.request(value)
        if addr == R.LEAD_SELECT and value:
            if self.pumps.fail[value - 1]:
                return 4
        if addr >= R.PUMP_HOURS_BASE:   # the last holding block
            return self.hours.write(addr, value)
        return 0

    def clear_faults(self):
        b = self.bank
        self.leak.clear()
        self.pumps.clear()
        self.pump_fail_seen[0] = 0
        self.pump_fail_seen[1] = 0
        still = 0
        if self.leak.isolating(b.get_hr(R.LEAK_ISOLATE_MASK)):
            still |= M.FC_LEAK
        if self.check.mask & _CONTROL_SENSORS:
            still |= M.FC_SENSOR
        self.modes.recover(still)
        alarms = self.alarms
        if not self.leak.latched:
            alarms &= ~R.F_ALARMS_LEAK
        if not (still & M.FC_LEAK):
            alarms &= ~R.F_ALARMS_LEAK_ISOLATED
        if not self.check.mask:
            alarms &= ~R.F_ALARMS_SENSOR_FAULT
        alarms &= ~(R.F_ALARMS_PUMP_FAILOVER | R.F_ALARMS_PUMP_FAULT)
        self._set_alarms(alarms)

    # ------------------------------------------------------------ pieces
    def _sample(self, dt):
        sn = self.sensors
        chk = self.check
        valve = self.ctl.valve
        pump = self.pumps.cmd[self.pumps.lead]
        for i in range(NSENS):
            a = _ACT[i]
            act = valve if a == 1 else (pump if a == 2 else -1)
            x = sn.read(_CH[i])
            if chk.check(i, x, dt, act):
                self.val[i] = x
        mask = chk.mask
        changed = mask ^ self.faults_seen
        if changed:
            self.faults_seen = mask
            m = 1
            for i in range(NSENS):
                if changed & m:
                    if mask & m:
                        self.events.log(EV_FAULT_RAISED, 0x200 | i, chk.kind[i])
                    else:
                        self.events.log(EV_FAULT_CLEARED, 0x200 | i, 0)
                m <<= 1
        p = self.pumps
        for i in range(2):
            base = io.S_PUMP_BASE + i * io.S_PUMP_STRIDE
            p.sample(i, sn.read(base + io.S_PUMP_RPM), sn.read(base + io.S_PUMP_I))

    def _pumps(self, dt, demand):
        b = self.bank
        p = self.pumps
        sel = b.get_hr(R.LEAD_SELECT)
        rotate_s = b.get_hr(R.ROTATE_HOURS) * _S_PER_H
        if sel:
            p.select_lead(sel - 1)
            rotate_s = 0
        p.update(dt, demand, b.get_hr(R.PUMP_OC_LIMIT), b.get_hr(R.FAILOVER_DELAY), rotate_s)
        for i in range(2):
            if p.fail[i] and not self.pump_fail_seen[i]:
                self.pump_fail_seen[i] = p.fail[i]
                self.events.log(EV_FAULT_RAISED, 0x300 | (i + 1), p.fail[i])
                self.alarms |= R.F_ALARMS_PUMP_FAULT
        if p.failover:
            self.alarms |= R.F_ALARMS_PUMP_FAILOVER
            self.events.log(EV_ALARM, _bitno(R.F_ALARMS_PUMP_FAILOVER), p.lead + 1)
        elif p.rotated:
            self.events.log(EV_ALARM, _bitno(R.F_ALARMS_PUMP_FAILOVER), 0x100 | (p.lead + 1))

    def _debounce(self, k, cond, dt, delay):
        t = self.proc_ms
        if not cond:
            t[k] = 0
            return False
        if t[k] < delay:
            t[k] += dt
        return t[k] >= delay

    def _process_alarms(self, dt):
        b = self.bank
        v = self.val
        chk = self.check   # (not chk.ok: a bound method object would allocate every tick)
        a = 0
        d = b.get_hr(R.PROCESS_ALARM_DELAY)
        if self._debounce(3, chk.ok(7) and v[7] < b.get_hr(R.LOW_LEVEL_LIMIT), dt, d):
            a |= R.F_ALARMS_LOW_LEVEL
        if self._debounce(4, chk.ok(0) and v[0] > b.get_hr_s(R.HIGH_TEMP_LIMIT), dt, d):
            a |= R.F_ALARMS_HIGH_TEMP
        running = self.pumps.rpm[self.pumps.lead] >= NO_TACH_RPM
        if self._debounce(5, running and chk.ok(4) and v[4] < b.get_hr(R.LOW_FLOW_LIMIT), dt, d):
            a |= R.F_ALARMS_LOW_FLOW
        dp_hi = b.get_hr(R.DP_SP) * b.get_hr(R.HIGH_DP_PCT) // 100
        if self._debounce(8, chk.ok(5) and chk.ok(6) and v[5] - v[6] > dp_hi, dt, d):
            a |= R.F_ALARMS_HIGH_DP
        return a

    def _set_alarms(self, alarms):
        changed = alarms ^ self.alarms
        # the leak bit logs its own raise (with the zone mask) in tick()
        changed &= ~R.F_ALARMS_LEAK | (self.alarms & R.F_ALARMS_LEAK)
        m = 1
        while changed:
            if changed & m:
                self.events.log(EV_ALARM, _bitno(m), 1 if alarms & m else 0)
                changed &= ~m
            m <<= 1
        self.alarms = alarms

    def _publish(self):
        b = self.bank
        sn = self.sensors
        modes = self.modes
        v = self.val
        b.set_ir(R.MODE, modes.mode)
        b.set_ir(R.ALARMS, self.alarms)
        b.set_ir(R.SENSOR_FAULTS, self.check.mask)
        b.set_ir(R.LEAK_ZONES, self.leak.latched)
        for i in range(NSENS - 1):
            b.set_ir(R.T_SUPPLY + i, sn.read(_CH[i]))
        b.set_ir(R.LEVEL, sn.read(io.S_LEVEL))
        b.set_ir(R.DP, v[5] - v[6])
        b.set_ir(R.VALVE_POS, sn.read(io.S_VALVE_FB))
        b.set_ir(R.VALVE_CMD, self.ctl.valve)
        q = (v[4] * (v[1] - v[0]) // 100) * 418 // 6000
        b.set_ir(R.HEAT_LOAD, q if q > 0 else 0)
        p = self.pumps
        b.set_ir(R.LEAD_PUMP, p.lead + 1)
        for i in range(2):
            base = R.PUMP_BASE + i * R.PUMP_STRIDE
            st = 0
            if p.rpm[i] >= NO_TACH_RPM:
                st |= R.F_PUMP_STATUS_RUNNING
            if p.fail[i]:
                st |= R.F_PUMP_STATUS_FAILED
            if p.fail[i] & PF_OC:
                st |= R.F_PUMP_STATUS_OVERCURRENT
            if p.fail[i] & PF_NO_TACH:
                st |= R.F_PUMP_STATUS_NO_TACH
            if i == p.lead:
                st |= R.F_PUMP_STATUS_LEAD
            b.set_ir(base + R.PUMP_STATUS, st)
            b.set_ir(base + R.PUMP_SPEED_CMD, p.cmd[i])
            b.set_ir(base + R.PUMP_RPM, p.rpm[i])
            b.set_ir(base + R.PUMP_CURRENT, p.cur[i])
            b.set_ir32(base + R.PUMP_RUN_HOURS, p.run_s[i] // 36)
        b.set_di(R.FAULT_ACTIVE, 1 if (modes.mode == M.FAULT or self.alarms & _LATCHED) else 0)
        self.outputs.write(io.O_ALARM, 1 if self.alarms else 0)
