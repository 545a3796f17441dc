"""RAM budget of the real boards, measured in the MicroPython WebAssembly VM.

Why measured and asserted here: the VM does not enforce a heap size (it grows to
~134 MB), so a board that would run out of RAM on an RP2040 works in every other
test. An RP2040 running MicroPython has ~190 KB of GC heap for everything (imports, the
compiler, buffers, the board). The budgets below are stated against that:

* ``BOOT_BUDGET`` = 95 KB — live heap of a booted board (core + generated tables +
  application + JS HAL), every module compiled **from source** in the VM, which is
  the worst case (``mpremote cp`` of .py files): half the RP2040 heap, leaving the
  other half for the compiler's transient parse trees, a `rackctl flash` session
  and fragmentation. A frozen image keeps bytecode and names in flash and needs far
  less (docs/firmware-memory.md);
* ``PEAK_BUDGET`` = 99 KB — the largest live heap sampled while the board answers a
  few thousand Modbus requests (every function code, persisted writes that reach
  flash) and runs its control tick: boot plus 4 KB.

``test_boards_boot_and_serve_within_budget`` boots each real board the way the
software rack does (``VmNode.emulated``: ``boards/emulated/main.py``, JS HAL), from
source and from ``.mpy``.
``test_precompiled_mpy_boots_the_same_boards_in_less_heap`` boots the same boards
from ``.mpy`` files (``VmNode.emulated(..., firmware="mpy")``: mpy-cross output written
into the VM's filesystem as binary) and asserts they need at least 10 KB less heap
than from source. Figures go to ``artifacts/ram_budget.json`` and
``docs/firmware-memory.md`` explains them.

The last tests check the RP2040 board file's flash HALs (config + event log + a
128 KiB update staging area) against the NOR contract, under CPython with stand-ins
for ``machine`` and ``rp2``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from rackproto.crc import check, with_crc
from rackproto.regmap import load

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
PKG = ROOT / "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"

KB = 1024
RP2040_HEAP = 190 * KB
BOOT_BUDGET = RP2040_HEAP // 2  # 95 KB
PEAK_BUDGET = BOOT_BUDGET + 4 * KB
UNIT = 1
BAUD = 115200
BYTE_US = round(11e6 / BAUD)
ROUNDS = 150  # x len(requests) requests per board: a few thousand
BOARDS = ("power_shelf", "cdu")


def _figures(**update: object) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / "ram_budget.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data.update(update)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _pdu(fc: int, *words: int, tail: bytes = b"") -> bytes:
    body = bytes([UNIT, fc]) + b"".join(w.to_bytes(2, "big") for w in words) + tail
    return with_crc(body)


def requests_for(board: str) -> list[bytes]:
    """One of every supported function code, addresses taken from the map.

    The writes put the minimum of a persisted register (in range, not its default),
    so the board accepts them and saves its configuration to flash.
    """
    rmap = load(board)
    reg = rmap.get("vout_setpoint" if board == "power_shelf" else "dp_sp")
    a, lo = reg.address, int(reg.raw_min)  # type: ignore[arg-type]
    hr_n = min(rmap.table_size("holding") - 100, 30)
    ir_n = min(rmap.table_size("input") - 100, 125)
    return [
        _pdu(0x03, 0, 6),
        _pdu(0x03, 100, hr_n),
        _pdu(0x04, 0, 125),
        _pdu(0x04, 100, ir_n),
        _pdu(0x01, 0, 1),
        _pdu(0x02, 0, 3),
        _pdu(0x05, 0, 0xFF00),
        _pdu(0x05, 0, 0x0000),
        _pdu(0x06, a, lo),
        _pdu(0x10, a, 1, tail=bytes([2]) + lo.to_bytes(2, "big")),
        _pdu(0x17, 0, 10, a, 1, tail=bytes([2]) + lo.to_bytes(2, "big")),
        _pdu(0x08, 0x000B, 0),
        with_crc(bytes([UNIT, 0x2B, 0x0E, 0x01, 0x00])),
    ]


@pytest.fixture(scope="module")
def mcu(mcu_process):
    """The module's McuProcess (conftest.mcu_process)."""
    return mcu_process


def serve(node, reqs: list[bytes], rounds: int, gap_us: int = 30_000) -> tuple[int, int]:
    """Send ``rounds`` x ``reqs``, ``gap_us`` of bus time each; return (replies, peak heap).

    The gap covers the longest reply (255 bytes take 24 ms at 115200 baud).
    Every reply must carry the request's function code (no exception) and a good
    CRC, so the measured path is the real one. The heap is sampled once per round.
    """
    t = node.now_us
    replies = 0
    peak = node.heap_used()
    for _ in range(rounds):
        for req in reqs:
            node.deliver(req, t, BYTE_US)
            t += gap_us
            for _, data in node.advance(t):
                assert check(data), data.hex()
                assert data[1] == req[1], f"request {req.hex()} answered {data.hex()}"
                replies += 1
        t += 200_000  # idle bus: control ticks, deferred config save
        node.advance(t)
        peak = max(peak, node.heap_used())
    node.advance(t + 2_000_000)  # writes stopped: the deferred config save runs (1 s)
    return replies, max(peak, node.heap_used())


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("fmt", ["py", "mpy"])
@pytest.mark.parametrize("board", BOARDS)
def test_boards_boot_and_serve_within_budget(mcu, board: str, fmt: str, record_property) -> None:
    from rackhil.mcu import VmNode

    node = VmNode.emulated(mcu, board, {"board": board, "unit_id": UNIT, "baud": BAUD},
                           firmware=fmt)
    try:
        boot = node.heap_used()
        reqs = requests_for(board)
        replies, peak = serve(node, reqs, ROUNDS)
        assert replies == ROUNDS * len(reqs)
        # the persisted writes reached flash: a config copy (A or B) is no longer erased
        assert any(b != 0xFF for b in node.read_flash()[:0x2000])
    finally:
        mcu.unload(node.name)
    record_property("boot_heap", boot)
    record_property("peak_heap", peak)
    tag = board if fmt == "py" else f"{board}_mpy"
    _figures(**{f"{tag}_boot_heap": boot, f"{tag}_peak_heap": peak, f"{tag}_requests": replies})
    assert boot < BOOT_BUDGET, f"{board}: {boot} B live after boot"
    assert peak < PEAK_BUDGET, f"{board}: {peak} B peak under load"
    assert peak - boot < 4 * KB, "the heap grows under load"


# ------------------------------------------------------------ .py versus .mpy
# The same emulated boards booted from mpy-cross output (rackhil.firmware_files: written
# into the VM as binary, main.py kept as source), as an RP2040 deployment runs them.

MPY_SAVING = 10 * KB  # asserted margin; measured ~21 KB (shelf) and ~24 KB (CDU)


@pytest.mark.vm
@pytest.mark.parametrize("board", BOARDS)
def test_precompiled_mpy_boots_the_same_boards_in_less_heap(mcu, board: str, record_property) -> None:
    from rackhil.mcu import VmNode

    cfg = {"board": board, "unit_id": UNIT, "baud": BAUD}
    heap = {}
    for fmt in ("py", "mpy"):
        node = VmNode.emulated(mcu, f"{board}-{fmt}", cfg, firmware=fmt)
        try:
            heap[fmt] = node.heap_used()  # first: an eval's garbage can look live for a call
            listing = node.eval("__import__('os').listdir('/lib/rackfw')")
            assert ("board." + fmt) in listing and ("board.py" in listing) == (fmt == "py")
        finally:
            mcu.unload(node.name)
    record_property(f"{board}_boot_py", heap["py"])
    record_property(f"{board}_boot_mpy", heap["mpy"])
    _figures(**{f"{board}_boot_heap_py": heap["py"], f"{board}_boot_heap_mpy": heap["mpy"]})
    assert heap["mpy"] < BOOT_BUDGET
    assert heap["mpy"] <= heap["py"] - MPY_SAVING, f"{board}: .mpy {heap['mpy']} B vs .py {heap['py']} B"


# ------------------------------------------------------------ RP2040 board file: flash HAL
# The board file imports ``machine``; CPython gets a stand-in so its flash HALs can be
# exercised against the contract (NOR: erase -> 0xFF per 4 KiB sector, write = AND).

PICO_MAIN = ROOT / "firmware/boards/rp2040_pico/main.py"
SECTOR = 4096


class FakeRp2Flash:
    """``rp2.Flash(start=, len=)`` with the Pico SDK's rules: programs whole 256-byte pages."""

    def __init__(self, *, start: int = -1, len: int = -1) -> None:  # noqa: A002 (rp2 names)
        self.mem = bytearray(b"\xa5" * len)  # not erased: the firmware must erase first
        self.programs = 0

    def readblocks(self, block: int, buf, offset: int = 0) -> None:
        at = block * SECTOR + offset
        buf[:] = self.mem[at : at + len(buf)]

    def writeblocks(self, block: int, buf, offset: int = 0) -> None:
        at = block * SECTOR + offset
        assert at % 256 == 0 and len(buf) == 256, "flash_range_program: whole pages only"
        for i in range(256):
            self.mem[at + i] &= buf[i]
        self.programs += 1

    def ioctl(self, op: int, arg: int = 0) -> int:
        assert op == 6
        self.mem[arg * SECTOR : (arg + 1) * SECTOR] = b"\xff" * SECTOR
        return 0


@pytest.fixture
def pico(monkeypatch: pytest.MonkeyPatch):
    """The RP2040 board file as a module, with fake ``machine`` and ``rp2``."""
    import importlib.util
    import types

    from rackhil import shim

    shim.install()
    monkeypatch.setitem(sys.modules, "machine", types.ModuleType("machine"))
    rp2 = types.ModuleType("rp2")
    rp2.Flash = FakeRp2Flash  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rp2", rp2)
    spec = importlib.util.spec_from_file_location("pico_main", PICO_MAIN)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _nor_contract(flash, size: int) -> None:
    assert flash.size() == size
    flash.erase(0x6000, SECTOR)
    buf = bytearray(b"\x00" * 300)
    flash.read(0x6000, buf, 300)
    assert buf == b"\xff" * 300
    data = bytearray(range(200)) + bytearray(56)
    flash.write(0x6000 + 250, data, 200)  # crosses a page boundary, n < len(buf)
    flash.write(0x6000 + 250, b"\x0f" * 4, 4)  # programming again can only clear bits
    out = bytearray(210)
    flash.read(0x6000 + 245, out, 210)
    assert out[:5] == b"\xff" * 5 and out[205:] == b"\xff" * 5
    assert out[5:9] == bytes(b & 0x0F for b in range(4)) and out[9:205] == bytes(range(4, 200))
    last = size - SECTOR
    flash.erase(last, SECTOR)
    flash.write(last + SECTOR - 2, b"\x12\x34", 2)
    tail = bytearray(2)
    flash.read(last + SECTOR - 2, tail, 2)
    assert tail == b"\x12\x34"


def test_pico_flash_holds_config_events_and_a_128k_staging_area(pico) -> None:
    from rackproto.fwimage import STAGING_BASE

    assert pico.STAGING_BASE == STAGING_BASE
    assert pico.FLASH_SIZE == STAGING_BASE + 128 * 1024 and pico.FLASH_SIZE % SECTOR == 0


def test_pico_raw_flash_is_nor_with_whole_page_programs(pico) -> None:
    flash = pico.RawFlash(0x100000, pico.FLASH_SIZE)
    _nor_contract(flash, pico.FLASH_SIZE)
    assert flash.dev.programs == 4  # 2 pages for the 200 bytes, 1 for the 4, 1 at the end


def test_pico_file_flash_grows_an_old_file_and_keeps_its_data(pico, tmp_path: Path) -> None:
    path = tmp_path / "rackfw.dat"
    old = bytes(range(256)) * 96  # the 24 KiB file of earlier firmware: config + events
    path.write_bytes(old)
    flash = pico.FileFlash(str(path), pico.FLASH_SIZE)
    assert path.stat().st_size == pico.FLASH_SIZE
    head = bytearray(len(old))
    flash.read(0, head, len(old))
    assert head == old
    staged = bytearray(SECTOR)
    flash.read(0x6000, staged, SECTOR)
    assert staged == b"\xff" * SECTOR  # the growth is erased flash
    _nor_contract(flash, pico.FLASH_SIZE)


def test_pico_file_flash_is_created_erased(pico, tmp_path: Path) -> None:
    flash = pico.FileFlash(str(tmp_path / "new.dat"), pico.FLASH_SIZE)
    buf = bytearray(pico.FLASH_SIZE)
    flash.read(0, buf, len(buf))
    assert buf == b"\xff" * pico.FLASH_SIZE
