"""Fixtures for the firmware-core tests: CPython fakes and, when present, the VM.

``bus`` is the conformance fixture: the same Modbus conversation against the
Board under CPython and (``vm`` + ``slow`` marks) in the MicroPython VM.
"""

from __future__ import annotations

import sys
from pathlib import Path

import fwsim
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
if str(FIXTURES) not in sys.path:
    sys.path.insert(0, str(FIXTURES))

UNIT = 7


@pytest.fixture
def flash() -> fwsim.FakeFlash:
    return fwsim.FakeFlash()


def cpython_bus(unit_id: int = UNIT, baud: int = 115200, **kw) -> fwsim.Transactor:
    """A Transactor on a CPython Board (kw: app, flash, start_us, board_kwargs)."""
    from testapp import TestApp

    sim = fwsim.SimBoard(app=kw.pop("app", TestApp), unit_id=unit_id, baud=baud, **kw)
    t = fwsim.Transactor(sim, sim.byte_us, lambda: sim.now)
    t.sim = sim  # type: ignore[attr-defined]
    return t


@pytest.fixture(params=["cpython", pytest.param("vm", marks=[pytest.mark.vm, pytest.mark.slow])])
def bus(request):
    if request.param == "cpython":
        yield cpython_bus()
        return
    vmbus = pytest.importorskip("vmbus")
    with vmbus.open_bus(unit_id=UNIT) as b:
        yield b
