"""Fixtures for the firmware-core tests: CPython fakes and, when present, the VM.

``bus`` is the conformance fixture: the same Modbus conversation against the
Board under CPython and (``vm`` + ``slow`` marks) in the MicroPython VM through
the rackhil bridge (``VmNode``: JS HAL, virtual time), with the core's TestApp.
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


@pytest.fixture(scope="module")
def mcu_process():
    """One rackhil McuProcess shared by a module's tests (a fresh board VM per test)."""
    mcu = pytest.importorskip("rackhil.mcu")
    with mcu.McuProcess() as proc:
        yield proc


_board_no = 0


def rackhil_bus(mcu_process, unit_id: int = UNIT, baud: int = 115200) -> fwsim.Transactor:
    """The Board + TestApp in a VM behind the rackhil bridge (JS HAL, zero-copy UART)."""
    global _board_no
    from rackhil.mcu import FIRMWARE_DIR, VmNode, firmware_files

    _board_no += 1
    files = firmware_files("rackfw")
    files.update(firmware_files("hal_js.py", root=FIRMWARE_DIR / "boards" / "emulated"))
    files.update(firmware_files("testapp.py", "testmain.py", root=FIXTURES))
    node = VmNode(mcu_process, f"conf{_board_no}", files, main="testmain",
                  config={"unit_id": unit_id, "baud": baud}, start_us=1_000_000)
    return fwsim.Transactor(node, round(11_000_000 / baud), lambda: node.now_us)


VM = [pytest.mark.vm, pytest.mark.slow]


@pytest.fixture(params=["cpython", pytest.param("vm", marks=VM)])
def bus(request):
    """The conformance bus: the Board under CPython, or in the VM behind the rackhil bridge."""
    if request.param == "cpython":
        yield cpython_bus()
        return
    proc = request.getfixturevalue("mcu_process")
    b = rackhil_bus(proc)
    yield b
    proc.unload(b.node.name)


@pytest.fixture(params=["cpython", pytest.param("vm", marks=VM)])
def bus_at(request):
    """A factory ``bus_at(baud)`` for the conformance bus at another line speed
    (same two runtimes as ``bus``); every board it makes is unloaded afterwards."""
    made = []

    def make(baud: int) -> fwsim.Transactor:
        if request.param == "cpython":
            return cpython_bus(baud=baud)
        b = rackhil_bus(request.getfixturevalue("mcu_process"), baud=baud)
        made.append(b)
        return b

    yield make
    for b in made:
        b.node.mcu.unload(b.node.name)
