"""History store: schema, changes-only + heartbeat, batching, downsampling, retention."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackctl.store import Store

T0 = 1_699_999_980.0  # a minute boundary (epoch seconds divisible by 60)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "h.db", raw_retention=3600, downsample_retention=7 * 86400, heartbeat=600)
    yield s
    s.close()


def test_schema_is_wal_compact_and_interned(store: Store, tmp_path: Path) -> None:
    assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    sql = dict(store.conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))
    assert "WITHOUT ROWID" in sql["sample"] and "WITHOUT ROWID" in sql["minute"]
    indexes = store.conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'sample'").fetchall()
    assert all(name.startswith("sqlite_autoindex") for (name,) in indexes)  # PK only
    store.device_id("shelf-1", 1, "power_shelf")
    store.add("shelf-1", T0, [("psu1_out_v", 54.1, "V", False), ("psu1_out_a", 10.0, "A", False)])
    store.add("shelf-1", T0 + 1, [("psu1_out_v", 54.2, "V", False)])
    store.flush()
    rows = store.conn.execute("SELECT series, ts, value FROM recent ORDER BY ts, series").fetchall()
    assert len(rows) == 3
    assert all(isinstance(sid, int) for sid, _, _ in rows)  # integer ids, not names
    assert store.counts()["series"] == 2 and store.counts()["device"] == 1
    assert store.registers(1) == [("psu1_out_a", "A"), ("psu1_out_v", "V")]


def test_history_raw_and_by_id_or_name(store: Store) -> None:
    store.device_id("cdu-3", 3, "cdu")
    for i in range(5):
        store.add("cdu-3", T0 + i, [("supply_temp", 20.0 + i, "°C", False)])
    store.flush()
    assert store.history(3, "supply_temp", T0, T0 + 10, 0) == [
        (T0 + i, 20.0 + i) for i in range(5)]
    assert store.history("cdu-3", "supply_temp", T0 + 1, T0 + 3, 0) == [(T0 + 1, 21.0), (T0 + 2, 22.0)]
    assert store.history(3, "nope", T0, T0 + 10, 0) == []
    assert store.last(3, "supply_temp") == (T0 + 4, 24.0)
    with pytest.raises(KeyError):
        store.history(99, "supply_temp", T0, T0 + 1)


def test_nothing_is_visible_before_flush_and_flush_is_one_transaction(store: Store, tmp_path: Path) -> None:
    store.add("d", T0, [(f"r{i}", i, "", False) for i in range(150)])
    other = sqlite3.connect(tmp_path / "h.db")
    assert other.execute("SELECT count(*) FROM recent").fetchone()[0] == 0
    assert store.flush() == 150
    assert other.execute("SELECT count(*) FROM recent").fetchone()[0] == 150
    other.close()


def test_compaction_moves_cycles_to_series_major_storage(store: Store) -> None:
    for i in range(25):
        store.add("d", T0 + i, [("a", i, "", False), ("b", -i, "", False)])
    store.flush()
    before = store.history("d", "a", T0, T0 + 30, 0)
    assert store.compact(chunk=10) == 50
    assert store.counts()["recent"] == 0 and store.counts()["sample"] == 50
    assert store.history("d", "a", T0, T0 + 30, 0) == before == [(T0 + i, float(i)) for i in range(25)]
    store.add("d", T0 + 25, [("a", 99, "", False)])  # half compacted, half recent
    store.flush()
    assert store.history("d", "a", T0 + 20, T0 + 30, 0)[-2:] == [(T0 + 24, 24.0), (T0 + 25, 99.0)]
    assert store.last("d", "a") == (T0 + 25, 99.0)


def test_changes_only_skips_repeats_but_keeps_a_heartbeat(store: Store) -> None:
    for i in range(0, 1500, 10):  # a slow register that never changes, 25 minutes
        store.add("d", T0 + i, [("mode", 1, "", True), ("volts", 54.0, "V", False)])
    store.add("d", T0 + 1500, [("mode", 2, "", True)])
    store.flush()
    mode = store.history("d", "mode", T0, T0 + 2000, 0)
    assert mode == [(T0, 1.0), (T0 + 600, 1.0), (T0 + 1200, 1.0), (T0 + 1500, 2.0)]
    assert len(store.history("d", "volts", T0, T0 + 2000, 0)) == 150  # not changes-only
    gaps = [b[0] - a[0] for a, b in zip(mode, mode[1:], strict=False)]
    assert max(gaps) <= store.heartbeat  # a reader can tell "unchanged" from "no data"


def test_maintain_downsamples_then_expires(store: Store) -> None:
    for i in range(180):  # three minutes of 1 Hz
        store.add("d", T0 + i, [("v", float(i % 60), "V", False)])
    store.flush()
    stats = store.maintain(now=T0 + 180 + 30)
    assert stats["aggregated"] == 3 and stats["raw_deleted"] == 0  # still inside raw window
    rows = store.history("d", "v", T0, T0 + 180, 60)
    assert rows == [(T0 + 60 * m, 29.5, 0.0, 59.0) for m in range(3)]
    # an hour later: raw samples past the retention are gone, minutes remain
    stats = store.maintain(now=T0 + 3600 + 200)
    assert store.history("d", "v", T0, T0 + 180, 0) == []
    assert len(store.history("d", "v", T0, T0 + 180, 60)) == 3
    # past the downsample retention the minutes go too
    store.maintain(now=T0 + 8 * 86400)
    assert store.history("d", "v", T0, T0 + 180, 60) == []
    assert store.counts()["sample"] == 0 and store.counts()["minute"] == 0


def test_the_open_minute_is_never_aggregated_early(store: Store) -> None:
    store.add("d", T0 + 5, [("v", 1.0, "", False)])
    store.flush()
    store.maintain(now=T0 + 30)  # minute T0 is still open
    store.add("d", T0 + 40, [("v", 3.0, "", False)])
    store.flush()
    store.maintain(now=T0 + 70)
    assert store.history("d", "v", T0, T0 + 60, 60) == [(T0, 2.0, 1.0, 3.0)]


def test_auto_resolution_uses_minutes_beyond_the_raw_window(store: Store) -> None:
    import time

    now = time.time() // 60 * 60
    old = now - 2 * 3600
    for i in range(120):
        store.add("d", old + i, [("v", 1.0, "", False)])
    store.flush()
    store.maintain(now=now)
    rows = store.history("d", "v", old, old + 120)  # resolution None: auto
    assert [r[0] for r in rows] == [old, old + 60] and all(len(r) == 4 for r in rows)


def test_bucketed_raw_history_below_a_minute(store: Store) -> None:
    for i in range(20):
        store.add("d", T0 + i, [("v", float(i), "", False)])
    store.flush()
    assert store.history("d", "v", T0, T0 + 20, 10) == [
        (T0, 4.5, 0.0, 9.0), (T0 + 10, 14.5, 10.0, 19.0)]


def test_reopen_keeps_dictionary_ids(tmp_path: Path) -> None:
    s = Store(tmp_path / "x.db")
    sid = s.series_id("d", "v", "V")
    s.close()
    s = Store(tmp_path / "x.db")
    assert s.series_id("d", "v", "V") == sid
    s.close()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 299), st.floats(-1e6, 1e6)), min_size=1, max_size=80,
                unique_by=lambda t: t[0]))
def test_minute_aggregates_match_the_samples(samples: list[tuple[int, float]]) -> None:
    s = Store(":memory:")
    try:
        s.add("d", T0, [])
        for t, v in samples:
            s.add("d", T0 + t, [("v", v, "", False)])
        s.flush()
        s.maintain(now=T0 + 400)
        got = {row[0]: row[1:] for row in s.history("d", "v", T0, T0 + 400, 60)}
        for minute in {t // 60 for t, _ in samples}:
            vals = [v for t, v in samples if t // 60 == minute]
            avg, mn, mx = got[T0 + minute * 60]
            assert mn == min(vals) and mx == max(vals)
            assert avg == pytest.approx(sum(vals) / len(vals), rel=1e-9, abs=1e-6)
        assert len(got) == len({t // 60 for t, _ in samples})
    finally:
        s.close()


def test_scaled_registers_are_stored_as_raw_integers(store: Store) -> None:
    volts = [54.12, 54.13, 53.99, 54.0]
    for i, v in enumerate(volts):
        store.add("shelf", T0 + i, [("dc_v", v, "V", False, 0.01), ("temp", -12.5, "°C", False, 0.1)])
    store.flush()
    stored = [v for (v,) in store.conn.execute("SELECT value FROM recent ORDER BY ts, series")]
    assert stored[::2] == [5412, 5413, 5399, 5400]  # integral: SQLite keeps them as ints on disk
    assert store.history("shelf", "dc_v", T0, T0 + 10, 0) == [(T0 + i, v) for i, v in enumerate(volts)]
    assert store.last("shelf", "temp") == (T0 + 3, -12.5)
    store.maintain(now=T0 + 61)
    ((_, avg, mn, mx),) = store.history("shelf", "dc_v", T0, T0 + 60, 60)
    assert (avg, mn, mx) == (pytest.approx(sum(volts) / 4), 53.99, 54.13)
