"""CPythonNode and the CPython HAL fakes: same semantics as the VM, in-process.

The echo fixture firmware (tests/hil/fixtures/echo_fw) runs here on fake_hal; the
parity tests run one script against CPythonNode and VmNode and require identical
observable behaviour (TX bytes and times, DE log, outputs, resets).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rackhil.cpython_node import CPythonNode
from rackhil.fake_hal import FakeFlash, FakeHal, PowerCut, VirtualClock
from rackhil.mcu import RESET_POWER_ON, RESET_WATCHDOG, McuCrash
from rackhil.node import Node, advance_all
from rackproto.crc import check, with_crc

ROOT = Path(__file__).resolve().parents[2]
FX = Path(__file__).parent / "fixtures" / "echo_fw"
PKG = ROOT / "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"
BYTE_US = 95
GAP_US = 2000

if str(FX) not in sys.path:
    sys.path.insert(0, str(FX))

from fixture import build_echo, echo_files  # noqa: E402  (tests/hil/fixtures/echo_fw)


def echo_node(name: str = "echo", **kw: Any) -> CPythonNode:
    return CPythonNode(name, {"baud": 115200, "wdt_ms": 2000}, build=build_echo, **kw)


def transact(node: Any, frame: bytes, t0: int, until: int) -> list[tuple[int, bytes]]:
    node.deliver(frame, t0, BYTE_US)
    return node.advance(until)


# ---------------------------------------------------------------- fake HAL
def test_clock_wraps_like_micropython_ticks():
    c = VirtualClock((1 << 30) + 5_000)
    assert c.ticks_us() == 5_000
    assert c.ticks_ms() == ((1 << 30) + 5_000) // 1000 % (1 << 30)


@given(old=st.binary(min_size=16, max_size=16), new=st.binary(min_size=16, max_size=16))
def test_flash_programming_only_clears_bits(old, new):
    f = FakeFlash(4096)
    f.write(0, old, 16)
    f.write(0, new, 16)
    assert bytes(f.mem[:16]) == bytes(a & b for a, b in zip(old, new, strict=True))


@given(cut=st.integers(0, 32), data=st.binary(min_size=32, max_size=32))
def test_flash_cut_tears_write_at_exactly_n_bytes(cut, data):
    f = FakeFlash(4096)
    f.cut_after = cut
    if cut < 32:
        with pytest.raises(PowerCut):
            f.write(100, data, 32)
    else:
        f.write(100, data, 32)
    assert bytes(f.mem[100 : 100 + cut]) == data[:cut]
    assert bytes(f.mem[100 + cut : 132]) == b"\xff" * (32 - cut)


def test_flash_erase_is_sector_aligned_and_bounded():
    f = FakeFlash(8192, image=b"\x00" * 8192)
    with pytest.raises(ValueError):
        f.erase(100, 4096)
    with pytest.raises(ValueError):
        f.erase(4096, 8192)
    f.erase(4096, 4096)
    assert f.mem[:4096] == b"\x00" * 4096 and f.mem[4096:] == b"\xff" * 4096
    buf = bytearray(4)
    with pytest.raises(ValueError):
        f.read(8190, buf, 4)


def test_uart_send_while_busy_continues_the_transmission():
    hal = FakeHal(baud=115200)
    hal.uart.send(b"ab", 2)
    hal.clock.us = 50
    hal.uart.send(b"cde", 3)
    assert hal.uart.sent == [[0, bytearray(b"abcde")]]
    assert hal.uart.tx_end == 5 * BYTE_US
    hal.clock.us = 5 * BYTE_US - 1
    assert not hal.uart.finish_tx() and not hal.uart.tx_done()
    hal.clock.us = 5 * BYTE_US
    assert hal.uart.finish_tx() and hal.uart.tx_done()


def test_shim_is_importable_and_counts_heap_lock_nesting():
    import micropython

    assert micropython.const(7) == 7
    micropython.heap_lock()
    micropython.heap_lock()
    assert micropython.heap_unlock() == 1
    assert micropython.heap_unlock() == 0


# ---------------------------------------------------------------- echo firmware
def test_cpython_node_satisfies_node_protocol():
    assert isinstance(echo_node(), Node)


def test_round_trip_timing_and_de():
    n = echo_node()
    assert n.printed == [f"echo up, reset_cause {RESET_POWER_ON}"]
    tx = transact(n, b"\x10\x20\x30", 1000, 20_000)
    start = 1000 + 3 * BYTE_US + GAP_US
    assert tx == [(start, b"\x30\x20\x10")]
    assert n.de_log[-2:] == [(start, 1), (start + 3 * BYTE_US, 0)]
    assert n.now_us == 20_000


@pytest.mark.parametrize("split", [1, 2, 3])
def test_frame_split_across_advances(split):
    n = echo_node()
    frame = b"\x41\x42\x43\x44"
    n.deliver(frame[:split], 1000, BYTE_US)
    n.advance(1000 + split * BYTE_US)
    n.deliver(frame[split:], 1000 + split * BYTE_US, BYTE_US)
    tx = n.advance(20_000)
    assert tx == [(1000 + 4 * BYTE_US + GAP_US, frame[::-1])]


def test_watchdog_reboots_and_keeps_flash():
    n = echo_node()
    transact(n, b"\x01\x55", 0, 10_000)
    transact(n, b"\x03", 20_000, 30_000)
    n.advance(3_000_000)
    assert [(c, r) for _, c, r in n.resets] == [(RESET_WATCHDOG, "watchdog")]
    assert 2_000_000 < n.resets[0][0] <= 2_030_000
    assert n.printed[-1] == f"echo up, reset_cause {RESET_WATCHDOG}"
    assert n.read_flash()[:2] == b"\x01\x55"
    assert transact(n, b"\x10\x20", 3_100_000, 3_200_000)[0][1] == b"\x20\x10"


def test_crash_surfaces_traceback_once_then_board_is_halted():
    n = echo_node()
    n.deliver(b"\x05\x00", 1000, BYTE_US)
    with pytest.raises(McuCrash) as exc:
        n.advance(10_000)
    assert "ValueError: frame error 2" in exc.value.traceback
    assert "echo.py" in exc.value.traceback
    assert transact(n, b"\x10\x20", 20_000, 40_000) == []
    n.power_cycle()
    assert transact(n, b"\x10\x20", 50_000, 60_000)[0][1] == b"\x20\x10"


def test_power_cut_during_flash_write_reboots_with_torn_flash():
    n = echo_node()
    n.flash.cut_after = 2
    transact(n, b"\x01\x02\x03\x04", 0, 10_000)
    assert n.read_flash()[:4] == b"\x01\x02\xff\xff"
    assert [(c, r) for _, c, r in n.resets] == [(RESET_POWER_ON, "power_cut")]
    assert n.printed[-1] == f"echo up, reset_cause {RESET_POWER_ON}"


def test_outputs_reset_to_zero_on_reboot():
    n = echo_node()
    transact(n, b"\x06\x02\x09", 0, 10_000)
    assert n.get_output(2) == 9
    n.power_cycle()
    assert n.get_output(2) == 0
    assert n.hal.outputs.changes[-1][1:] == (2, 0)
    n.power_cycle(keep_flash=False)
    assert n.read_flash() == b"\xff" * len(n.read_flash())


def test_advance_all_runs_plain_nodes_in_order():
    a, b = echo_node("a"), echo_node("b")
    a.deliver(b"\x11\x22", 0, BYTE_US)
    out = advance_all([a, b], 10_000)
    assert out == [[(2 * BYTE_US + GAP_US, b"\x22\x11")], []]


# ---------------------------------------------------------------- real firmware
def rtu_read_inputs(unit: int, start: int, count: int) -> bytes:
    return with_crc(bytes([unit, 4, start >> 8, start & 0xFF, count >> 8, count & 0xFF]))


@pytest.mark.parametrize("kind", ["power_shelf", "cdu"])
def test_rackfw_board_answers_modbus_under_cpython(kind):
    n = CPythonNode("b1", {"board": kind, "unit_id": 3, "baud": 115200})
    tx = transact(n, rtu_read_inputs(3, 0, 4), 1000, 30_000)
    assert len(tx) == 1
    reply = tx[0][1]
    assert check(reply) and reply[:3] == bytes([3, 4, 8])
    assert transact(n, rtu_read_inputs(9, 0, 4), 40_000, 70_000) == []  # not addressed


def test_rackfw_board_runs_for_virtual_minutes_without_reset():
    n = CPythonNode("b1", {"board": "power_shelf", "unit_id": 1})
    n.advance(120_000_000)
    assert n.resets == []
    assert n.crashed is None


# ---------------------------------------------------------------- parity with the VM
needs_vm = pytest.mark.skipif(
    shutil.which("node") is None or not PKG.exists(), reason="node / VM package missing (make setup)"
)


def observe(node: Any) -> dict[str, Any]:
    script = [
        (b"\x10\x20\x30", 1000, 20_000),
        (b"\x01\xa5\x5a", 30_000, 40_000),
        (b"\x02", 50_000, 60_000),
        (b"\x06\x01\x07", 70_000, 80_000),
        (b"\x03", 90_000, 100_000),
    ]
    tx = []
    for frame, t0, until in script:
        tx += transact(node, frame, t0, until)
    tx += node.advance(2_500_000)  # the watchdog bites
    tx += transact(node, b"\x44\x55", 2_600_000, 2_700_000)
    return {
        "tx": tx,
        "de": list(node.de_log),
        "outputs": {k: v for k, v in node.outputs.items() if v},
        "resets": list(node.resets),
        "flash": node.read_flash()[:8],
        "printed": list(node.printed),
    }


@needs_vm
@pytest.mark.vm
def test_echo_firmware_behaves_the_same_in_cpython_and_vm():
    from rackhil.mcu import McuProcess, VmNode

    with McuProcess() as m:
        vm = observe(VmNode(m, "vm", echo_files(), main="echo_main",
                            config={"baud": 115200, "wdt_ms": 2000}))
    cp = observe(echo_node())
    assert vm == cp
    assert vm["resets"][0][1] == RESET_WATCHDOG


@needs_vm
@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["power_shelf", "cdu"])
def test_rackfw_board_answers_the_same_in_cpython_and_vm(kind):
    from rackhil.mcu import McuProcess, VmNode

    cfg = {"board": kind, "unit_id": 5, "baud": 115200}
    reqs = [rtu_read_inputs(5, 0, 40), rtu_read_inputs(5, 500, 2), rtu_read_inputs(6, 0, 1)]

    def run(node: Any) -> list[tuple[int, bytes]]:
        out = []
        for i, r in enumerate(reqs):
            out += transact(node, r, 1_000_000 + i * 100_000, 1_000_000 + (i + 1) * 100_000)
        return out

    with McuProcess() as m:
        vm = run(VmNode.emulated(m, "fw", cfg))
    cp = run(CPythonNode("fw", cfg))
    assert [d for _, d in vm] == [d for _, d in cp]
    assert [t for t, _ in vm] == [t for t, _ in cp]
    assert len(vm) == 2 and all(check(d) for _, d in vm)


def test_software_reset_through_the_hal():
    n = echo_node()
    transact(n, b"\x07", 1000, 10_000)
    assert [(c, r) for _, c, r in n.resets] == [(4, "software")]
    assert n.printed[-1] == "echo up, reset_cause 4"


def test_crashed_board_is_reset_by_the_watchdog():
    n = echo_node()
    n.deliver(b"\x05", 1000, BYTE_US)
    with pytest.raises(McuCrash):
        n.advance(10_000)
    n.advance(2_500_000)
    assert [(c, r) for _, c, r in n.resets] == [(RESET_WATCHDOG, "watchdog")]
    assert transact(n, b"\x10\x20", 2_600_000, 2_700_000)[0][1] == b"\x20\x10"


def test_firmware_that_fails_to_build_raises_crash():
    def bad(hal: FakeHal, cfg: dict[str, Any]) -> Any:
        raise ImportError("no module named 'nosuchmodule'")

    with pytest.raises(McuCrash, match="nosuchmodule"):
        CPythonNode("bad", build=bad)


def test_sensor_values_reach_the_firmware():
    n = echo_node()
    n.set_sensors({4: -300})
    tx = transact(n, b"\x08\x04", 1000, 10_000)
    assert tx[0][1] == (-300 & 0xFFFF).to_bytes(2, "big")
    assert n.get_outputs() == {}


def late_bytes(node: Any) -> list[tuple[int, bytes]]:
    node.advance(50_000)
    node.deliver(b"\x10\x20", 40_000, BYTE_US)  # stamped before the node's clock
    return node.advance(60_000)


def test_bytes_stamped_in_the_past_do_not_turn_the_clock_back():
    n = echo_node()
    tx = late_bytes(n)
    # shifted in at 50 ms (when handed over); reply after the frame gap from then
    assert tx == [(50_000 + GAP_US, b"\x20\x10")]
    assert all(t2 >= t1 for (t1, _), (t2, _) in zip(n.de_log, n.de_log[1:], strict=False))


@needs_vm
@pytest.mark.vm
def test_bytes_stamped_in_the_past_same_in_vm():
    from rackhil.mcu import McuProcess, VmNode

    with McuProcess() as m:
        vm = late_bytes(VmNode(m, "late", echo_files(), main="echo_main"))
    assert vm == late_bytes(echo_node())


def torn_write(node: Any) -> dict[str, Any]:
    transact(node, b"\x01\x11\x22\x33", 0, 10_000)
    node.cut_flash_after(2)
    transact(node, b"\x01\x01\x02\x03\x04\x05", 20_000, 30_000)  # torn after 2 bytes
    after_cut = node.read_flash()[:6]
    tx = transact(node, b"\x02", 40_000, 50_000)  # rebooted board reads it back
    return {"flash": after_cut, "tx": tx, "resets": list(node.resets),
            "printed": list(node.printed)}


def test_cut_flash_tears_the_write_and_reboots():
    r = torn_write(echo_node())
    assert r["flash"] == b"\x01\x01\x22\x33\xff\xff"  # 2 bytes programmed (AND), rest as before
    assert [(c, why) for _, c, why in r["resets"]] == [(RESET_POWER_ON, "power_cut")]
    assert r["tx"][0][1] == b"\x01\x01\x22\x33\xff\xff\xff\xff"


@needs_vm
@pytest.mark.vm
def test_cut_flash_same_in_vm():
    from rackhil.mcu import McuProcess, VmNode

    with McuProcess() as m:
        vm = torn_write(VmNode(m, "torn", echo_files(), main="echo_main"))
    assert vm == torn_write(echo_node())


def cycle_mid_frame(node: Any) -> dict[str, Any]:
    """A reply that starts before a power cycle is still reported; bytes still on the
    wire at the cycle reach the rebooted board."""
    node.deliver(b"\x10\x20", 1000, BYTE_US)
    node.advance(1000)
    tx1 = node.advance(4_000)  # reply starts at 3190
    node.deliver(b"\x30\x40", 9_000, BYTE_US)  # arrives 9095/9190: after the cycle
    node.advance(5_000)
    node.power_cycle()
    tx2 = node.advance(20_000)
    return {"tx": tx1 + tx2, "resets": list(node.resets)}


def test_power_cycle_keeps_bytes_still_on_the_wire():
    r = cycle_mid_frame(echo_node())
    assert [d for _, d in r["tx"]] == [b"\x20\x10", b"\x40\x30"]


@needs_vm
@pytest.mark.vm
def test_power_cycle_keeps_bytes_still_on_the_wire_in_vm():
    from rackhil.mcu import McuProcess, VmNode

    with McuProcess() as m:
        vm = cycle_mid_frame(VmNode(m, "cyc", echo_files(), main="echo_main"))
    assert vm == cycle_mid_frame(echo_node())
