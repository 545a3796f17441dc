"""The firmware-update loop end to end, in the MicroPython VM on the simulated bus.

A board runs the real firmware (version 1.0, the factory files of the software
rack). The real flasher (``rackctl.flasher``, as ``rackctl flash`` drives it) stages
an ``.mpy`` image whose ``version.py`` says 1.7 over RS-485 Modbus in virtual time;
the board is power-cycled with its flash kept, and its boot loader
(``rackfw.boot`` from ``boards/emulated/main.py``) installs the image: the board then
answers ``fw_version`` 1.7 with reset cause ``update`` and the install in its event
log. A staged image damaged in any way, or transferred but never committed, is
refused: the board boots 1.0 and says so.

One flash per module (about 400 chunks); the other tests boot new VMs from its flash.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rackctl import flasher
from rackhil.bus import Bus
from rackhil.master import Master
from rackhil.transport import HostPort
from rackproto import fwimage
from rackproto.crc import crc16

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tools/ is a repository directory, not an installed package
    sys.path.insert(0, str(ROOT))

from tools.build_image import collect, compile_mpy  # noqa: E402

pytestmark = [
    pytest.mark.slow,
    pytest.mark.vm,
    pytest.mark.timeout(180),
    pytest.mark.skipif(shutil.which("node") is None, reason="needs Node >= 20"),
]

UNIT = 1
CONFIG = {"board": "power_shelf", "unit_id": UNIT}
STAGE = fwimage.STAGING_BASE
NEW = (1, 7)
S_BAD_HEADER, S_BAD_DIGEST, S_UNCOMMITTED = 3, 6, 9  # rackfw.boot
EVU_INSTALLED, EVU_REFUSED = 5, 6  # EV_UPDATE codes of rackfw.boot


class MasterLink:
    """The ModbusLink methods the flasher uses, over the virtual-time bus master."""

    def __init__(self, master: Master) -> None:
        self.m = master

    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
        return self.m.read_registers(unit, table, address, count)

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        if len(values) == 1:
            self.m.write_register(unit, address, values[0])
        else:
            self.m.write_registers(unit, address, values)


class Rack:
    """One VM board on a bus with a master; ``flash`` runs the flasher in bus time."""

    def __init__(self, mcu: Any, name: str, flash: bytes = b"") -> None:
        from rackhil.mcu import VmNode

        self.bus = Bus(seed=11)
        self.node = self.bus.attach(VmNode.emulated(mcu, name, CONFIG, flash=flash))
        self.master = Master(HostPort(self.bus), {UNIT: "power_shelf"}, timeout=0.1, retries=2)

    async def _sleep(self, seconds: float) -> None:
        self.bus.run_until(self.bus.now_us + max(1, round(seconds * 1e6)))

    def flash(self, image: bytes) -> flasher.FlashReport:
        return asyncio.run(flasher.flash(MasterLink(self.master), UNIT, image, None,
                                         sleep=self._sleep, clock=lambda: self.bus.now_us / 1e6))

    def read(self, name: str) -> Any:
        return self.master.read(UNIT, name)

    def version(self) -> tuple[int, int]:
        v = int(self.read("fw_version"))
        return v >> 8, v & 0xFF

    def boot_events(self) -> list[tuple[str, int, int]]:
        """(kind, code, value) of the events logged by the newest boot."""
        events = self.master.events(UNIT, last=12)
        resets = [i for i, e in enumerate(events) if e.kind == "reset"]
        return [(e.kind, e.code, e.value) for e in events[resets[-1]:]]


def new_image() -> bytes:
    """The real power-shelf file set with ``FW_MINOR`` patched, compiled like ``--mpy``."""
    files = collect("power_shelf")
    version = files["lib/rackfw/version.py"].decode()
    patched, n = re.subn(r"^FW_MINOR = const\(\d+\)", f"FW_MINOR = const({NEW[1]})", version,
                         flags=re.M)
    assert n == 1
    files["lib/rackfw/version.py"] = patched.encode()
    return fwimage.build(compile_mpy(files), "power_shelf", NEW)


@pytest.fixture(scope="module")
def mcu() -> Iterator[Any]:
    from rackhil.mcu import McuProcess

    with McuProcess() as proc:
        yield proc


@pytest.fixture(scope="module")
def flashed(mcu: Any) -> dict[str, Any]:
    """Flash the new image into a 1.0 board (not yet rebooted)."""
    image = new_image()
    rack = Rack(mcu, "e2e")
    before = rack.version()
    report = rack.flash(image)
    return {"rack": rack, "image": image, "before": before, "report": report,
            "state": rack.read("update_state"), "dump": rack.node.read_flash()}


def test_power_cycle_after_flashing_runs_the_new_firmware(flashed: dict[str, Any]) -> None:
    rack, image = flashed["rack"], flashed["image"]
    assert flashed["before"] == (1, 0)
    assert flashed["state"] == "ready" and flashed["report"].size == len(image)
    assert flashed["dump"][STAGE : STAGE + len(image)] == image
    at = STAGE + fwimage.commit_offset(len(image))  # the board committed it
    assert flashed["dump"][at : at + 16] == fwimage.commit_record(len(image), crc16(image))

    rack.node.power_cycle(keep_flash=True)
    assert rack.version() == NEW
    assert rack.read("reset_cause") == "update"
    assert rack.read("update_state") == "idle"  # the mailbox starts afresh
    events = rack.boot_events()
    assert events[0] == ("reset", 5, events[0][2])  # EV_RESET(code = cause update)
    assert ("update", EVU_INSTALLED, NEW[0] << 8 | NEW[1]) in events
    # the new modules are the ones running: .mpy, the factory sources they shadow gone
    listing = rack.node.eval("__import__('os').listdir('/lib/rackfw')")
    assert "version.mpy" in listing and "version.py" not in listing


def test_later_boots_stay_on_the_new_firmware(flashed: dict[str, Any]) -> None:
    rack = flashed["rack"]
    rack.node.power_cycle(keep_flash=True)
    assert rack.version() == NEW
    assert rack.read("reset_cause") == "power_on"  # installed once, active since
    assert rack.node.eval("__import__('main').staged") == 2  # S_ACTIVE
    assert not [e for e in rack.boot_events() if e[0] == "update"]


def _flip(dump: bytes, at: int, mask: int = 0x10) -> bytes:
    b = bytearray(dump)
    b[at] ^= mask
    return bytes(b)


def _truncate(dump: bytes, at: int) -> bytes:
    """Staging area as a transfer cut short leaves it: programmed up to ``at`` (and so
    never committed)."""
    b = bytearray(dump)
    b[at : len(b)] = b"\xff" * (len(b) - at)
    return bytes(b)


def _uncommit(dump: bytes, n: int) -> bytes:
    """Every chunk staged but no ``commit`` (the host died): no commit record."""
    b = bytearray(dump)
    at = STAGE + fwimage.commit_offset(n)
    b[at : at + 16] = b"\xff" * 16
    return bytes(b)


@pytest.mark.parametrize("damage,status", [
    (lambda d, n: _flip(d, STAGE + n // 2), S_BAD_DIGEST),  # a byte in a module
    (lambda d, n: _flip(d, STAGE + 10), S_BAD_HEADER),  # the version in the header
    (lambda d, n: _truncate(d, STAGE + n - 128), S_UNCOMMITTED),  # last chunk missing
    (_uncommit, S_UNCOMMITTED),  # complete, SHA-256 fine, never committed
], ids=["payload-byte", "header-byte", "incomplete", "uncommitted"])
def test_a_damaged_staged_image_boots_the_old_firmware_and_says_so(
        mcu: Any, flashed: dict[str, Any], damage: Any, status: int) -> None:
    dump = damage(flashed["dump"], len(flashed["image"]))
    rack = Rack(mcu, f"damaged{status}", flash=dump)
    try:
        assert rack.version() == (1, 0)
        assert rack.read("reset_cause") == "power_on"
        assert rack.read("update_state") == "failed"
        assert rack.read("update_result") == "image_crc"
        assert ("update", EVU_REFUSED, status) in rack.boot_events()
        listing = rack.node.eval("__import__('os').listdir('/lib/rackfw')")
        assert "version.py" in listing and not any(p.endswith(".mpy") for p in listing)
    finally:
        mcu.unload(rack.node.name)


def test_a_source_image_staged_in_flash_is_installed_too(mcu: Any) -> None:
    """``build_image`` without ``--mpy``: the same loop with ``.py`` files (no flasher)."""
    files = collect("power_shelf")
    files["lib/rackfw/version.py"] = re.sub(
        rb"^FW_MINOR = const\(\d+\)", b"FW_MINOR = const(9)", files["lib/rackfw/version.py"],
        flags=re.M)
    image = fwimage.build(files, "power_shelf", (1, 9))
    dump = bytearray(b"\xff" * (256 * 1024))
    dump[STAGE : STAGE + len(image)] = image
    at = STAGE + fwimage.commit_offset(len(image))
    dump[at : at + 16] = fwimage.commit_record(len(image), crc16(image))
    rack = Rack(mcu, "source", flash=bytes(dump))
    try:
        assert rack.version() == (1, 9)
        assert rack.read("reset_cause") == "update"
        fresh = int(rack.node.eval("len(open('/lib/rackfw/version.py').read())"))
        assert fresh == len(files["lib/rackfw/version.py"])
    finally:
        mcu.unload(rack.node.name)
