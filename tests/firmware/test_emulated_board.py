"""The real firmware image (boards/emulated + both apps) over the rackhil VM bridge.

Smoke-level conformance through ``rackhil.mcu.VmNode`` (the bridge the software
rack uses) with the real apps, complementing the conformance suite (TestApp).
"""

from __future__ import annotations

import modbus_client as mb
import pytest
from fwsim import Transactor

pytestmark = [pytest.mark.vm, pytest.mark.slow]

mcu_mod = pytest.importorskip("rackhil.mcu")


@pytest.mark.parametrize("kind,board_type", [("power_shelf", 1), ("cdu", 2)])
def test_emulated_board_answers_modbus(kind, board_type):
    with mcu_mod.McuProcess() as mcu:
        node = mcu_mod.VmNode.emulated(mcu, kind, config={"board": kind, "unit_id": 9, "baud": 115200})
        bus = Transactor(node, 11_000_000 // 115200, lambda: node.now_us)
        ident = mb.words(bus.transact(mb.read_req(9, 4, 0, 28)))
        assert b"".join(w.to_bytes(2, "big") for w in ident[0:8]).rstrip(b"\0") == b"rackctl"
        assert ident[26] == board_type
        echo = mb.diag_req(9, 0, b"\x12\x34")
        assert bus.transact(echo) == echo
        assert mb.devid_objects(bus.transact(mb.devid_req(9, 1, 0)))[0] == b"rackctl"
        assert mb.exception_code(bus.transact(mb.read_req(9, 3, 0, 126)), 3) == 3
        assert bus.transact(mb.read_req(10, 3, 0, 1)) is None
        bus.idle(3_000_000)  # the watchdog is fed: no reset over 3 virtual seconds
        assert node.resets == []
        up = mb.words(bus.transact(mb.read_req(9, 4, 28, 2)))
        assert 2 <= (up[0] << 16 | up[1]) <= 4
