"""The CDU's two control loops and what drives the actuators in each mode.

Loops (integer PIDs, gains x0.001 straight from the protected registers):

* temperature: secondary supply temperature (0.01 degC) -> facility valve
  (0.1 %), reverse acting (too warm -> open the valve further).  Register gains are
  "% valve per degC", i.e. 10 loop units per 100: ``gain_div = 10``;
* pressure: differential pressure (0.1 kPa) -> lead pump speed (0.1 %), direct
  acting; register gains "% speed per kPa" are 10 loop units per 10: ``gain_div = 1``.
  Never below ``PUMP_MIN`` while in auto, so the loop cannot stop the flow.

Actuators per mode (documented fail-safe behaviour):

=========  ===================  =====================
mode       pump speed           facility valve
=========  ===================  =====================
STANDBY    0                    safe position
AUTO       pressure loop        temperature loop
MANUAL     manual register      manual register
FAULT      safe speed           safe position  (sensor fault, both pumps failed)
FAULT+leak 0                    closed         (isolation)
=========  ===================  =====================

Whenever the loops are not in control they track the actuators, so the hand-over
to AUTO (from manual, or after a fault is cleared) is bumpless.
"""

from micropython import const

from rackfw.cooling.modes import AUTO, FAULT, MANUAL
from rackfw.pid import Pid

PUMP_MIN = const(200)        # 0.1 %: minimum auto speed
PUMP_MAX = const(1000)
VALVE_MIN = const(0)
VALVE_MAX = const(1000)
PUMP_RATE = const(100)       # 0.1 %/s slew: 10 %/s
VALVE_RATE = const(200)      # 0.1 %/s slew: 20 %/s


class CduControl:
    def __init__(self):
        self.t_pid = Pid(VALVE_MIN, VALVE_MAX, VALVE_RATE, False, 10)
        self.dp_pid = Pid(PUMP_MIN, PUMP_MAX, PUMP_RATE, True, 1)
        self.valve = 0
        self.speed = 0

    def set_gains(self, t_kp, t_ki, t_kd, dp_kp, dp_ki, dp_kd):
        self.t_pid.set_gains(t_kp, t_ki, t_kd)
        self.dp_pid.set_gains(dp_kp, dp_ki, dp_kd)

    def step(self, mode, isolate, dt_ms, t_sp, t_pv, dp_sp, dp_pv,
             man_speed, man_valve, safe_speed, safe_valve):
        """Compute ``self.valve`` and ``self.speed`` (0.1 %) for this tick.

        In AUTO the caller guarantees ``t_pv``/``dp_pv`` passed the sensor checks
        (a bad control input puts the unit in FAULT before this is called).
        """
        if mode == AUTO:
            self.valve = self.t_pid.update(t_sp, t_pv, dt_ms)
            self.speed = self.dp_pid.update(dp_sp, dp_pv, dt_ms)
            return
        if mode == MANUAL:
            self.valve = man_valve
            self.speed = man_speed
        elif mode == FAULT and isolate:
            self.valve = 0
            self.speed = 0
        elif mode == FAULT:
            self.valve = safe_valve
            self.speed = safe_speed
        else:
            self.valve = safe_valve
            self.speed = 0
        # not in control: follow the actuators for a bumpless return to AUTO
        self.t_pid.track(self.valve, t_pv, t_sp)
        self.dp_pid.track(self.speed, dp_pv, dp_sp)
