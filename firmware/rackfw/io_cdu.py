"""Sensor and output channels of the coolant distribution unit (CDU) controller.

The sensors HAL (``sensors.read(ch) -> int``) returns *scaled integer engineering
values*; the outputs HAL (``outputs.write(ch, v)``) takes the same kind of values.
This module is the single place that says which channel carries what and in which
unit, so the firmware application, the board files and the plant models of the
software rack agree.  Keep channel numbers stable.

Channel 0 is the board's own temperature on every board type.  Pump channels are a
repeated block: for pump ``i`` (0-based; pump 1 on the panel is ``i = 0``) the sensor
channel is ``S_PUMP_BASE + i * S_PUMP_STRIDE + S_PUMP_<MEMBER>`` and the speed command
is ``O_PUMP_BASE + i``.

Units (all ints)
----------------
* temperatures 0.01 degC (signed)
* pressures 0.1 kPa gauge, differential pressure 0.1 kPa
* flow 0.1 L/min
* level, valve position, pump speed command 0.1 % (0..1000)
* pump speed feedback rpm, pump current 0.01 A
* leak: bit mask, bit ``i`` set = zone ``i`` wet (zone order = the leak flags in the
  register map: ``LEAK_*`` below)

A failed analogue input reads ``SENSOR_OPEN`` (open circuit: the ADC rails high) or
``SENSOR_SHORT`` (short circuit); the plant models inject faults with the same values.
``RANGE_*`` pairs give the physically plausible span of each transmitter; a reading
outside it is treated as a sensor fault by the firmware.
"""

from micropython import const

PUMP_COUNT = const(2)
LEAK_ZONES = const(4)

SENSOR_OPEN = const(32767)
SENSOR_SHORT = const(-32768)

# leak zones (bit numbers in S_LEAK and in the leak flags register)
LEAK_CDU_TRAY = const(0)      # drip tray under the CDU itself
LEAK_MANIFOLD = const(1)      # rack manifold
LEAK_RACK_A = const(2)        # rack A cold plates
LEAK_RACK_B = const(3)        # rack B cold plates

# ---- sensors ---------------------------------------------------------------
S_BOARD_T = const(0)          # 0.1 degC, controller board temperature

S_T_SUPPLY = const(1)         # 0.01 degC, secondary (IT side) supply temperature
S_T_RETURN = const(2)         # 0.01 degC, secondary return temperature
S_T_FAC_IN = const(3)         # 0.01 degC, facility water inlet
S_T_FAC_OUT = const(4)        # 0.01 degC, facility water outlet
S_FLOW = const(5)             # 0.1 L/min, secondary flow
S_P_SUPPLY = const(6)         # 0.1 kPa, secondary supply pressure
S_P_RETURN = const(7)         # 0.1 kPa, secondary return pressure
S_DP = const(8)               # 0.1 kPa, optional DP transmitter; the firmware derives dp
                              # from S_P_SUPPLY - S_P_RETURN and does not read this channel
S_LEVEL = const(9)            # 0.1 %, reservoir level
S_VALVE_FB = const(10)        # 0.1 %, facility valve position feedback
S_LEAK = const(11)            # bit mask of wet zones

S_PUMP_BASE = const(16)
S_PUMP_STRIDE = const(4)
S_PUMP_RPM = const(0)         # rpm, tachometer
S_PUMP_I = const(1)           # 0.01 A, motor current

SENSOR_COUNT = const(24)

# ---- outputs ---------------------------------------------------------------
O_PUMP_BASE = const(0)        # + pump index: speed command, 0.1 % (0 = stopped)
O_VALVE = const(4)            # 0.1 %, facility valve command (0 closed .. 1000 open)
O_ALARM = const(5)            # 1 = alarm relay / beacon

OUTPUT_COUNT = const(6)

# ---- ratings --------------------------------------------------------------------
PUMP_RPM_MAX = const(3600)    # rpm at 100 % speed command
PUMP_I_MAX = const(1200)      # 0.01 A: a pump drawing more than this is over-current

# ---- plausible ranges of the analogue transmitters (same units as above) -----
RANGE_T_MIN = const(-1000)    # -10 degC
RANGE_T_MAX = const(9000)     # 90 degC
RANGE_P_MIN = const(0)
RANGE_P_MAX = const(10000)    # 1000 kPa
RANGE_DP_MIN = const(-500)
RANGE_DP_MAX = const(5000)    # 500 kPa
RANGE_FLOW_MIN = const(0)
RANGE_FLOW_MAX = const(20000)  # 2000 L/min
RANGE_LEVEL_MIN = const(0)
RANGE_LEVEL_MAX = const(1000)


def pump_s(pump, member):
    """Sensor channel of ``member`` for 0-based ``pump`` (init-time helper)."""
    return S_PUMP_BASE + pump * S_PUMP_STRIDE + member
