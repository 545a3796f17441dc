"""CDU operating mode machine: standby / auto / manual / fault.

* ``STANDBY``: pumps stopped, facility valve at its safe position.
* ``AUTO``: the PID loops drive the valve (supply temperature) and the lead pump
  (differential pressure).
* ``MANUAL``: the manual pump speed and valve position registers drive the
  actuators; the PID loops track them so the return to auto is bumpless.
* ``FAULT``: entered by the board only, never commanded.  Causes (``FC_*``): a
  sensor the auto loops need went bad (fail-safe: pumps at the safe speed, valve at
  the safe position — never act on a bad reading), a leak in a zone of the isolate
  mask (isolation: pumps off, valve closed), both pumps failed.

The operator's mode command register holds the *requested* mode (persisted); it is
applied at once unless the unit is in ``FAULT``, in which case it is remembered and
applied when the fault-clear command succeeds (``recover``) — so a CDU never
restarts pumps into a leak by itself.  Every transition is logged as ``EV_MODE``
with code = new mode, value = previous mode.
"""

from micropython import const

from rackfw.events import EV_MODE

STANDBY = const(0)
AUTO = const(1)
MANUAL = const(2)
FAULT = const(3)

FC_SENSOR = const(0x01)
FC_LEAK = const(0x02)
FC_PUMPS = const(0x04)


class ModeMachine:
    def __init__(self, events):
        self.events = events
        self.mode = STANDBY
        self.requested = STANDBY
        self.causes = 0          # FC_* bits that put (and keep) the unit in FAULT

    def _go(self, new):
        if new != self.mode:
            old = self.mode
            self.mode = new
            self.events.log(EV_MODE, new, old)

    def request(self, new):
        """Operator mode command; returns 0 or Modbus exception 03 for a bad value."""
        if new < STANDBY or new > MANUAL:
            return 3
        self.requested = new
        if self.mode != FAULT:
            self._go(new)
        return 0

    def fault(self, cause):
        self.causes |= cause
        self._go(FAULT)

    def recover(self, still_present):
        """Fault-clear: leave FAULT if none of its causes is still present."""
        self.causes &= still_present
        if self.mode == FAULT and not self.causes:
            self._go(self.requested)
            return True
        return False
