"""Event kinds written to the event log (shared by the board core and the apps).

The numbers are part of the wire format (the event-log window registers show
them to the host), so they never change meaning; new kinds are appended.
"""

from micropython import const

EV_RESET = const(1)  # code: reset cause, value: boot counter (low 16 bits)
EV_FAULT_RAISED = const(2)  # code/value: app-defined fault id / measured value
EV_FAULT_CLEARED = const(3)
EV_CONFIG = const(4)  # code: CFG_*, value: config sequence (low 16 bits)
EV_UNLOCK = const(5)  # code: UNLOCK_*, value: 0
EV_UPDATE = const(6)
EV_MODE = const(7)
EV_HOTSWAP = const(8)
EV_WARNING = const(9)
EV_ALARM = const(10)

# EV_CONFIG codes
CFG_SAVED = const(1)
CFG_LOADED = const(2)
CFG_DEFAULTS = const(3)  # no valid copy (or from another map layout): defaults used
CFG_SAVE_FAILED = const(4)

# EV_UNLOCK codes
UNLOCK_GRANTED = const(1)
UNLOCK_EXPIRED = const(2)
UNLOCK_LOCKED = const(3)  # locked on request (key register written with 0)
UNLOCK_BAD_KEY = const(4)

# EV_RESET codes (reset cause, as told by the board file)
RESET_POWER_ON = const(1)
RESET_WATCHDOG = const(2)
RESET_BROWNOUT = const(3)
RESET_SOFT = const(4)
