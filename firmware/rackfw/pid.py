"""Integer PID controller for the app tick (no floats: floats are boxed on the MCU).

Why integers: a float multiply allocates on the RP2040 build and in the WebAssembly
VM, and the controllers run every tick for the life of the board.  Gains come
straight from holding registers scaled x0.001, so they are used as-is:

    u = kp * e  +  ki * integral(e dt)  -  kd * d(pv)/dt

with ``kp`` in output units per input unit (register / 1000), ``ki`` in output units
per input unit per second (register / 1000) and ``kd`` in output units per
(input unit per second) (register / 1000).  Internally every term is kept in
"milli-output" units (output x 1000) so the x0.001 gain scale costs nothing.
When the registers state gains in other units than the loop's scaled integers
(e.g. "% valve per degC" while the loop works in 0.1 % and 0.01 degC), ``gain_div``
divides every term once, at the end, so no precision is lost on the way.

Behaviour the callers rely on:

* derivative on the measurement (a setpoint step gives no derivative kick), lightly
  low-pass filtered (1/4 per tick);
* output clamped to ``[out_min, out_max]`` and slew-limited to ``rate`` output units
  per second (``rate = 0``: no slew limit);
* anti-windup by conditional integration: the integrator does not move in the
  direction that would push an already limited (clamped or slew-limited) output
  further, and it is itself bounded to the output span — so after a long
  saturated period the loop recovers at once instead of unwinding;
* bumpless transfer: ``track(out, pv)`` (call it every tick while another source
  owns the actuator, e.g. manual mode or a fail-safe) preloads the integrator so
  the first automatic output equals the current one.

``direct=True`` means the output must rise when the measurement is below the
setpoint (pump speed vs differential pressure); ``direct=False`` is reverse
acting (valve opening vs supply temperature: hotter -> open more).
"""


class Pid:
    def __init__(self, out_min, out_max, rate=0, direct=True, gain_div=1):
        self.gain_div = gain_div
        self.out_min = out_min
        self.out_max = out_max
        self.rate = rate
        self.direct = direct
        self.kp = 0
        self.ki = 0
        self.kd = 0
        self.integ = 0      # milli-output units
        self.irem = 0       # remainder of the integral's division
        self.dterm = 0      # filtered derivative, milli-output units
        self.prev_pv = 0
        self.out = out_min
        self.primed = False

    def set_gains(self, kp, ki, kd):
        """Gains as register values (x0.001)."""
        self.kp = kp
        self.ki = ki
        self.kd = kd

    def set_limits(self, out_min, out_max, rate=-1):
        self.out_min = out_min
        self.out_max = out_max
        if rate >= 0:
            self.rate = rate
        self._bound_integ()

    def _bound_integ(self):
        lo = self.out_min * 1000
        hi = self.out_max * 1000
        if self.integ < lo:
            self.integ = lo
        elif self.integ > hi:
            self.integ = hi

    def _error(self, sp, pv):
        if self.direct:
            return sp - pv
        return pv - sp

    def track(self, out, pv, sp=None):
        """Follow an externally driven output so the next ``update`` is bumpless."""
        if out < self.out_min:
            out = self.out_min
        elif out > self.out_max:
            out = self.out_max
        self.out = out
        self.prev_pv = pv
        self.dterm = 0
        p = 0
        if sp is not None:
            p = (self.kp * self._error(sp, pv)) // self.gain_div
        self.integ = out * 1000 - p
        self._bound_integ()
        self.primed = True

    def reset(self, out=None):
        self.integ = 0
        self.irem = 0
        self.dterm = 0
        self.primed = False
        if out is not None:
            self.out = out

    def update(self, sp, pv, dt_ms):
        """One control step of ``dt_ms`` milliseconds; returns the new output."""
        if dt_ms <= 0:
            return self.out
        if not self.primed:
            self.prev_pv = pv
            self.primed = True
        err = self._error(sp, pv)
        div = self.gain_div
        p = (self.kp * err) // div
        dpv = pv - self.prev_pv
        self.prev_pv = pv
        if not self.direct:
            dpv = -dpv
        d_raw = -(self.kd * dpv * 1000) // (dt_ms * div)
        self.dterm += (d_raw - self.dterm) // 4
        # keep the division remainder so tiny errors still integrate, without bias
        num = self.ki * err * dt_ms + self.irem
        den = 1000 * div
        di = num // den
        irem = num - di * den
        integ = self.integ + di

        lo = self.out_min * 1000
        hi = self.out_max * 1000
        if integ < lo:
            integ = lo
        elif integ > hi:
            integ = hi
        u = (p + integ + self.dterm) // 1000

        limited = u
        if limited > self.out_max:
            limited = self.out_max
        elif limited < self.out_min:
            limited = self.out_min
        if self.rate > 0:
            step = (self.rate * dt_ms) // 1000
            if step < 1:
                step = 1
            if limited > self.out + step:
                limited = self.out + step
            elif limited < self.out - step:
                limited = self.out - step

        # Conditional integration: keep the new integral unless the output is being
        # limited and the integral moved further in the limited direction.
        if not ((limited < u and di > 0) or (limited > u and di < 0)):
            self.integ = integ
            self.irem = irem
        self.out = limited
        return limited
