"""The daemon end to end over a real pty, and the history database under ``kill -9``.

Crash safety: a child process writes poll cycles continuously (with maintenance
passes in between); it is SIGKILLed at an arbitrary moment; the database must pass
``PRAGMA integrity_check`` and hold every cycle the child reported committed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from test_scheduler import PtySlave, board_tables

from rackctl import config
from rackctl.daemon import UNLOCK_KEY, Daemon, WriteRefused
from rackproto import regmap
from rackproto.errors import RangeError

ROWS_PER_CYCLE = 4 * 150

WRITER = textwrap.dedent(
    """
    import sys, time
    from rackctl.store import Store
    store = Store(sys.argv[1], raw_retention=30, heartbeat=600)
    t = 1_700_000_000.0
    cycle = 0
    while True:
        for dev in range(4):
            store.add(f"dev{dev}", t, [(f"r{i}", (cycle * 7 + i) % 1000 / 10, "V", False)
                                      for i in range(150)])
        store.flush()
        cycle += 1
        print(cycle, flush=True)
        if cycle % 10 == 0:
            store.maintain(now=t)
        t += 1.0
    """
)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kill_after", [5, 23, 41])
def test_kill_9_leaves_a_consistent_database(tmp_path: Path, kill_after: int) -> None:
    db = tmp_path / "crash.db"
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert child.stdout is not None
    reported = 0
    try:
        while reported < kill_after:
            line = child.stdout.readline()
            assert line, "writer died on its own"
            reported = int(line)
    finally:
        os.kill(child.pid, signal.SIGKILL)  # mid-run: it never stops writing
        child.wait()
    assert child.returncode == -signal.SIGKILL
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raw = "(SELECT ts FROM sample UNION ALL SELECT ts FROM recent)"
        cycles = conn.execute(f"SELECT count(DISTINCT ts) FROM {raw}").fetchone()[0]
        newest = conn.execute(f"SELECT max(ts) FROM {raw}").fetchone()[0]
        # raw retention is 30 s of virtual time: older cycles were folded into minutes
        expected = min(reported, 31)
        assert cycles >= expected
        assert newest >= (1_700_000_000 + reported - 1) * 1000  # nothing reported is lost
        per_ts = conn.execute(f"SELECT count(*) FROM {raw} GROUP BY ts").fetchall()
        assert {n for (n,) in per_ts} == {ROWS_PER_CYCLE}  # cycles are all-or-nothing
    finally:
        conn.close()


# ---------------------------------------------------------------- end to end over a pty


def _encode(m: Any, tables: dict[str, dict[int, int]], name: str, value: Any) -> None:
    reg = m.get(name)
    for i, w in enumerate(m.encode_value(reg, value)):
        tables[reg.table][reg.address + i] = w


@pytest.fixture
def rack():
    ps, cdu = regmap.load("power_shelf"), regmap.load("cdu")
    shelf, cooler = board_tables(ps), board_tables(cdu)
    for m, t, board in ((ps, shelf, "power_shelf"), (cdu, cooler, "cdu")):
        _encode(m, t, "board_type", board)
        _encode(m, t, "serial", f"SN-{board}")
    _encode(ps, shelf, "psu1_out_v", 54.12)
    _encode(cdu, cooler, "t_supply", 21.5)
    _encode(cdu, cooler, "leak_zones", ["rack_b"])
    del cooler["input"][cdu.get("heat_load").address]  # firmware without this register
    slave = PtySlave({1: shelf, 3: cooler})
    yield slave, ps, cdu
    slave.close()


def _config(tmp_path: Path, port: str) -> config.Config:
    cfg = config.loads(f"""
        [[buses]]
        name = "rack"
        port = "{port}"
        baud = 115200
        parity = "N"
        timeout = "150ms"
        retries = 0
        dormant_after = 2
        reprobe = "1h"

        [[devices]]
        id = 1
        map = "power_shelf"
        name = "shelf-1"

        [[devices]]
        id = 3
        map = "cdu"
        name = "cdu-1"

        [[devices]]
        id = 5
        map = "cdu"
        name = "ghost"

        [[alarms]]
        register = "t_supply"
        op = ">"
        limit = 20
        name = "warm"
    """.replace("\n        ", "\n"))
    return dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, path=str(tmp_path / "d.db")))


async def _until(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


@pytest.mark.timeout(60)
async def test_daemon_polls_stores_alarms_and_writes(tmp_path: Path, rack: Any) -> None:
    slave, ps, cdu = rack
    daemon = Daemon(_config(tmp_path, slave.path), flush_interval=0.1)
    seen: list[tuple[int, str]] = []
    daemon.state_listeners.append(lambda dev, state, ts: seen.append((dev.id, state)))
    await daemon.start()
    try:
        await _until(lambda: "t_supply" in daemon.latest.get(3, {})
                     and "psu1_out_v" in daemon.latest.get(1, {})
                     and daemon.devices[5].state == "dormant")
        assert daemon.latest[3]["t_supply"][:2] == (21.5, "°C")
        assert daemon.latest[1]["psu1_out_v"][:2] == (54.12, "V")
        assert daemon.latest[3]["leak_zones"][0] == ["rack_b"]
        await _until(lambda: "heat_load" in daemon.devices[3].dropped)
        assert "heat_load" not in daemon.latest[3] and "flow" in daemon.latest[3]
        assert seen == [(5, "dormant")]
        assert daemon.devices[1].online and daemon.devices[1].counters.ok > 0
        assert daemon.devices[5].counters.timeouts == 2

        keys = {(a.device, a.key) for a in daemon.alarms.list()}
        assert {(3, "leak_zones.rack_b"), (3, "rule:warm"), (5, "comm.dormant"),
                (3, "dropped.heat_load")} <= keys

        await _until(lambda: daemon.store.last(3, "t_supply") is not None)
        assert daemon.store.last(3, "t_supply")[1] == 21.5

        n = len(slave.requests)
        with pytest.raises(RangeError):
            await daemon.write_register(3, "t_supply_sp", 50.0)  # max 45 °C
        assert not [f for _, f in slave.requests[n:] if f[1] in (6, 16)]  # nothing sent
        assert await daemon.write_register("cdu-1", "t_supply_sp", 32.5) == 32.5
        assert daemon.latest[3]["t_supply_sp"][0] == 32.5
        with pytest.raises(WriteRefused):
            await daemon.write_register(1, "modbus_address", 9)
        with pytest.raises(WriteRefused):
            await daemon.write_register(1, "psu1_out_v", 50)
        before = len(slave.requests)
        assert await daemon.write_register(1, "modbus_address", 9, unlock=True) == 9
        writes = [f for _, f in slave.requests[before:] if f[0] == 1 and f[1] in (6, 16)]
        assert [int.from_bytes(f[4:6], "big") for f in writes[:2]] == [UNLOCK_KEY, UNLOCK_KEY ^ 0xFFFF]
        assert slave.units[1]["holding"][ps.get("modbus_address").address] == 9
    finally:
        await daemon.stop()
        daemon.store.close()

