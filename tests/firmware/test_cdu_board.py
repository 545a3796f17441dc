"""The CDU application inside the real Board, over Modbus RTU (CPython, virtual time)."""

import fwsim
import pytest
from modbus_client import exception_code, read_req, words, write_single

from rackfw import io_cdu
from rackfw import regs_cdu as RC
from rackfw.cooling import modes as M
from rackfw.cooling.app import CduApp

UNIT = 1


def rig(app, sensors):
    return fwsim.rig(app, sensors, unit_id=UNIT)


@pytest.mark.parametrize("mode", [M.STANDBY, M.MANUAL, M.AUTO])
def test_cdu_mode_command_over_modbus(mode):
    sensors = {io_cdu.S_T_SUPPLY: 3000, io_cdu.S_P_SUPPLY: 2500, io_cdu.S_P_RETURN: 1500,
               io_cdu.S_FLOW: 3000, io_cdu.S_LEVEL: 800}
    sim, t = rig(CduApp, sensors)
    assert words(t.transact(read_req(UNIT, 0x04, RC.MODE, 1))) == [M.AUTO]
    reply = t.transact(write_single(UNIT, 0x06, RC.MODE_CMD, mode))
    assert exception_code(reply, 0x06) is None
    t.idle(200_000)
    assert words(t.transact(read_req(UNIT, 0x04, RC.MODE, 1))) == [mode]
