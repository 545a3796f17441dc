"""``rackctl sim``: the default rack in real time on a pty, as an operator runs it.

The main test starts the real command as a subprocess (firmware in the MicroPython VM),
polls all four boards with pymodbus over the pty (8N1: the pty has no parity), then
stops it with SIGINT: exit status 0, the pty link gone, no Node process left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from pymodbus.client import AsyncModbusSerialClient, ModbusSerialClient

from rackhil.capture import read_pcap

pytestmark = pytest.mark.timeout(120)

RACKCTL = [sys.executable, "-c", "from rackctl.cli.main import main; main()"]
EXPECTED = {1: "power_shelf", 2: "power_shelf", 3: "cdu", 4: "cdu"}


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (the rack's Node host runs in its own session)."""
    kids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.add(int(entry.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start(args: list[str], link: Path) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen(
        [*RACKCTL, "sim", "--pty", str(link), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith("Ctrl-C"):
            return proc, lines
    proc.kill()
    raise AssertionError("rackctl sim did not come up:\n" + "\n".join(lines))


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out


@pytest.mark.slow
def test_sim_answers_pymodbus_and_stops_cleanly(tmp_path: Path) -> None:
    link = tmp_path / "rack" / "ttyRACK"
    capture = tmp_path / "rack.pcap"
    proc, banner = _start(["--capture", str(capture)], link)
    try:
        assert any(str(link) in line for line in banner)
        assert any("115200 8E1" in line and "115200 8N1" in line for line in banner)
        nodes = {p for p in _children(proc.pid) if "node" in Path(f"/proc/{p}/comm").read_text()}
        assert nodes, "the VM runtime runs in a Node process"

        client = ModbusSerialClient(port=str(link), baudrate=115200, parity="N", timeout=1.0, retries=0)
        assert client.connect()
        failures = []
        polls = 0
        try:
            for _ in range(40):
                for unit, kind in EXPECTED.items():
                    polls += 1
                    rr = client.read_input_registers(26, count=1, device_id=unit)  # board_type
                    if rr.isError() or rr.registers != [1 if kind == "power_shelf" else 2]:
                        failures.append((unit, rr))
        finally:
            client.close()
        assert not failures, failures[:5]

        async def async_poll() -> list[int]:
            aclient = AsyncModbusSerialClient(port=str(link), baudrate=115200, parity="N", timeout=1.0, retries=0)
            await aclient.connect()
            try:
                out = []
                for unit in EXPECTED:
                    rr = await aclient.read_input_registers(16, count=8, device_id=unit)  # serial
                    assert not rr.isError(), rr
                    out.append(rr.registers[3])  # "01".."04" of EMU-00NN
                return out
            finally:
                aclient.close()

        assert asyncio.run(async_poll()) == [int.from_bytes(f"0{u}".encode(), "big") for u in EXPECTED]
    finally:
        status, out = _stop(proc)
    assert status == 0, out
    assert "rack stopped" in out
    assert not link.exists() and not link.is_symlink()
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in nodes) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in nodes), "a Node process outlived rackctl sim"
    linktype, packets = read_pcap(capture.read_bytes())
    assert linktype == 147
    assert len(packets) >= 2 * polls  # every request and every reply


def test_sim_cpython_runtime_sigterm(tmp_path: Path) -> None:
    link = tmp_path / "ttyRACK"
    proc, banner = _start(["--runtime", "cpython", "--parity", "N", "--baud", "19200"], link)
    try:
        assert any("19200 8N1" in line for line in banner)
        client = ModbusSerialClient(port=str(link), baudrate=19200, parity="N", timeout=1.0, retries=0)
        assert client.connect()
        rr = client.read_input_registers(26, count=2, device_id=3)
        client.close()
        assert not rr.isError() and rr.registers[0] == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out


def test_sim_rejects_a_bad_rack_file(tmp_path: Path) -> None:
    from rackctl.cli.main import cli

    bad = tmp_path / "rack.toml"
    bad.write_text("[[boards]]\nid = 1\ntype = 'fridge'\n")
    result = CliRunner().invoke(cli, ["sim", "--rack", str(bad), "--pty", str(tmp_path / "tty")])
    assert result.exit_code == 5, result.output
    assert "boards[0].type" in result.output
    missing = CliRunner().invoke(cli, ["sim", "--rack", str(tmp_path / "none.toml"), "--pty", str(tmp_path / "t")])
    assert missing.exit_code == 5


def test_sim_needs_a_pty_path() -> None:
    from rackctl.cli.main import cli

    result = CliRunner().invoke(cli, ["sim"])
    assert result.exit_code == 2
    assert "--pty" in result.output


def test_sim_refuses_to_replace_a_real_file(tmp_path: Path) -> None:
    from rackctl.cli.main import cli

    precious = tmp_path / "ttyRACK"
    precious.write_text("not a tty")
    result = CliRunner().invoke(cli, ["sim", "--pty", str(precious), "--runtime", "cpython"])
    assert result.exit_code == 5
    assert precious.read_text() == "not a tty"
    assert os.path.exists(precious)
