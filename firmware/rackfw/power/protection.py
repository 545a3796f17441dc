"""Per-PSU protection: over-voltage, over-current, over-temperature, fan failure.

Evaluated every tick on the values just sampled; thresholds come from the protected
holding registers (the app passes them in, so this module knows no addresses).

Policy (what the status bits below mean and what the app does with them):

* ``F_OV``  output voltage above the OV threshold -> the PSU is switched off in the
  same tick, fault latched.
* ``F_OC``  output current above the OC threshold for the configured trip delay ->
  off, latched.  The delay timer is *leaky*: below the threshold it counts down at
  the same rate instead of resetting, so a load that keeps flicking over the limit
  still trips (a crude I^2t-like memory) while a single short inrush does not.
* ``W_OT``  hot-spot temperature above the warning level -> derate: the output
  current limit falls linearly from the rated limit at the warning level to
  ``DERATE_FLOOR_PCT`` of it at the fault level.  Clears with ``OT_HYST`` hysteresis.
* ``F_OT``  hot-spot temperature at/above the fault level -> off, latched.
* ``W_FAN`` fan commanded (and the PSU powered) but the tach reads below
  ``FAN_MIN_RPM`` for ``FAN_FAIL_MS`` -> warning only; over-temperature protection then does the
  protecting (the PSU heats up, derates, then trips).
* ``W_AC``  the PSU reports its AC input bad (not a fault of the PSU).

A latched fault (``LATCHED``) is cleared only by ``clear()`` (the fault-clear command)
and only when its condition is gone; see ``condition_gone``.
"""

from micropython import const

F_OV = const(0x0001)
F_OC = const(0x0002)
F_OT = const(0x0004)
W_OT = const(0x0008)
W_FAN = const(0x0010)
W_AC = const(0x0020)
LATCHED = const(0x0007)        # F_OV | F_OC | F_OT

OT_HYST = const(20)            # 0.1 degC: warning clears 2.0 degC below the warning level
FAN_MIN_RPM = const(300)
FAN_FAIL_MS = const(2000)
DERATE_FLOOR_PCT = const(50)


class PsuProtection:
    """Protection state of one PSU slot."""

    def __init__(self):
        self.status = 0
        self.oc_ms = 0
        self.fan_ms = 0
        self.raised = 0        # bits raised in the last evaluate() (for logging)
        self.cleared = 0       # bits cleared in the last evaluate() / clear()

    def evaluate(self, dt_ms, on, out_v, out_i, t_hot, fan_cmd, fan_rpm, ac_ok,
                 ov_thr, oc_thr, oc_delay_ms, ot_warn, ot_fault):
        """Update the status bits from one sample; returns the status."""
        old = self.status
        st = old
        if on:
            if out_v > ov_thr:
                st |= F_OV
            if out_i > oc_thr:
                self.oc_ms += dt_ms
                if self.oc_ms >= oc_delay_ms:
                    st |= F_OC
            elif self.oc_ms > 0:
                self.oc_ms -= dt_ms
                if self.oc_ms < 0:
                    self.oc_ms = 0
            # an unpowered PSU (no AC) cannot spin its fan: not a fan failure
            if fan_cmd > 0 and ac_ok and fan_rpm < FAN_MIN_RPM:
                self.fan_ms += dt_ms
                if self.fan_ms >= FAN_FAIL_MS:
                    st |= W_FAN
            else:
                self.fan_ms = 0
                st &= ~W_FAN
        else:
            self.oc_ms = 0
            self.fan_ms = 0
            st &= ~W_FAN
        # temperature protects whether or not the output is on (a hot PSU must not
        # be switched back on), so it is evaluated unconditionally
        if t_hot >= ot_fault:
            st |= F_OT | W_OT
        elif t_hot > ot_warn:
            st |= W_OT
        elif t_hot < ot_warn - OT_HYST:
            st &= ~W_OT
        if ac_ok:
            st &= ~W_AC
        else:
            st |= W_AC
        self.status = st
        self.raised = st & ~old
        self.cleared = old & ~st
        return st

    def current_limit(self, rated, t_hot, ot_warn, ot_fault):
        """Output current limit for this tick (rated unless derating)."""
        if not (self.status & W_OT) or ot_fault <= ot_warn:
            return rated
        floor = rated * DERATE_FLOOR_PCT // 100
        if t_hot <= ot_warn:
            return rated
        if t_hot >= ot_fault:
            return floor
        return rated - (rated - floor) * (t_hot - ot_warn) // (ot_fault - ot_warn)

    def condition_gone(self, bit, out_v, out_i, t_hot, ov_thr, oc_thr, ot_warn):
        """True when the cause of latched fault ``bit`` is no longer present."""
        if bit == F_OV:
            return out_v <= ov_thr
        if bit == F_OC:
            return out_i <= oc_thr
        if bit == F_OT:
            return t_hot < ot_warn
        return True

    def clear(self, out_v, out_i, t_hot, ov_thr, oc_thr, ot_warn):
        """Fault-clear command: drop the latched faults whose condition is gone."""
        old = self.status
        bit = 1
        while bit <= F_OT:
            if (old & bit) and self.condition_gone(bit, out_v, out_i, t_hot,
                                                   ov_thr, oc_thr, ot_warn):
                self.status &= ~bit
                if bit == F_OC:
                    self.oc_ms = 0
            bit <<= 1
        self.raised = 0
        self.cleared = old & ~self.status
        return self.cleared

    def forget(self):
        """The PSU was removed: a new unit starts with a clean slate."""
        self.cleared = self.status
        self.raised = 0
        self.status = 0
        self.oc_ms = 0
        self.fan_ms = 0
