"""Lead/lag pump pair: one pump runs, the other stands by."""

# (Comments, not a docstring: run from source, MicroPython keeps a docstring in heap.)
#
# * The lead pump gets the speed demand; the lag pump is commanded to 0.
# * Lead failure: commanded but not turning — the tach stays below ``NO_TACH_RPM``
#   or below half the speed the command asks for (a dead pump coasting down is caught
#   long before it stops) — for the failover delay (a register; it must cover
#   spin-up), or motor current above the over-current limit (``pump_oc_limit``
#   register) for the same delay.  The failed pump is latched off and the lag pump takes the lead in
#   the same tick with the same demand, so flow is back within a few seconds
#   (detection time + the pump's spin-up).
# * Rotation by run hours: when the lead has run ``rotate_s`` seconds (the
#   ``rotate_hours`` register, default ``ROTATE_S`` = 24 h) more than a healthy lag
#   pump, they swap (equal wear; the stand-by pump is exercised).  ``rotate_s = 0``
#   disables rotation (fixed lead).
# * Run time is counted while a pump actually turns (tach above ``NO_TACH_RPM``), in
#   whole seconds so it stays a small int for decades; ``runhours.py`` persists it.
#
# Pump failure flags (``PF_*``) are latched until ``clear()``; a failed pump is never
# chosen as lead.  When both pumps have failed, ``all_failed()`` tells the app to go
# to the fault mode.


from micropython import const

from rackfw.io_cdu import PUMP_RPM_MAX

PF_NO_TACH = const(0x01)
PF_OC = const(0x02)

NO_TACH_RPM = const(200)
ROTATE_S = const(24 * 3600)


class PumpPair:
    def __init__(self):
        self.lead = 0
        self.cmd = [0, 0]
        self.rpm = [0, 0]
        self.cur = [0, 0]
        self.fail = [0, 0]
        self.run_s = [0, 0]
        self._run_ms = [0, 0]
        self._notach_ms = [0, 0]
        self._oc_ms = [0, 0]
        self.failover = False   # the lead changed because of a failure in the last update
        self.rotated = False    # the lead changed because of rotation in the last update

    def set_run_s(self, i, s):
        """Set pump ``i``'s run time (restored from the config, or preset by the operator)."""
        self.run_s[i] = s
        self._run_ms[i] = 0

    def sample(self, i, rpm, cur):
        self.rpm[i] = rpm
        self.cur[i] = cur

    def _supervise(self, i, dt_ms, oc_limit, fail_ms):
        cmd = self.cmd[i]
        low = cmd * PUMP_RPM_MAX // 2000     # half the commanded speed (cmd in 0.1 %)
        if low < NO_TACH_RPM:
            low = NO_TACH_RPM
        if cmd > 0 and self.rpm[i] < low:
            self._notach_ms[i] += dt_ms
            if self._notach_ms[i] >= fail_ms:
                self.fail[i] |= PF_NO_TACH
        else:
            self._notach_ms[i] = 0
        if oc_limit > 0 and self.cur[i] > oc_limit:
            self._oc_ms[i] += dt_ms
            if self._oc_ms[i] >= fail_ms:
                self.fail[i] |= PF_OC
        else:
            self._oc_ms[i] = 0
        if self.rpm[i] >= NO_TACH_RPM:
            ms = self._run_ms[i] + dt_ms
            while ms >= 1000:
                ms -= 1000
                self.run_s[i] += 1
            self._run_ms[i] = ms

    def update(self, dt_ms, demand, oc_limit, fail_ms, rotate_s):
        """Supervise both pumps and command ``demand`` (0.1 %) to the lead."""
        self.failover = False
        self.rotated = False
        self._supervise(0, dt_ms, oc_limit, fail_ms)
        self._supervise(1, dt_ms, oc_limit, fail_ms)
        lead = self.lead
        lag = 1 - lead
        if self.fail[lead] and not self.fail[lag]:
            self.lead = lag
            self.failover = True
        elif (rotate_s > 0 and demand > 0 and not self.fail[lag]
              and self.run_s[lead] - self.run_s[lag] >= rotate_s):
            self.lead = lag
            self.rotated = True
        lead = self.lead
        for i in range(2):
            if i == lead and not self.fail[i]:
                if self.cmd[i] == 0:
                    self._notach_ms[i] = 0
                self.cmd[i] = demand
            else:
                self.cmd[i] = 0
        return self.lead

    def stop(self):
        self.cmd[0] = 0
        self.cmd[1] = 0

    def all_failed(self):
        return self.fail[0] != 0 and self.fail[1] != 0

    def select_lead(self, i):
        """Operator choice of the lead pump; refused (False) if that pump has failed."""
        if self.fail[i]:
            return False
        self.lead = i
        return True

    def clear(self):
        """Fault-clear: forget the latched pump failures (a still-broken pump fails again)."""
        cleared = (1 if self.fail[0] else 0) | (2 if self.fail[1] else 0)
        for i in range(2):
            self.fail[i] = 0
            self._notach_ms[i] = 0
            self._oc_ms[i] = 0
        return cleared
