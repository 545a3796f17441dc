"""The power-shelf application inside the real Board, spoken to over Modbus RTU (CPython, virtual time).

Checks the parts of the App contract that only show end to end: a refused holding
write comes back as the documented Modbus exception and leaves the register alone,
the fault-clear register reaches ``clear_faults``, telemetry is readable with FC 04.
"""

import fwsim
from modbus_client import exception_code, read_req, words, write_single

from rackfw import io_power as io
from rackfw import regs_power_shelf as R
from rackfw.power.app import PowerShelfApp

UNIT = 1


def rig(app, sensors):
    return fwsim.rig(app, sensors, unit_id=UNIT)


def shelf_sensors(present, load_a):
    v = {io.S_FEED1_V: 2300, io.S_FEED2_V: 2300, io.S_BUS_V: 5100, io.S_BUS_I: load_a // 10,
         io.S_BBU_V: 5200, io.S_BBU_T: 250, io.S_BBU_SOC: 1000, io.S_BBU_SOH: 950}
    for i in range(present):
        for m, x in ((io.S_PSU_PRESENT, 1), (io.S_PSU_IN_V, 2300), (io.S_PSU_OUT_V, 5100),
                     (io.S_PSU_OUT_I, load_a // present), (io.S_PSU_T_HOT, 450),
                     (io.S_PSU_FAN_RPM, 9000), (io.S_PSU_AC_OK, 1)):
            v[io.psu_s(i, m)] = x
    return v


def test_switching_off_a_needed_psu_is_refused_with_exception_04():
    sim, t = rig(PowerShelfApp, shelf_sensors(present=2, load_a=9000))
    reply = t.transact(write_single(UNIT, 0x06, R.PSU1_ON_CMD, 0))
    assert exception_code(reply, 0x06) == 4
    assert words(t.transact(read_req(UNIT, 0x03, R.PSU1_ON_CMD, 1))) == [1]
    assert sim.outputs.read(io.psu_o(0, io.O_PSU_ON)) == 1


def test_switching_off_a_spare_psu_is_accepted():
    sim, t = rig(PowerShelfApp, shelf_sensors(present=6, load_a=6000))
    reply = t.transact(write_single(UNIT, 0x06, R.PSU6_ON_CMD, 0))
    assert exception_code(reply, 0x06) is None
    t.idle(300_000)
    assert sim.outputs.read(io.psu_o(5, io.O_PSU_ON)) == 0
    assert words(t.transact(read_req(UNIT, 0x04, R.PSUS_ON, 1))) == [5]


def test_telemetry_and_fault_clear_over_modbus():
    sensors = shelf_sensors(present=6, load_a=6000)
    sensors[io.psu_s(0, io.S_PSU_OUT_V)] = 5900  # above the 57 V OV threshold
    sim, t = rig(PowerShelfApp, sensors)
    status = words(t.transact(read_req(UNIT, 0x04, R.PSU1_STATUS, 1)))[0]
    assert status & R.F_PSU_STATUS_OV
    assert words(t.transact(read_req(UNIT, 0x04, R.DC_V, 2))) == [5100, 600]
    sim.sensors.values[io.psu_s(0, io.S_PSU_OUT_V)] = 0
    t.transact(write_single(UNIT, 0x06, R.FAULT_CLEAR, 1))
    t.idle(300_000)
    assert sim.outputs.read(io.psu_o(0, io.O_PSU_ON)) == 1
    status = words(t.transact(read_req(UNIT, 0x04, R.PSU1_STATUS, 1)))[0]
    assert not status & R.F_PSU_STATUS_OV
