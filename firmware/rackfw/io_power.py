"""Sensor and output channels of the power-shelf controller board.

The sensors HAL (``sensors.read(ch) -> int``) returns *scaled integer engineering
values*; the outputs HAL (``outputs.write(ch, v)``) takes the same kind of values.
This module is the single place that says which channel carries what and in which
unit, so the firmware application, the board files (real ADC/PMBus drivers) and the
plant models of the software rack all agree.  Keep channel numbers stable: plant
models and recorded scenarios depend on them.

Layout
------
Channel 0 is the board's own temperature on every board type (the board core
publishes it).  Per-PSU channels are a repeated block: for PSU slot ``i``
(0-based, slot 1 on the front panel is ``i = 0``) the channel is
``S_PSU_BASE + i * S_PSU_STRIDE + S_PSU_<MEMBER>``; outputs likewise with
``O_PSU_BASE``/``O_PSU_STRIDE``.

Units (all ints)
----------------
* AC voltage 0.1 V, AC current 0.01 A
* DC voltage 0.01 V, PSU DC current 0.01 A, bus/BBU current 0.1 A
* temperatures 0.1 degC
* fan speed rpm; fan duty percent (0..100)
* state of charge / health 0.1 %; line frequency 0.01 Hz
* present / enable flags 0 or 1

A failed or disconnected analogue input reads ``SENSOR_OPEN`` (the ADC rails high)
and a shorted one ``SENSOR_SHORT``; the plant models use the same sentinels to
inject open/short faults.
"""

from micropython import const

PSU_COUNT = const(6)

SENSOR_OPEN = const(32767)
SENSOR_SHORT = const(-32768)

# ---- sensors ---------------------------------------------------------------
S_BOARD_T = const(0)          # 0.1 degC, controller board temperature

S_FEED1_V = const(1)          # 0.1 V AC, feed A (0 when lost)
S_FEED1_I = const(2)          # 0.01 A AC, feed A
S_FEED2_V = const(3)          # 0.1 V AC, feed B
S_FEED2_I = const(4)          # 0.01 A AC, feed B

S_BUS_V = const(5)            # 0.01 V DC, shelf output bus
S_BUS_I = const(6)            # 0.1 A DC, shelf output bus (load current)

S_BBU_V = const(7)            # 0.01 V DC, battery pack
S_BBU_I = const(8)            # 0.1 A, signed: > 0 charging, < 0 discharging into the bus
S_BBU_T = const(9)            # 0.1 degC, battery pack
S_BBU_SOC = const(10)         # 0.1 %, state of charge from the pack's fuel gauge
S_BBU_SOH = const(11)         # 0.1 %, state of health from the pack's fuel gauge
S_FEED1_HZ = const(12)        # 0.01 Hz, feed A line frequency
S_FEED2_HZ = const(13)        # 0.01 Hz, feed B line frequency

S_PSU_BASE = const(16)
S_PSU_STRIDE = const(10)
# member offsets inside one PSU slot block
S_PSU_PRESENT = const(0)      # 1 when a PSU is seated in the slot (presence pin)
S_PSU_IN_V = const(1)         # 0.1 V AC, PSU input
S_PSU_IN_I = const(2)         # 0.01 A AC, PSU input
S_PSU_OUT_V = const(3)        # 0.01 V DC, PSU output
S_PSU_OUT_I = const(4)        # 0.01 A DC, PSU output
S_PSU_T_INLET = const(5)      # 0.1 degC, PSU inlet air
S_PSU_T_HOT = const(6)        # 0.1 degC, PSU hot spot (secondary heatsink)
S_PSU_FAN_RPM = const(7)      # rpm, PSU fan tachometer
S_PSU_AC_OK = const(8)        # 1 when the PSU reports its AC input good

SENSOR_COUNT = const(76)      # S_PSU_BASE + PSU_COUNT * S_PSU_STRIDE

# ---- outputs ---------------------------------------------------------------
O_PSU_BASE = const(0)
O_PSU_STRIDE = const(4)
O_PSU_ON = const(0)           # 1 = PSU output enabled
O_PSU_VSET = const(1)         # 0.01 V DC, output voltage setpoint
O_PSU_ILIM = const(2)         # 0.01 A DC, output current limit (derating lowers it)
O_PSU_FAN = const(3)          # %, fan duty command (firmware keeps >= a minimum while on)

O_BBU_ENABLE = const(24)      # 1 = BBU armed: carries the bus when both feeds are lost
O_BBU_CHARGE_I = const(25)    # 0.1 A, charge current limit (0 = not charging)
O_ALARM = const(26)           # 1 = shelf alarm relay / front LED

OUTPUT_COUNT = const(27)

# ---- ratings (shared with the plant models) ---------------------------------------
PSU_RATED_I = const(6000)     # 0.01 A: rated output current of one PSU (60 A)
PSU_RATED_W = const(3000)     # W: rated output power of one PSU
PSU_FAN_RPM_MAX = const(20000)  # rpm at 100 % fan duty
BBU_CAPACITY_WH = const(1500)  # Wh of a new, full pack (runtime estimate)


def psu_s(slot, member):
    """Sensor channel of ``member`` for 0-based PSU ``slot`` (init-time helper)."""
    return S_PSU_BASE + slot * S_PSU_STRIDE + member


def psu_o(slot, member):
    """Output channel of ``member`` for 0-based PSU ``slot`` (init-time helper)."""
    return O_PSU_BASE + slot * O_PSU_STRIDE + member
