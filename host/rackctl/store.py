"""Register history in SQLite (WAL): raw samples, per-minute aggregates, retention.

Sizing target: 32 boards x ~150 registers at 1 Hz for weeks on a small disk. So:

* devices and registers are interned in dictionary tables; a sample row is three
  integers-or-reals ``(series, ts_ms, value)`` in a ``WITHOUT ROWID`` table whose
  primary key *is* the only index (no rowid b-tree, no second index);
* raw samples live ``raw_retention``; complete minutes are folded into
  ``minute(min, sum, max, n)`` by :meth:`Store.maintain`, which also drops raw rows
  past their window and minute rows past ``downsample_retention`` — both per series
  through the primary key, so no table scan is ever needed;
* registers marked *changes-only* (slow ones: status, config, counters) are written
  only when their value changes, but at least every ``heartbeat`` seconds, so a
  reader can tell "unchanged" (a row at most ``heartbeat`` old) from "no data";
* writes are buffered and committed once per poll cycle (:meth:`flush`) in one
  transaction, appended to the time-major ``recent`` table (cheap: a few pages per
  cycle); :meth:`compact` moves them into ``sample`` once per maintenance pass. WAL + ``synchronous=NORMAL``: a killed process (even ``kill -9``)
  loses at most the cycle not yet flushed and never corrupts the file; only an OS
  crash/power cut may also lose the last committed cycles.

The connection is shared with :mod:`rackctl.alarms` (same file, same lock).
"""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rackproto.regtypes import scale_digits

log = logging.getLogger(__name__)

MINUTE_MS = 60_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS device (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    unit INTEGER,
    map TEXT
);
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    device INTEGER NOT NULL REFERENCES device(id),
    name TEXT NOT NULL,
    unit TEXT NOT NULL DEFAULT '',
    scale REAL NOT NULL DEFAULT 1,  -- value = stored * scale: scaled registers keep raw ints
    UNIQUE (device, name)
);
CREATE TABLE IF NOT EXISTS sample (
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,            -- epoch milliseconds
    value REAL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recent (
    ts INTEGER NOT NULL,            -- time-major: a poll cycle appends to the b-tree's end
    series INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (ts, series)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS minute (
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,            -- epoch milliseconds of the minute start
    min REAL, sum REAL, max REAL,   -- stored units (see series.scale); avg = sum / n
    n INTEGER NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value
) WITHOUT ROWID;
"""


# raw rows of one series in [lo, hi): the series-major table plus the uncompacted tail
_RAW = """SELECT ts, value FROM sample WHERE series = :s AND ts >= :lo AND ts < :hi
          UNION ALL
          SELECT ts, value FROM recent WHERE series = :s AND ts >= :lo AND ts < :hi"""


def _stored(value: Any, scale: float) -> float | int | None:
    """What goes on disk: None for NaN/missing, raw integer for scaled series."""
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if scale != 1.0 and not math.isinf(value):
        return int(round(value / scale))
    return value


def _scaled(stored: float | None, scale: float, extra_digits: int = 0) -> float | None:
    """Engineering value from a stored one, rounded to the scale's resolution."""
    if stored is None or scale == 1.0:
        return stored
    return round(stored * scale, scale_digits(scale) + extra_digits)


def _ms(ts: float) -> int:
    return int(round(ts * 1000))


class Store:
    """History database. Thread-safe; all methods are short and synchronous."""

    def __init__(
        self,
        path: str | Path,
        *,
        raw_retention: float = 2 * 3600.0,
        downsample_retention: float = 14 * 86400.0,
        heartbeat: float = 600.0,
    ):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.raw_retention = raw_retention
        self.downsample_retention = downsample_retention
        self.heartbeat = heartbeat
        self.lock = threading.RLock()  # the connection
        self._buf_lock = threading.Lock()  # the write buffer and its caches
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA foreign_keys=ON")
        self.conn.executescript(SCHEMA)
        self._devices: dict[str, int] = dict(self.conn.execute("SELECT name, id FROM device"))
        self._units: dict[int, str] = {
            unit: name for name, unit in self.conn.execute("SELECT name, unit FROM device")
            if unit is not None
        }
        self._series: dict[tuple[int, str], int] = {}
        self._scale: dict[int, float] = {}
        for sid, dev, name, scale in self.conn.execute("SELECT id, device, name, scale FROM series"):
            self._series[(dev, name)] = sid
            self._scale[sid] = scale
        self._last: dict[int, tuple[float | None, int]] = {}  # series -> (value, ts_ms written)
        self._pending: list[tuple[int, int, float | None]] = []  # (ts_ms, series, value)
        self.rows_written = 0
        self.rows_skipped = 0

    def close(self) -> None:
        with self.lock:
            self.flush()
            self.conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` … ``COMMIT`` under the store lock (rollback on error)."""
        with self.lock:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    # -- dictionary tables -------------------------------------------------------------
    def device_id(self, name: str, unit: int | None = None, map_name: str | None = None) -> int:
        """Intern a device name (with its Modbus id and map, kept up to date)."""
        with self.lock:
            did = self._devices.get(name)
            if did is None:
                cur = self.conn.execute(
                    "INSERT INTO device(name, unit, map) VALUES (?, ?, ?)", (name, unit, map_name)
                )
                did = self._devices[name] = int(cur.lastrowid or 0)
            elif unit is not None:
                self.conn.execute(
                    "UPDATE device SET unit = ?, map = coalesce(?, map) WHERE id = ?",
                    (unit, map_name, did),
                )
            if unit is not None:
                self._units[unit] = name
            return did

    def series_id(self, device: str, register: str, unit: str = "", scale: float = 1.0) -> int:
        """Intern (device, register); ``scale`` is fixed when the series is created."""
        with self.lock:
            return self._series_of(self.device_id(device), register, unit, scale)

    def _series_of(self, did: int, register: str, unit: str, scale: float) -> int:
        sid = self._series.get((did, register))
        if sid is None:
            cur = self.conn.execute(
                "INSERT INTO series(device, name, unit, scale) VALUES (?, ?, ?, ?)",
                (did, register, unit, scale),
            )
            sid = self._series[(did, register)] = int(cur.lastrowid or 0)
            self._scale[sid] = float(scale)
        return sid

    def _resolve(self, device: str | int) -> str:
        if isinstance(device, int) and not isinstance(device, bool):
            if device in self._units:
                return self._units[device]
            raise KeyError(f"no device with id {device} in the history")
        return str(device)

    # -- writing -----------------------------------------------------------------------
    def add(
        self,
        device: str,
        ts: float,
        values: Iterable[tuple[Any, ...]],
    ) -> int:
        """Buffer one device's values ``(register, value, unit, changes_only[, scale])``.

        With a ``scale`` (the register's, e.g. 0.01) the value is stored as the raw
        integer ``round(value / scale)`` — 1-4 bytes on disk instead of an 8-byte
        real — and scaled back on reading. A changes-only value equal to the last one
        written is skipped unless that write is ``heartbeat`` seconds old. Returns how
        many rows were buffered.
        """
        ts_ms = _ms(ts)
        hb_ms = _ms(self.heartbeat)
        queued = 0
        values = list(values)
        did = self._devices.get(device) or self.device_id(device)
        series = self._series
        for row in values:  # new names need the connection: never under _buf_lock
            if (did, row[0]) not in series:
                self.series_id(device, row[0], row[2], row[4] if len(row) > 4 else 1.0)
        with self._buf_lock:
            last_written, pending, scales = self._last, self._pending, self._scale
            for row in values:
                name, value, changes_only = row[0], row[1], row[3]
                sid = series[(did, name)]
                value = _stored(value, scales.get(sid, 1.0))
                last = last_written.get(sid)
                if changes_only and last is not None and last[0] == value and ts_ms - last[1] < hb_ms:
                    self.rows_skipped += 1
                    continue
                last_written[sid] = (value, ts_ms)
                pending.append((ts_ms, sid, value))
                queued += 1
        return queued

    def flush(self, wait: bool = True) -> int:
        """Commit everything buffered in one transaction; returns the rows written.

        With ``wait=False`` (the poll loop) a flush that would wait for a running
        maintenance pass is skipped; the rows stay buffered for the next cycle.
        """
        if not self.lock.acquire(blocking=wait):
            return 0
        try:
            with self._buf_lock:
                rows, self._pending = self._pending, []
            if not rows:
                return 0
            try:
                with self.transaction() as conn:
                    conn.executemany("INSERT OR REPLACE INTO recent VALUES (?, ?, ?)", rows)
            except BaseException:
                with self._buf_lock:
                    self._pending[:0] = rows
                raise
            self.rows_written += len(rows)
            return len(rows)
        finally:
            self.lock.release()

    # -- maintenance -------------------------------------------------------------------
    def compact(self, chunk: float = 10.0) -> int:
        """Move committed cycles from time-major ``recent`` into series-major ``sample``.

        Writing each poll cycle straight into ``sample`` would dirty one b-tree page
        per series per second (4800 pages at 32 x 150); appending to ``recent`` dirties
        a few dozen, and this move touches each series' page once per compaction. It
        runs in ``chunk``-second slices, each its own short transaction, so writers
        on other threads are never held up for long.
        """
        moved = 0
        while True:
            with self.transaction() as conn:
                (first,) = conn.execute("SELECT min(ts) FROM recent").fetchone()
                if first is None:
                    return moved
                cut = first + _ms(chunk)
                cur = conn.execute(
                    "INSERT OR REPLACE INTO sample SELECT series, ts, value FROM recent "
                    "WHERE ts < ? ORDER BY series, ts", (cut,))
                conn.execute("DELETE FROM recent WHERE ts < ?", (cut,))
                moved += max(cur.rowcount, 0)

    def maintain(self, now: float | None = None, batch: int = 200) -> dict[str, int]:
        """Compact, fold complete minutes into ``minute``, apply both retention windows.

        Safe to run on a worker thread while the poll loop keeps adding samples; work
        is done in transactions of ``batch`` series, and re-running after a crash is
        harmless (aggregation is idempotent).
        """
        now_ms = _ms(time.time() if now is None else now)
        done_until = now_ms // MINUTE_MS * MINUTE_MS  # start of the current, open minute
        raw_cut = min(now_ms - _ms(self.raw_retention), done_until)
        minute_cut = now_ms - _ms(self.downsample_retention)
        stats = {"compacted": 0, "aggregated": 0, "raw_deleted": 0, "minute_deleted": 0}
        self.flush()
        stats["compacted"] = self.compact()
        with self.lock:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'aggregated_until'").fetchone()
            sids = sorted(self._series.values())
        since = int(row[0]) if row else 0
        for i in range(0, len(sids), batch):
            with self.transaction() as conn:
                for sid in sids[i : i + batch]:
                    if done_until > since:
                        cur = conn.execute(
                            """INSERT OR REPLACE INTO minute
                               SELECT series, ts / :m * :m, min(value), sum(value), max(value),
                                      count(value)
                               FROM sample WHERE series = :s AND ts >= :lo AND ts < :hi
                               GROUP BY ts / :m""",
                            {"m": MINUTE_MS, "s": sid, "lo": since, "hi": done_until},
                        )
                        stats["aggregated"] += max(cur.rowcount, 0)
                    cur = conn.execute("DELETE FROM sample WHERE series = ? AND ts < ?", (sid, raw_cut))
                    stats["raw_deleted"] += max(cur.rowcount, 0)
                    cur = conn.execute("DELETE FROM minute WHERE series = ? AND ts < ?", (sid, minute_cut))
                    stats["minute_deleted"] += max(cur.rowcount, 0)
        with self.transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('aggregated_until', ?)",
                         (max(since, done_until),))
        log.debug("store maintenance: %s", stats)
        return stats

    # -- reading -----------------------------------------------------------------------
    def devices(self) -> list[tuple[str, int | None, str | None]]:
        with self.lock:
            return list(self.conn.execute("SELECT name, unit, map FROM device ORDER BY name"))

    def registers(self, device: str | int) -> list[tuple[str, str]]:
        """``(register, unit)`` for every series recorded for ``device``."""
        with self.lock:
            did = self._devices.get(self._resolve(device))
            if did is None:
                return []
            return list(self.conn.execute(
                "SELECT name, unit FROM series WHERE device = ? ORDER BY name", (did,)))

    def history(
        self,
        device: str | int,
        register: str,
        start: float,
        end: float,
        resolution: float | None = None,
    ) -> list[tuple[Any, ...]]:
        """Samples of one register in ``[start, end)`` (epoch seconds).

        ``resolution`` None picks raw samples when the window is still inside the raw
        retention, else minute aggregates. ``0`` forces raw rows ``(ts, value)``; a
        positive number returns buckets ``(ts, avg, min, max)`` of that many seconds
        (from raw rows below 60 s, from the minute table otherwise).
        """
        with self.lock:
            did = self._devices.get(self._resolve(device))
            sid = self._series.get((did, register)) if did is not None else None
            if sid is None:
                return []
            lo, hi = _ms(start), _ms(end)
            if resolution is None:
                raw_from = _ms(time.time() - self.raw_retention)
                resolution = 0 if lo >= raw_from else 60
            scale = self._scale.get(sid, 1.0)
            if resolution <= 0:
                rows = self.conn.execute(
                    f"SELECT ts, value FROM ({_RAW}) ORDER BY ts", {"s": sid, "lo": lo, "hi": hi})
                return [(ts / 1000.0, _scaled(v, scale)) for ts, v in rows]
            bucket = max(1, _ms(resolution))
            if bucket < MINUTE_MS:
                sql = f"""SELECT ts / :b * :b AS t, avg(value), min(value), max(value)
                          FROM ({_RAW}) GROUP BY t ORDER BY t"""
            else:
                bucket = bucket // MINUTE_MS * MINUTE_MS
                sql = """SELECT ts / :b * :b AS t, sum(sum) / sum(n), min(min), max(max)
                         FROM minute WHERE series = :s AND ts >= :lo AND ts < :hi
                         GROUP BY t ORDER BY t"""
            rows = self.conn.execute(sql, {"b": bucket, "s": sid, "lo": lo, "hi": hi})
            return [(t / 1000.0, _scaled(avg, scale, 3), _scaled(mn, scale), _scaled(mx, scale))
                    for t, avg, mn, mx in rows]

    def last(self, device: str | int, register: str) -> tuple[float, float | None] | None:
        """The newest stored raw sample ``(ts, value)`` of one register, if any."""
        with self.lock:
            did = self._devices.get(self._resolve(device))
            sid = self._series.get((did, register)) if did is not None else None
            if sid is None:
                return None
            row = self.conn.execute(
                "SELECT ts, value FROM recent WHERE series = ? ORDER BY ts DESC LIMIT 1", (sid,)
            ).fetchone() or self.conn.execute(
                "SELECT ts, value FROM sample WHERE series = ? ORDER BY ts DESC LIMIT 1", (sid,)
            ).fetchone()
            return None if row is None else (row[0] / 1000.0, _scaled(row[1], self._scale[sid]))

    def counts(self) -> dict[str, int]:
        with self.lock:
            return {
                table: self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                for table in ("device", "series", "recent", "sample", "minute")
            }

    def integrity_ok(self) -> bool:
        with self.lock:
            return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
