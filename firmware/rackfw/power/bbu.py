"""Battery backup unit (BBU) supervision: mode, charging, cycle counting.

The BBU is armed (``O_BBU_ENABLE``) whenever it is healthy; the hardware itself
picks up the bus within microseconds when both AC feeds are gone — far faster than a
control tick — so the firmware does not switch it in, it *observes* it and reports
the mode.  What the firmware does decide is charging: on AC, charge until the fuel
gauge says ``SOC_FULL``, then rest until it falls below ``SOC_RECHARGE`` (hysteresis
so a full pack is not trickle-cycled).  After any discharge the pack is topped up
to 100 % (``SOC_TOP``) however short the outage was.

Modes (values of the BBU mode enum register):
``MODE_IDLE`` on AC and full, ``MODE_CHARGING`` on AC and charging,
``MODE_DISCHARGING`` carrying the load (both feeds lost, or the pack current shows
discharge), ``MODE_FAULT`` pack temperature outside its window, pack voltage absent
or health below ``SOH_MIN``.

A discharge that ends (AC back) counts one cycle.
"""

from micropython import const

MODE_IDLE = const(0)
MODE_CHARGING = const(1)
MODE_DISCHARGING = const(2)
MODE_FAULT = const(3)

SOC_FULL = const(980)        # 0.1 %
SOC_RECHARGE = const(950)    # 0.1 %
SOC_TOP = const(1000)        # 0.1 %: charge target after a discharge
SOH_MIN = const(600)         # 0.1 %
T_MIN = const(0)             # 0.1 degC: no charging below freezing
T_MAX = const(600)           # 0.1 degC
V_MIN = const(3000)          # 0.01 V: below this the pack is absent/dead
DISCHARGE_I = const(5)       # 0.1 A: discharge current above this counts as discharging
CHARGE_I_DEFAULT = const(50)  # 0.1 A


class Bbu:
    def __init__(self):
        self.mode = MODE_IDLE
        self.charging = False
        self.target = SOC_FULL
        self.cycles = 0
        self.changed = False   # mode changed in the last update()

    def update(self, ac_present, v, i, t, soc, soh):
        """Decide the mode from one sample (``i`` > 0 charging, < 0 discharging)."""
        old = self.mode
        if v < V_MIN or t < T_MIN or t > T_MAX or soh < SOH_MIN:
            mode = MODE_FAULT
            self.charging = False
        elif not ac_present or i < -DISCHARGE_I:
            mode = MODE_DISCHARGING
            self.charging = False
        else:
            if old == MODE_DISCHARGING:
                self.cycles += 1
                self.target = SOC_TOP
                self.charging = True
            if soc < SOC_RECHARGE:
                self.charging = True
            elif soc >= self.target:
                self.charging = False
                self.target = SOC_FULL
            mode = MODE_CHARGING if self.charging else MODE_IDLE
        self.changed = mode != old
        self.mode = mode
        return mode

    def enable(self):
        """Whether the pack should be armed to carry the bus."""
        return 1 if self.mode != MODE_FAULT else 0

    def charge_current(self, limit):
        """Charge current command (0.1 A) for this tick."""
        if self.mode == MODE_CHARGING:
            return limit
        return 0
