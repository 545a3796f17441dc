"""The host daemon against the default software rack, in real time on the pty.

What an operator sizes a deployment with: how many polls and registers per second
the daemon gets through one RS-485 bus, how much of the wire that is, what the
daemon costs in CPU and memory, and how fast its history database grows.

Method: the default rack (``examples/rack.toml``: shelves 1, 2, CDUs 3, 4) runs in
this process, paced to the wall clock, on a pty with a wire capture; ``rackctl
daemon --config examples/daemon.toml`` (its default store settings: 2 h raw,
changes-only for slow registers) runs as a child process polling it. After a
warm-up, one measurement window: requests and replies are decoded from the capture
(so registers/s counts registers that actually crossed the wire), CPU from
``/proc/<pid>/stat`` (utime + stime), RSS from ``/proc/<pid>/status``, database
rows from the file. Env: ``RACKCTL_BENCH_HOST_S`` (window, default 30 s),
``RACKCTL_BENCH_RUNTIME`` (``vm``, the default, or ``cpython``).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "daemon.toml"
WINDOW_S = float(os.environ.get("RACKCTL_BENCH_HOST_S", "30"))
RUNTIME = os.environ.get("RACKCTL_BENCH_RUNTIME", "vm")
WARMUP_S = 5.0
BOARDS = 4
RAW_RETENTION_S = 2 * 3600  # examples/daemon.toml raw_retention
MINUTE_RETENTION_D = 14  # examples/daemon.toml downsample_retention
READ_FCS = (1, 2, 3, 4)
WORD_FCS = (3, 4)


# ---- the wire bound --------------------------------------------------------------------------
def transaction_s(
    n_regs: float, baud: int = 115200, bits_per_char: int = 11, t35_s: float = 0.00175
) -> float:
    """Wire time of one FC 03/04 read of ``n_regs`` registers: request (8 bytes) +
    response (5 + 2N bytes), each character ``bits_per_char`` bits (8E1: 11), plus the
    t3.5 silence before each of the two frames (fixed 1.75 ms above 19200 baud).
    Zero turnaround: no real server answers faster, so this bounds any schedule."""
    return (8 + 5 + 2 * n_regs) * bits_per_char / baud + 2 * t35_s


def wire_bound_regs_per_s(n_regs: float) -> float:
    return n_regs / transaction_s(n_regs)


# ---- /proc --------------------------------------------------------------------------------
def cpu_s(pid: int | str = "self") -> float:
    """User + system CPU seconds of a process (fields 14, 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kb(pid: int | str, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def children(pid: int | str = "self") -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        out += [int(p) for p in text]
    return out


# ---- the rack's bus thread ----------------------------------------------------------------------
class OnBusThread:
    """Run callables between two bus steps on the real-time runner's thread (the only
    thread allowed to touch the bus and its capture while it runs)."""

    def __init__(self, bus: Any) -> None:
        self._q: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]] = (
            queue.SimpleQueue()
        )
        bus.add_step_hook(self._drain)

    def _drain(self, now_us: int) -> None:
        while True:
            try:
                fn, box, done = self._q.get_nowait()
            except queue.Empty:
                return
            try:
                box.append(fn())
            except Exception as exc:  # handed back to the caller
                box.append(exc)
            done.set()

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        box: list[Any] = []
        done = threading.Event()
        self._q.put((fn, box, done))
        if not done.wait(timeout):
            raise RuntimeError("bus runner did not run the action")
        if isinstance(box[0], Exception):
            raise box[0]
        return box[0]


# ---- the daemon child ---------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = resp.read().decode()
    return json.loads(body) if url.rsplit("/", 1)[-1] != "metrics" else body


def _counters(url: str) -> dict[str, int]:
    total: dict[str, int] = {}
    for c in _get(url + "/api/counters").values():
        for k in (
            "requests",
            "ok",
            "retries",
            "timeouts",
            "crc_errors",
            "exceptions",
            "mismatched",
        ):
            total[k] = total.get(k, 0) + int(c[k])
    return total


def _poll_histogram(url: str) -> tuple[float, int]:
    total, count = 0.0, 0
    for line in _get(url + "/metrics").splitlines():
        if line.startswith("rack_poll_duration_seconds_sum"):
            total += float(line.rsplit(" ", 1)[1])
        elif line.startswith("rack_poll_duration_seconds_count"):
            count += int(float(line.rsplit(" ", 1)[1]))
    return total, count


def _rows(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return int(
            conn.execute(
                "SELECT (SELECT count(*) FROM recent) + (SELECT count(*) FROM sample)"
            ).fetchone()[0]
        )
    finally:
        conn.close()


def _used_bytes(db: Path) -> tuple[int, int, int]:
    """(used bytes after a WAL checkpoint, raw rows, numeric series) of a closed store."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages, free, size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0]
            for p in ("page_count", "freelist_count", "page_size")
        )
        rows = conn.execute(
            "SELECT (SELECT count(*) FROM recent) + (SELECT count(*) FROM sample)"
        ).fetchone()[0]
        series = conn.execute(
            "SELECT count(DISTINCT series) FROM (SELECT series FROM recent UNION SELECT series FROM sample)"
        ).fetchone()[0]
    finally:
        conn.close()
    return (pages - free) * size, int(rows), int(series)


def minute_row_bytes(series: int = 150, minutes: int = 1440) -> float:
    """Bytes per per-minute aggregate row in the store's own schema (one board-day of
    ``series`` x ``minutes`` rows with scaled-integer min/sum/max, n = 60)."""
    from rackctl.store import SCHEMA

    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "m.db")
        conn.executescript(SCHEMA)
        t0 = 1_795_000_000_000
        with conn:
            conn.executemany(
                "INSERT INTO minute(series, ts, min, sum, max, n) VALUES (?, ?, ?, ?, ?, 60)",
                (
                    (s, t0 + m * 60_000, 5000 + s, (5000 + s) * 60 + m, 5100 + s)
                    for s in range(1, series + 1)
                    for m in range(minutes)
                ),
            )
        conn.execute("VACUUM")
        pages, size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "page_size")
        )
        conn.close()
    return pages * size / (series * minutes)


# ---- one measurement ------------------------------------------------------------------------------
def _decode(frames: list[Any]) -> dict[str, Any]:
    """Requests, replies, registers and turnaround (request end -> reply start) from the capture.

    Polls are all read replies (FC 01-04); registers count the words of FC 03/04
    replies (the coil/discrete reads of FC 01/02 carry bits, counted apart)."""
    reqs = replies = word_replies = regs = bits = bad = 0
    busy_us = 0
    turnaround: list[float] = []
    pending_end: int | None = None
    for f in frames:
        busy_us += f.end_us - f.start_us
        if not f.crc_ok or len(f.data) < 5:
            bad += 1
            continue
        fc = f.data[1]
        if f.source == "pty":
            if fc in READ_FCS and len(f.data) == 8:
                reqs += 1
                pending_end = f.end_us
            continue
        if fc in READ_FCS:
            replies += 1
            if fc in WORD_FCS:
                word_replies += 1
                regs += f.data[2] // 2
            else:
                bits += 8 * f.data[2]  # byte count x 8: bits carried (padding included)
            if pending_end is not None:
                turnaround.append((f.start_us - pending_end) / 1000)
        pending_end = None
    return {
        "requests": reqs,
        "replies": replies,
        "word_replies": word_replies,
        "registers": regs,
        "bits": bits,
        "bad_frames": bad,
        "busy_us": busy_us,
        "turnaround_ms": turnaround,
    }


def measure(runtime: str, window_s: float = WINDOW_S) -> dict[str, Any]:
    from rackhil.rack import Rack

    result: dict[str, Any] = {"runtime": runtime}
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        db = tmpdir / "rackctl.db"
        rack = Rack.default(realtime=True, runtime=runtime)
        try:
            on_bus = OnBusThread(rack.bus)
            port = rack.start_realtime(tmpdir / "ttyRACK", capture=True)
            http = _free_port()
            url = f"http://127.0.0.1:{http}"
            exe = Path(sys.executable).with_name("rackctl")
            cmd = [
                str(exe),
                "daemon",
                "--config",
                str(CONFIG),
                "--port",
                port,
                "--db",
                str(db),
                "--http",
                f"127.0.0.1:{http}",
                "--log-level",
                "warning",
            ]
            log = (tmpdir / "daemon.log").open("wb")
            daemon = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmpdir)
            try:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if all(d["online"] for d in _get(url + "/api/devices")):
                            break
                    except OSError:
                        pass
                    if time.monotonic() > deadline or daemon.poll() is not None:
                        raise RuntimeError(
                            "daemon did not bring the rack online: "
                            + (tmpdir / "daemon.log").read_text()[-2000:]
                        )
                    time.sleep(0.2)
                time.sleep(WARMUP_S)
                nodes = [p for p in children() if p != daemon.pid]

                def snapshot() -> dict[str, Any]:
                    now_us = on_bus.call(lambda: (rack.capture.clear(), rack.bus.now_us)[1])
                    return {
                        "wall": time.monotonic(),
                        "virt_us": now_us,
                        "cpu": cpu_s(daemon.pid),
                        "self_cpu": cpu_s(),
                        "node_cpu": sum(cpu_s(p) for p in nodes),
                        "counters": _counters(url),
                        "hist": _poll_histogram(url),
                        "rows": _rows(db),
                    }

                s0 = snapshot()
                time.sleep(window_s)
                frames = on_bus.call(lambda: rack.capture.frames())
                now_us = on_bus.call(lambda: rack.bus.now_us)
                s1: dict[str, Any] = {
                    "wall": time.monotonic(),
                    "cpu": cpu_s(daemon.pid),
                    "self_cpu": cpu_s(),
                    "node_cpu": sum(cpu_s(p) for p in nodes),
                    "counters": _counters(url),
                    "hist": _poll_histogram(url),
                    "rows": _rows(db),
                }
                result["rss_kb"] = status_kb(daemon.pid, "VmRSS")
                result["hwm_kb"] = status_kb(daemon.pid, "VmHWM")
                result["lag_s"] = rack.runner.lag_s
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    daemon.wait(15)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    daemon.wait()
                log.close()
        finally:
            rack.stop()
        used, rows, series = _used_bytes(db)
    wall = s1["wall"] - s0["wall"]
    result.update(_decode(frames))
    result["virt_s"] = (now_us - s0["virt_us"]) / 1e6
    result["wall_s"] = wall
    result["daemon_cpu_pct"] = 100 * (s1["cpu"] - s0["cpu"]) / wall
    result["rack_cpu_pct"] = 100 * (s1["self_cpu"] - s0["self_cpu"]) / wall
    result["node_cpu_pct"] = 100 * (s1["node_cpu"] - s0["node_cpu"]) / wall
    result["counters"] = {k: s1["counters"][k] - s0["counters"].get(k, 0) for k in s1["counters"]}
    dsum, dcount = s1["hist"][0] - s0["hist"][0], s1["hist"][1] - s0["hist"][1]
    result["poll_ms"] = 1000 * dsum / dcount if dcount else float("nan")
    result["rows_per_s"] = (s1["rows"] - s0["rows"]) / wall
    result["bytes_per_row"] = used / rows if rows else float("nan")
    result["series_per_board"] = series / BOARDS
    return result


def run() -> dict[str, Any]:
    m = measure(RUNTIME)
    c = m["counters"]
    kept_up = c["timeouts"] <= 0.01 * max(1, c["requests"]) and m["lag_s"] < 0.05
    fallback = ""
    if not kept_up and RUNTIME == "vm":
        fallback = (
            f"The VM rack did not keep up ({c['timeouts']} timeouts in {c['requests']} requests, "
            f"lag {m['lag_s']:.3f} s); the numbers below are from the cpython runtime. "
        )
        m = measure("cpython")
        c = m["counters"]
    t = m["virt_s"]
    polls = m["replies"] / t
    regs = m["registers"] / t
    mean_n = m["registers"] / m["word_replies"] if m["word_replies"] else 0.0
    bound = wire_bound_regs_per_s(mean_n) if mean_n else float("nan")
    bound_max = wire_bound_regs_per_s(125)
    ta = sorted(m["turnaround_ms"])
    p95 = ta[int(0.95 * (len(ta) - 1))] if ta else float("nan")
    row_b = minute_row_bytes(round(m["series_per_board"]))
    raw_per_board_s = m["rows_per_s"] / BOARDS
    raw_window_mb = raw_per_board_s * RAW_RETENTION_S * m["bytes_per_row"] / 1e6
    minute_day_mb = m["series_per_board"] * 1440 * row_b / 1e6
    steady_mb = raw_window_mb + MINUTE_RETENTION_D * minute_day_mb
    rows = [
        ("emulated boards runtime", m["runtime"], ""),
        ("measurement window", round(t, 1), "s"),
        ("polls (FC 01-04 replies)", polls, "/s"),
        ("of which FC 03/04 register reads", m["word_replies"] / t, "/s"),
        ("registers read", regs, "/s"),
        ("mean registers per FC 03/04 read", mean_n, "regs"),
        ("wire bound at that block size (115200 8E1)", bound, "regs/s"),
        ("bus utilisation (registers/s ÷ wire bound)", 100 * regs / bound, "%"),
        ("wire busy (frame time ÷ window)", 100 * m["busy_us"] / 1e6 / t, "%"),
        ("board turnaround, median", statistics.median(ta) if ta else float("nan"), "ms"),
        ("board turnaround, p95", p95, "ms"),
        ("daemon poll step, mean (rack_poll_duration_seconds)", m["poll_ms"], "ms"),
        ("daemon capacity, back to back (1 / mean poll step)", 1000 / m["poll_ms"], "polls/s"),
        ("timeouts / requests (daemon counters)", f"{c['timeouts']} / {c['requests']}", ""),
        (
            "frames with a bad CRC or cut short (capture, incl. the window edges)",
            m["bad_frames"],
            "",
        ),
        ("daemon CPU", m["daemon_cpu_pct"], "% of a core"),
        ("daemon RSS (peak)", f"{m['rss_kb'] / 1024:.0f} ({m['hwm_kb'] / 1024:.0f})", "MiB"),
        ("rack CPU: bus runner + plants (bench process)", m["rack_cpu_pct"], "% of a core"),
        ("rack CPU: MicroPython VM (node)", m["node_cpu_pct"], "% of a core"),
        ("history rows written", raw_per_board_s, "rows/s per board"),
        ("raw row size on disk", m["bytes_per_row"], "B"),
        ("raw window (2 h) per board", raw_window_mb, "MB"),
        ("per-minute aggregates per board-day", minute_day_mb, "MB"),
        ("database per board, steady state (2 h raw + 14 d minutes)", steady_mb, "MB"),
    ]
    notes = f"""{fallback}Wire bound: one FC 03/04 read of N registers costs
`(8 + 5 + 2N) × 11 / 115200 s + 2 × t3.5` (request 8 bytes, response 5 + 2N bytes,
11 bits per character at 8E1, t3.5 = 1.75 ms above 19200 baud before each frame, zero
turnaround), so the bound is `N / that` registers/s: {bound:,.0f} regs/s at this run's mean
block of {mean_n:.1f} registers, {bound_max:,.0f} regs/s with 125-register blocks.
Utilisation = achieved registers/s ÷ the bound at the same block size; "wire busy" is
the fraction of the window during which a frame was on the wire. Polls and registers
are decoded from a capture of the simulated wire (virtual time, paced to the wall
clock; runner lag at the end {m["lag_s"] * 1000:.0f} ms). The daemon polls on the
intervals of the maps and `examples/daemon.toml`, so polls/s is the configured load
met, not a saturation test; "capacity" extrapolates the measured mean poll step
(request on the wire, the board's turnaround, decode, store, alarms) to polls issued
back to back, an estimate of how far the same bus and daemon could be pushed.
FC 01/02 (coil and discrete) reads count as polls but not as registers.

Turnaround is the board's silence between the end of a request and the start of its
reply, in the simulated wire's time. The emulated firmware answers as soon as it has
seen the t3.5 silence that ends the request (firmware run time costs no virtual time),
so 1.75 ms is the protocol's floor; a real RP2040 adds its processing time.

Database: rows/s measured over the window with the defaults of `examples/daemon.toml`
(raw 2 h, changes-only for registers polled every ≥ 5 s, heartbeat 10 min); bytes per
raw row = used pages ÷ rows of the run's file after a checkpoint (dictionary tables
included). Steady state per board = raw rows/s × 7200 s × row size + 14 days of
per-minute aggregates ({m["series_per_board"]:.0f} series × 1440 rows/day × {row_b:.1f} B,
measured by filling the store's own schema); the raw window is reached after 2 h,
the aggregates after 14 days. SQLite reuses the pages retention frees, so the file
stops growing at the steady state (it only shrinks with VACUUM). CPU: utime + stime from
`/proc/<pid>/stat` over the window; RSS from `/proc/<pid>/status`."""
    return {
        "title": "Host daemon against the software rack (real time, pty)",
        "rows": rows,
        "notes": notes,
    }


if __name__ == "__main__":
    for label, value, unit in run()["rows"]:
        print(f"{label}: {value} {unit}")
