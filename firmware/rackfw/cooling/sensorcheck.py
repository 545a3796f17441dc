"""Plausibility checks for the CDU's analogue transmitters.

A controller must not act on a bad reading, so every sample passes through here
first.  Faults detected (``KIND_*``, reported per sensor):

* open circuit: the input reads ``SENSOR_OPEN`` (ADC at the top rail);
* short circuit: the input reads ``SENSOR_SHORT``;
* out of range: outside the transmitter's plausible span (``RANGE_*`` in io_cdu);
* stuck: the reading has not changed by a single count for ``STUCK_MS`` although
  the actuator that drives it has moved by at least ``STUCK_ACT_DELTA`` since the
  last change.  A live transmitter always shows some movement when its actuator
  moves; requiring that movement keeps a quiet, steady process from being flagged.
  Sensors without a driving actuator pass ``act = -1`` and are never called stuck.

A fault is raised on the first bad sample (fail-safe is the safe direction) and
cleared only after ``RECOVER_MS`` of good samples, so a flickering input does not
make the loops chatter between fail-safe and control.
"""

from micropython import const

from rackfw.io_cdu import SENSOR_OPEN, SENSOR_SHORT

KIND_OK = const(0)
KIND_OPEN = const(1)
KIND_SHORT = const(2)
KIND_RANGE = const(3)
KIND_STUCK = const(4)

STUCK_MS = const(60000)
STUCK_ACT_DELTA = const(100)   # 0.1 % of actuator travel
RECOVER_MS = const(2000)
_AGE_CAP = const(1 << 28)


class SensorCheck:
    """State for ``n`` sensors, addressed by index 0..n-1."""

    def __init__(self, n):
        self.n = n
        self.lo = [0] * n
        self.hi = [0] * n
        self.last = [0] * n
        self.same_ms = [0] * n
        self.act_ref = [0] * n
        self.good_ms = [0] * n
        self.kind = bytearray(n)
        self.mask = 0            # bit i set while sensor i is faulted

    def configure(self, i, lo, hi):
        self.lo[i] = lo
        self.hi[i] = hi

    def _sample_kind(self, i, v, dt_ms, act):
        if v == SENSOR_OPEN:
            return KIND_OPEN
        if v == SENSOR_SHORT:
            return KIND_SHORT
        if v < self.lo[i] or v > self.hi[i]:
            return KIND_RANGE
        if v != self.last[i] or act < 0:
            self.last[i] = v
            self.same_ms[i] = 0
            self.act_ref[i] = act
            return KIND_OK
        if self.same_ms[i] < _AGE_CAP:
            self.same_ms[i] += dt_ms
        if self.same_ms[i] >= STUCK_MS:
            d = act - self.act_ref[i]
            if d >= STUCK_ACT_DELTA or d <= -STUCK_ACT_DELTA:
                return KIND_STUCK
        return KIND_OK

    def check(self, i, v, dt_ms, act):
        """Check one sample of sensor ``i``; returns True when it may be used."""
        k = self._sample_kind(i, v, dt_ms, act)
        bit = 1 << i
        if k != KIND_OK:
            self.kind[i] = k
            self.good_ms[i] = 0
            self.mask |= bit
            return False
        if self.mask & bit:
            self.good_ms[i] += dt_ms
            if self.good_ms[i] < RECOVER_MS:
                return False
            self.kind[i] = KIND_OK
            self.mask &= ~bit
        return True

    def ok(self, i):
        return not (self.mask & (1 << i))
