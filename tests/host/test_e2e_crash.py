"""``kill -9`` of the real daemon while it polls the software rack.

tests/host/test_daemon_crash.py kills a bare store writer; here the whole
``rackctl daemon`` process is killed mid-run while it polls the emulated rack over
a pty (HTTP server, scheduler, maintenance thread and all), three times in a row on
the same database file. After each kill: ``PRAGMA integrity_check`` is ``ok``, every
history point the daemon had already served over REST (so: committed) is still in
the file, and a new daemon on the same file comes up and keeps appending.
"""

from __future__ import annotations

import sqlite3
import time
from functools import partial
from pathlib import Path

import pytest
from test_e2e_sim import DaemonProcess, daemon_config, realtime_rack, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def served_points(daemon: DaemonProcess, unit: int, register: str) -> list[float]:
    """Timestamps (s) of the raw history the daemon serves for one register."""
    now = time.time()
    body = daemon.get(
        f"/api/devices/{unit}/history?register={register}&from={now - 3600:.0f}&to={now + 5:.0f}&resolution=0"
    )
    return [float(p[0]) for p in body["points"]]


def has_new_points(daemon: DaemonProcess, before: int) -> bool:
    """More than one dc_v point beyond the ``before`` the previous daemon left."""
    return len(served_points(daemon, 1, "dc_v")) > before + 1


def stored_points(db: Path, device: str, register: str) -> set[int]:
    """Timestamps (ms) of raw rows in the file for one series (recent + compacted)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute(
            "SELECT s.ts FROM (SELECT series, ts FROM recent UNION ALL SELECT series, ts FROM sample) s "
            "JOIN series ON series.id = s.series JOIN device d ON d.id = series.device "
            "WHERE d.name = ? AND series.name = ?",
            (device, register),
        ).fetchall()
    finally:
        conn.close()
    return {int(ts) for (ts,) in rows}


#: seconds each daemon runs after its first new history point before it is killed:
#: lands the kill mid-cycle, mid-flush or mid-maintenance at different moments
KILL_AFTER_S = (1.0, 2.5, 0.2)


def test_kill_9_while_polling_the_rack(tmp_path: Path) -> None:
    db = tmp_path / "rackctl.db"
    config = daemon_config(tmp_path)
    with realtime_rack("cpython", tmp_path) as rack:
        before = 0
        for n, extra_s in enumerate(KILL_AFTER_S):
            daemon = DaemonProcess(config, rack.port, db, tmp_path / f"daemon{n}.log")
            try:
                daemon.wait_online()
                # it appends to what the previous (killed) daemon left
                wait_until(partial(has_new_points, daemon, before), 10, "new dc_v history")
                time.sleep(extra_s)
                pts = served_points(daemon, 1, "dc_v")
            finally:
                daemon.kill9()
            assert daemon.proc.returncode == -9
            stored = stored_points(db, "shelf-1", "dc_v")
            served = {round(ts * 1000) for ts in pts}
            assert served <= stored, f"committed points lost: {sorted(served - stored)[:5]}"
            assert len(stored) >= len(served) > before
            before = len(served)
    # all four boards' history survived the last kill too
    conn = sqlite3.connect(db)
    try:
        per_device = dict(
            conn.execute(
                "SELECT d.name, count(*) FROM (SELECT series FROM recent UNION ALL SELECT series FROM sample) s "
                "JOIN series ON series.id = s.series JOIN device d ON d.id = series.device GROUP BY d.name"
            ).fetchall()
        )
    finally:
        conn.close()
    assert set(per_device) == {"shelf-1", "shelf-2", "cdu-1", "cdu-2"}
    assert min(per_device.values()) > 50, per_device
