"""CLI commands on the history database (history, export, plot, alarms) and run/daemon."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bus_fakes import FakeBoard, FakeLink
from click.testing import CliRunner
from http_fakes import FakeDaemon
from hypothesis import given
from hypothesis import strategies as st

from rackctl.alarms import AlarmManager
from rackctl.cli import run as run_cmd
from rackctl.cli.common import EXIT_CONFIG, EXIT_USAGE, parse_time
from rackctl.cli.daemon import apply_overrides
from rackctl.cli.main import cli
from rackctl.config import loads
from rackctl.store import Store

pytestmark = pytest.mark.timeout(60)

T0 = float(int(time.time()) // 60 * 60 - 600)  # recent: inside the raw retention


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "rack.db")
    store = Store(path)
    store.device_id("shelf-a", 1, "power_shelf")
    store.device_id("cdu-a", 3, "cdu")
    for i in range(120):
        ts = T0 + i
        store.add("shelf-a", ts, [("dc_v", 50.0 + i / 100, "V", False), ("dc_i", 100.0, "A", False)])
        store.add("cdu-a", ts, [("flow", 80.0, "L/min", False)])
    store.flush()
    alarms = AlarmManager(store)
    alarms.raise_alarm("shelf-a", 1, "rule:hot", name="hot", kind="threshold", severity="critical",
                       latched=True, message="too hot", ts=T0 + 5)
    alarms.raise_alarm("cdu-a", 3, "rule:flow", name="low flow", kind="threshold",
                       severity="warning", latched=False, message="flow", ts=T0 + 6)
    alarms.clear("shelf-a", "rule:hot", ts=T0 + 10)
    store.close()
    return path


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


RANGE = ["--from", str(T0), "--to", str(T0 + 60)]


def test_history_csv(db: str) -> None:
    r = invoke("history", "--db", db, "shelf-a", "dc_v", *RANGE, "--format", "csv", "--resolution", "0")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.output)))
    assert len(rows) == 60  # [from, to)
    assert float(rows[0]["value"]) == 50.0 and float(rows[-1]["value"]) == pytest.approx(50.59)


def test_history_by_unit_id_json_buckets(db: str) -> None:
    r = invoke("history", "--db", db, "1", "dc_v", *RANGE, "--format", "json", "--resolution", "30")
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert [row["ts"] for row in rows] == [T0 - T0 % 30 + k * 30 for k in range(len(rows))]
    assert all(row["min"] <= row["avg"] <= row["max"] for row in rows)


def test_history_listings_and_table(db: str) -> None:
    r = invoke("history", "--db", db)
    assert "shelf-a" in r.output and "cdu-a" in r.output
    r = invoke("history", "--db", db, "cdu-a")
    assert "flow" in r.output and "L/min" in r.output
    r = invoke("history", "--db", db, "shelf-a", "dc_i", *RANGE)
    assert r.exit_code == 0 and "60 rows" in r.output


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["nobody", "dc_v"], EXIT_USAGE, "known: cdu-a (id 3), shelf-a (id 1)"),
        (["shelf-a", "dc"], EXIT_USAGE, "did you mean dc_i, dc_v"),
        (["shelf-a", "dc_v", "--from", "now", "--to", "-1h"], EXIT_USAGE, "must be before"),
        (["shelf-a", "dc_v", "--from", "last tuesday"], 2, "ISO 8601"),
    ],
)
def test_history_errors(db: str, args: list[str], code: int, message: str) -> None:
    r = invoke("history", "--db", db, *args)
    assert r.exit_code == code
    assert message in r.output
    assert "Traceback" not in r.output


def test_missing_db_is_explained(tmp_path: Path) -> None:
    r = invoke("history", "--db", str(tmp_path / "nope.db"))
    assert r.exit_code == EXIT_CONFIG and "no history database" in r.output
    assert not (tmp_path / "nope.db").exists()


def test_export_csv_long_format(db: str, tmp_path: Path) -> None:
    out = tmp_path / "x.csv"
    r = invoke("export", "--db", db, *RANGE, "--resolution", "0", "-o", str(out))
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 180
    assert {(r["device"], r["register"], r["unit"]) for r in rows} == {
        ("shelf-a", "dc_v", "V"), ("shelf-a", "dc_i", "A"), ("cdu-a", "flow", "L/min")
    }
    assert [float(r["ts"]) for r in rows] == sorted(float(r["ts"]) for r in rows)


def test_export_json_filtered(db: str) -> None:
    r = invoke("export", "--db", db, *RANGE, "-d", "3", "--format", "json", "--resolution", "0")
    rows = json.loads(r.output)
    assert len(rows) == 60 and {row["register"] for row in rows} == {"flow"}


def test_plot_png(db: str, tmp_path: Path) -> None:
    out = tmp_path / "p.png"
    r = invoke("plot", "--db", db, "shelf-a", "dc_v", "dc_i", *RANGE, "-o", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_empty_range(db: str, tmp_path: Path) -> None:
    r = invoke("plot", "--db", db, "shelf-a", "dc_v", "--from", "1000", "--to", "2000",
               "-o", str(tmp_path / "p.png"))
    assert r.exit_code == 1 and "no samples" in r.output


def test_alarms_list_ack(db: str) -> None:
    r = invoke("alarms", "--db", db, "--json")
    open_alarms = json.loads(r.output)
    # latched 'hot' cleared but unacked stays open; 'low flow' is active
    assert {(a["name"], a["state"]) for a in open_alarms} == {("hot", "latched"), ("low flow", "active")}
    hot = next(a for a in open_alarms if a["name"] == "hot")
    r = invoke("alarms", "--db", db, "ack", str(hot["id"]))
    assert r.exit_code == 0 and "acknowledged" in r.output
    r = invoke("alarms", "--db", db, "--json")
    assert [a["name"] for a in json.loads(r.output)] == ["low flow"]
    r = invoke("alarms", "--db", db, "--all", "--since", str(T0))
    assert "hot" in r.output
    r = invoke("alarms", "--db", db, "ack", "999")
    assert r.exit_code == EXIT_USAGE and "no alarm 999" in r.output


def test_parse_time() -> None:
    assert parse_time("now", now=1000.0) == 1000.0
    assert parse_time("-2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_time("30m", now=10_000.0) == 10_000.0 - 1800
    assert parse_time("1700000000") == 1_700_000_000.0
    assert parse_time("2023-11-14T22:13:20+00:00") == 1_700_000_000.0


CFG = """
[[buses]]
name = "b"
port = "/dev/ttyA"
[[devices]]
id = 1
map = "cdu"
"""


def test_daemon_overrides() -> None:
    cfg = apply_overrides(loads(CFG), "/dev/ttyB", "0.0.0.0:9100", "/tmp/x.db")
    assert cfg.buses[0].port == "/dev/ttyB"
    assert (cfg.http.bind, cfg.http.port) == ("0.0.0.0", 9100)
    assert cfg.store.path == "/tmp/x.db"
    assert apply_overrides(loads(CFG), "b=/dev/ttyC", None, None).buses[0].port == "/dev/ttyC"


def test_daemon_bad_config_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(CFG.replace('map = "cdu"', 'map = "toaster"'))
    r = invoke("daemon", "--config", str(path))
    assert r.exit_code == EXIT_CONFIG
    assert "devices[0].map" in r.output and "Traceback" not in r.output
    r = invoke("daemon", "--config", str(tmp_path / "missing.toml"))
    assert r.exit_code == EXIT_CONFIG and "cannot read" in r.output
    path.write_text(CFG)
    r = invoke("daemon", "--config", str(path), "--http", "localhost:http")
    assert r.exit_code == EXIT_USAGE and "--http" in r.output


def test_run_against_a_bus_prints_summaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    shelf, cdu = FakeBoard("power_shelf"), FakeBoard("cdu")
    shelf.set("dc_v", 51.0)
    link = FakeLink({1: shelf, 3: cdu})
    monkeypatch.setattr(run_cmd, "links_for", lambda cfg: {"rack": link})
    db = tmp_path / "var" / "run.db"
    r = invoke("run", "--port", "/dev/fake", "--ids", "1:power_shelf,3:cdu", "--http", "127.0.0.1:0",
               "--db", str(db), "--every", "0.2", "--duration", "1.5")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if "devices online" in line]
    assert lines and "2/2 devices online" in lines[-1]
    assert "metrics http://127.0.0.1:" in r.output
    r = invoke("history", "--db", str(db), "1", "dc_v", "--format", "json", "--resolution", "0")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)[-1]["value"] == 51.0


def test_run_port_in_use_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    monkeypatch.setattr(run_cmd, "links_for", lambda cfg: {"rack": FakeLink({})})
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = invoke("run", "--port", "/dev/fake", "--http", f"127.0.0.1:{port}",
                   "--db", str(tmp_path / "r.db"), "--duration", "5")
    assert r.exit_code == EXIT_CONFIG, r.output
    assert f"cannot listen on 127.0.0.1:{port}" in r.output and "--http" in r.output


def test_systemd_unit_runs_the_daemon_command() -> None:
    import shlex

    from rackctl.cli.daemon import command as daemon_command

    unit = (Path(__file__).parents[2] / "packaging" / "rackctl.service").read_text()
    sections = {line.strip() for line in unit.splitlines() if line.startswith("[")}
    assert {"[Unit]", "[Service]", "[Install]"} <= sections
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[0].endswith("/rackctl") and argv[1] == "daemon"
    # the flags the unit passes are ones the command accepts (click would exit 2 otherwise)
    ctx = daemon_command.make_context("daemon", argv[2:])
    assert ctx.params["config_path"] == "/etc/rackctl/rackctl.toml"
    assert "Type=notify" in unit  # the daemon sends READY=1 (sd_notify)


def test_sd_notify(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import socket

    from rackctl.cli.daemon import sd_notify

    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(5)
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        sd_notify("READY=1")
        assert sock.recv(64) == b"READY=1"
    monkeypatch.delenv("NOTIFY_SOCKET")
    sd_notify("READY=1")  # no socket: silently nothing


@given(st.lists(st.integers(1, 247), min_size=1, max_size=40))
def test_parse_ids_round_trip(ids: list[int]) -> None:
    from rackctl.cli.common import parse_ids

    # format as runs ("3-7") and singles, shuffled by hypothesis' order
    unique = sorted(set(ids))
    runs: list[list[int]] = []
    for i in unique:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    text = ",".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)
    assert parse_ids(text) == unique


@given(st.text(max_size=12))
def test_parse_ids_never_crashes(text: str) -> None:
    import click

    from rackctl.cli.common import parse_ids

    try:
        out = parse_ids(text)
    except click.BadParameter:
        return
    assert out and all(1 <= i <= 247 for i in out)


@pytest.mark.skipif(not run_cmd.EXAMPLE_CONFIG.exists(), reason="no examples/daemon.toml")
def test_run_uses_the_example_config_for_the_default_rack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RACKCTL_TOKEN", "abc")
    rack = run_cmd.RackHandle("/tmp/rack/ttyX", run_cmd.default_layout())
    cfg = run_cmd.run_config(None, rack, "var/x.db", "127.0.0.1:0", "N", 115200)
    assert [b.port for b in cfg.buses] == ["/tmp/rack/ttyX"]
    assert {(d.id, d.map) for d in cfg.devices} == {(u, m) for u, m, _ in rack.layout}
    assert (cfg.http.bind, cfg.http.port, cfg.http.token) == ("127.0.0.1", 0, "abc")
    assert cfg.store.path == "var/x.db"
    # a custom layout gets a config built from it
    cfg = run_cmd.run_config(None, run_cmd.RackHandle("/dev/p", ((5, "cdu", "c5"),)), "x.db", "127.0.0.1:0", "N", 9600)
    assert [(d.id, d.map) for d in cfg.devices] == [(5, "cdu")] and cfg.buses[0].baud == 9600


@pytest.fixture
def http_daemon() -> Iterator[tuple[str, FakeDaemon]]:
    """A FakeDaemon behind a real HttpServer on its own thread (CliRunner is synchronous)."""
    import asyncio
    import threading

    from rackctl.http_server import HttpServer

    daemon = FakeDaemon()
    loop = asyncio.new_event_loop()
    server = HttpServer(daemon, "tok", "127.0.0.1", 0)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.url, daemon
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.run_until_complete(server.stop())
    loop.close()


def test_alarm_ack_through_the_daemon(http_daemon: tuple[str, FakeDaemon], tmp_path: Path) -> None:
    url, daemon = http_daemon
    db = str(tmp_path / "unused.db")
    r = invoke("alarms", "--db", db, "ack", "--url", url, "--token", "tok", "1")
    assert r.exit_code == 0, r.output
    assert "acknowledged 1" in r.output and daemon.alarms.list()[0].acked
    r = invoke("alarms", "--db", db, "ack", "--url", url, "--token", "bad", "3")
    assert r.exit_code == EXIT_USAGE and "401" in r.output
    assert not daemon.alarms.list()[2].acked
    r = invoke("alarms", "--db", db, "ack", "--url", url, "--token", "tok", "77")
    assert r.exit_code == EXIT_USAGE and "404 no alarm 77" in r.output
    r = invoke("alarms", "--db", db, "ack", "--url", "http://127.0.0.1:1", "--token", "tok", "1")
    assert r.exit_code == EXIT_CONFIG and "cannot reach" in r.output


def test_foreign_database_is_explained(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE series (id INTEGER PRIMARY KEY, device INTEGER, name TEXT)")
    r = invoke("history", "--db", str(path))
    assert r.exit_code == EXIT_CONFIG, r.output
    assert "history database error" in r.output and "Traceback" not in r.output


def test_run_starts_and_stops_the_emulated_rack(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The rackhil glue, with a stand-in for rackhil.rack (the real one is covered by HIL tests)."""
    import sys
    import types

    events: list[str] = []

    class StandInRack:
        devices = [(1, "power_shelf", "shelf-1"), (3, "cdu", "cdu-1")]
        port = "/tmp/rack/ttyFAKE"

        @classmethod
        def default(cls, *, realtime: bool, runtime: str | None) -> StandInRack:
            events.append(f"default realtime={realtime} runtime={runtime}")
            return cls()

        def start(self) -> StandInRack:
            events.append("start")
            return self

        def stop(self) -> None:
            events.append("stop")

    module = types.ModuleType("rackhil.rack")
    module.Rack = StandInRack  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rackhil.rack", module)
    boards = {1: FakeBoard("power_shelf"), 3: FakeBoard("cdu")}
    seen: list[str] = []

    def links(cfg: object) -> dict[str, FakeLink]:
        seen.extend(b.port for b in cfg.buses)  # type: ignore[attr-defined]
        return {b.name: FakeLink(boards) for b in cfg.buses}  # type: ignore[attr-defined]

    monkeypatch.setattr(run_cmd, "links_for", links)
    r = invoke("run", "--runtime", "cpython", "--http", "127.0.0.1:0", "--db", str(tmp_path / "r.db"),
               "--every", "0.2", "--duration", "0.6")
    assert r.exit_code == 0, r.output
    assert events == ["default realtime=True runtime=cpython", "start", "stop"]
    assert seen == ["/tmp/rack/ttyFAKE"]
    assert "2/2 devices online" in r.output
