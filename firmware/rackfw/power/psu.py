"""One PSU slot: sample, protect, drive the PSU's controls, publish its telemetry.

Keeps the per-slot channel and register bases computed once, so a tick is plain
indexed reads and writes.  Status bits are the register map's ``psu_status``
flags; ``raised``/``cleared`` hold the flag bits that changed since the app last
logged them, ``hotswap`` is set when presence changed (a removed PSU's latched
faults are forgotten: the unit inserted next is a different PSU).  A PSU whose
management bus stops answering (readings ``SENSOR_OPEN``) is flagged ``comms`` and
keeps its last commands; its capacity does not count towards redundancy.
"""

from micropython import const

from rackfw import io_power as io
from rackfw import regs_power_shelf as R
from rackfw.power import protection as P

FAN_MIN_PCT = const(30)
FAN_AUTO_FROM = const(350)   # 0.1 degC: auto fan duty starts rising above 35 degC
PG_PCT = const(90)           # power good: output within 90 % of the setpoint

_LATCHED_FLAGS = const(0x0038)   # ov | oc | ot in psu_status

_PROT = (P.F_OV, P.F_OC, P.F_OT, P.W_OT, P.W_FAN, P.W_AC)
_FLAG = (R.F_PSU_STATUS_OV, R.F_PSU_STATUS_OC, R.F_PSU_STATUS_OT,
         R.F_PSU_STATUS_OT_WARNING, R.F_PSU_STATUS_FAN_FAIL, R.F_PSU_STATUS_AC_FAIL)


def to_flags(pbits):
    """Protection bits -> ``psu_status`` register flags."""
    f = 0
    for k in range(6):
        if pbits & _PROT[k]:
            f |= _FLAG[k]
    return f


def fan_duty(override, t_hot, warn):
    """Fan duty in %: the override if set, else a ramp from FAN_MIN_PCT to 100 %."""
    if override:
        return override
    if t_hot <= FAN_AUTO_FROM or warn <= FAN_AUTO_FROM:
        return FAN_MIN_PCT
    if t_hot >= warn:
        return 100
    return FAN_MIN_PCT + (100 - FAN_MIN_PCT) * (t_hot - FAN_AUTO_FROM) // (warn - FAN_AUTO_FROM)


class PsuSlot:
    def __init__(self, i, bank, sensors, outputs):
        self.i = i
        self.bank = bank
        self.sensors = sensors
        self.outputs = outputs
        self.s_base = io.S_PSU_BASE + i * io.S_PSU_STRIDE
        self.o_base = io.O_PSU_BASE + i * io.O_PSU_STRIDE
        self.ir = R.PSU_BASE + i * R.PSU_STRIDE
        self.hr = R.PSU_CTL_BASE + i * R.PSU_CTL_STRIDE
        self.di = R.PSU_BITS_BASE + i * R.PSU_BITS_STRIDE
        self.prot = P.PsuProtection()
        self.present = 0
        self.on = 0
        self.status = 0
        self.limit = io.PSU_RATED_I
        self.out_v = 0
        self.out_i = 0
        self.t_hot = 0
        self.raised = 0
        self.cleared = 0
        self.hotswap = False

    def _note(self):
        self.raised |= to_flags(self.prot.raised)
        self.cleared |= to_flags(self.prot.cleared)

    def tick(self, dt, vset, fan_ovr, ov, oc, warn, fault):
        """One control tick; returns the ``psu_status`` flags."""
        sn = self.sensors
        s = self.s_base
        b = self.bank
        present = 1 if sn.read(s + io.S_PSU_PRESENT) else 0
        if present != self.present:
            self.present = present
            self.hotswap = True
            if not present:
                self.prot.forget()
                self._note()
        if not present:
            return self._absent()
        out_v = sn.read(s + io.S_PSU_OUT_V)
        if out_v == io.SENSOR_OPEN:
            return self._no_comms()
        if self.status & R.F_PSU_STATUS_COMMS:
            self.cleared |= R.F_PSU_STATUS_COMMS
        in_v = sn.read(s + io.S_PSU_IN_V)
        in_i = sn.read(s + io.S_PSU_IN_I)
        out_i = sn.read(s + io.S_PSU_OUT_I)
        t_in = sn.read(s + io.S_PSU_T_INLET)
        t_hot = sn.read(s + io.S_PSU_T_HOT)
        rpm = sn.read(s + io.S_PSU_FAN_RPM)
        ac_ok = sn.read(s + io.S_PSU_AC_OK)
        self.out_v = out_v
        self.out_i = out_i
        self.t_hot = t_hot
        fan = fan_duty(fan_ovr, t_hot, warn)
        pst = self.prot.evaluate(dt, self.on, out_v, out_i, t_hot, fan, rpm, ac_ok,
                                 ov, oc, b.get_hr(self.hr + R.PSU_CTL_OC_DELAY), warn, fault)
        self._note()
        on = 1 if b.get_hr(self.hr + R.PSU_CTL_ON_CMD) and not (pst & P.LATCHED) else 0
        self.on = on
        limit = self.prot.current_limit(io.PSU_RATED_I, t_hot, warn, fault)
        self.limit = limit
        o = self.outputs
        ob = self.o_base
        o.write(ob + io.O_PSU_ON, on)
        o.write(ob + io.O_PSU_VSET, vset)
        o.write(ob + io.O_PSU_ILIM, limit)
        o.write(ob + io.O_PSU_FAN, fan)

        st = R.F_PSU_STATUS_PRESENT | to_flags(pst)
        if on:
            st |= R.F_PSU_STATUS_ON
            if ac_ok and out_v * 100 >= vset * PG_PCT:
                st |= R.F_PSU_STATUS_POWER_GOOD
            if out_i * 100 >= limit * 98:
                st |= R.F_PSU_STATUS_CURRENT_LIMIT
        self.status = st
        ir = self.ir
        b.set_ir(ir + R.PSU_STATUS, st)
        b.set_ir(ir + R.PSU_OUT_LIMIT, limit * 1000 // io.PSU_RATED_I)
        b.set_ir(ir + R.PSU_IN_V, in_v)
        b.set_ir(ir + R.PSU_IN_I, in_i)
        b.set_ir(ir + R.PSU_IN_P, in_v * in_i // 1000)
        b.set_ir(ir + R.PSU_OUT_V, out_v)
        b.set_ir(ir + R.PSU_OUT_I, out_i)
        b.set_ir(ir + R.PSU_OUT_P, out_v * out_i // 10000)
        b.set_ir(ir + R.PSU_TEMP_INLET, t_in)
        b.set_ir(ir + R.PSU_TEMP_HOTSPOT, t_hot)
        b.set_ir(ir + R.PSU_FAN_RPM, rpm)
        b.set_di(self.di + R.PSU_BITS_PRESENT_BIT, 1)
        b.set_di(self.di + R.PSU_BITS_GOOD_BIT, st & R.F_PSU_STATUS_POWER_GOOD)
        return st

    def _no_comms(self):
        """The PSU's management bus does not answer (its readings come back as
        ``SENSOR_OPEN``): keep the last commands, skip protection on stale data, flag it."""
        st = R.F_PSU_STATUS_PRESENT | R.F_PSU_STATUS_COMMS | to_flags(self.prot.status)
        if self.on:
            st |= R.F_PSU_STATUS_ON
        if not (self.status & R.F_PSU_STATUS_COMMS):
            self.raised |= R.F_PSU_STATUS_COMMS
        self.status = st
        self.bank.set_ir(self.ir + R.PSU_STATUS, st)
        self.bank.set_di(self.di + R.PSU_BITS_GOOD_BIT, 0)
        return st

    def _absent(self):
        self.on = 0
        self.status = 0
        self.out_v = 0
        self.out_i = 0
        o = self.outputs
        o.write(self.o_base + io.O_PSU_ON, 0)
        o.write(self.o_base + io.O_PSU_FAN, 0)
        b = self.bank
        ir = self.ir
        for k in range(R.PSU_FW_VERSION):
            b.set_ir(ir + k, 0)
        b.set_di(self.di + R.PSU_BITS_PRESENT_BIT, 0)
        b.set_di(self.di + R.PSU_BITS_GOOD_BIT, 0)
        return 0

    def capacity_w(self, vset):
        """What this PSU can deliver now (0 unless on and power-good), in W."""
        if not (self.status & R.F_PSU_STATUS_POWER_GOOD):
            return 0
        return self.limit * vset // 10000

    def clear(self, ov, oc, warn):
        """Fault-clear command for this slot (latched faults whose cause is gone).

        Judged on a fresh sample: the command may arrive just after a tick."""
        if self.present:
            sn = self.sensors
            s = self.s_base
            self.out_v = sn.read(s + io.S_PSU_OUT_V)
            self.out_i = sn.read(s + io.S_PSU_OUT_I)
            self.t_hot = sn.read(s + io.S_PSU_T_HOT)
            self.prot.clear(self.out_v, self.out_i, self.t_hot, ov, oc, warn)
            self._note()

    def fault_value(self, flag):
        """Measured value logged with a raised fault."""
        if flag == R.F_PSU_STATUS_OV:
            return self.out_v & 0xFFFF
        if flag == R.F_PSU_STATUS_OC:
            return self.out_i & 0xFFFF
        return self.t_hot & 0xFFFF

    def latched(self):
        return self.status & _LATCHED_FLAGS
