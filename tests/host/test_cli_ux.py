"""What an operator sees: one clear line per mistake, the right exit code, close-match
hints, and live views that fit a 120x40 terminal. One test per fix found by using the
CLI against the emulated rack."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from bus_fakes import FakeBoard, FakeLink
from click.testing import CliRunner
from rich.console import Console

from rackctl.alarms import AlarmManager
from rackctl.cli import common
from rackctl.cli.main import cli
from rackctl.cli.monitor import BusPoller, pick_view
from rackctl.daemon_view import DeviceView, Sample
from rackctl.monitor_view import device_panel
from rackctl.store import Store
from rackproto.errors import DeviceTimeout, ModbusException

pytestmark = pytest.mark.timeout(60)

BUS = ["--port", "/dev/fake", "--parity", "N"]


@pytest.fixture
def boards() -> dict[int, FakeBoard]:
    shelf = FakeBoard("power_shelf", "PS0001")
    shelf.set("dc_v", 51.23)
    return {1: shelf, 3: FakeBoard("cdu", "CDU0002")}


@pytest.fixture(autouse=True)
def link(monkeypatch: pytest.MonkeyPatch, boards: dict[int, FakeBoard]) -> FakeLink:
    fake = FakeLink(boards)
    monkeypatch.setattr(common, "LINK_FACTORY", lambda bus: fake)
    return fake


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("typo", "expected"),
    [("dcv", "dc_v"), ("psu_out_v", "psu1_out_v"), ("bbu_sco", "bbu_soc")],
)
def test_unknown_register_suggests_close_names(typo: str, expected: str) -> None:
    r = invoke("read", *BUS, "-u", "1", typo)
    assert r.exit_code == common.EXIT_USAGE
    assert f"did you mean {expected}" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_register_names_are_case_insensitive() -> None:
    r = invoke("read", *BUS, "-u", "1", "--json", "DC_V")
    assert r.exit_code == 0, r.output
    assert '"dc_v"' in r.output and "51.23" in r.output


def test_suggest_orders_block_instances_naturally() -> None:
    names = [f"psu{i}_out_v" for i in (3, 1, 2)] + ["dc_v"]
    assert common.suggest("psu_out_v", names) == ["psu3_out_v", "psu1_out_v", "psu2_out_v"]
    assert common.suggest("zzz", names) == []


# ------------------------------------------------------------------ bus errors


def test_timeout_message_drops_pymodbus_wording(monkeypatch: pytest.MonkeyPatch, link: FakeLink) -> None:
    async def silent(*args: object) -> list[int]:
        raise DeviceTimeout(
            "unit 9: no response (Modbus Error: [Input/Output] No response received after 1 retries)"
        )

    monkeypatch.setattr(link, "read", silent)
    r = invoke("read", *BUS, "-u", "9", "dc_v")
    assert r.exit_code == common.EXIT_TIMEOUT
    assert "unit 9: no response — check the unit id (-u)" in r.output
    assert "Modbus Error" not in r.output


def test_bus_commands_silence_pymodbus_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    logger = logging.getLogger("pymodbus")
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    monkeypatch.delenv("RACKCTL_DEBUG", raising=False)
    invoke("read", *BUS, "-u", "1", "dc_v")
    assert logger.level == logging.CRITICAL
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    monkeypatch.setenv("RACKCTL_DEBUG", "1")
    invoke("read", *BUS, "-u", "1", "dc_v")
    assert logger.level == logging.NOTSET


def test_missing_serial_device_says_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "LINK_FACTORY", common._rtu_link)
    r = invoke("read", "--port", "/dev/ttyUSB-not-here", "-u", "1", "dc_v")
    assert r.exit_code == common.EXIT_CONFIG
    assert "cannot open /dev/ttyUSB-not-here: no such device — check --port" in r.output
    assert r.output.count("/dev/ttyUSB-not-here") == 1


def test_scan_of_a_silent_bus_is_a_timeout_exit() -> None:
    r = invoke("scan", *BUS, "--ids", "20-22")
    assert r.exit_code == common.EXIT_TIMEOUT
    assert "no board answered" in r.output


# ------------------------------------------------------------------ write


def test_write_unknown_enum_name_lists_choices_and_sends_nothing(boards: dict[int, FakeBoard]) -> None:
    r = invoke("write", *BUS, "-u", "3", "-y", "mode_cmd", "bogus")
    assert r.exit_code == common.EXIT_ERROR
    assert "mode_cmd: 'bogus' is not one of standby (0), auto (1), manual (2)" in r.output
    r = invoke("write", *BUS, "-u", "3", "-y", "mode_cmd", "7")
    assert r.exit_code == common.EXIT_ERROR and "is not one of" in r.output
    assert boards[3].writes == []


def test_write_enum_by_number_still_works(boards: dict[int, FakeBoard]) -> None:
    r = invoke("write", *BUS, "-u", "3", "-y", "mode_cmd", "2")
    assert r.exit_code == 0, r.output
    assert "mode_cmd" in r.output and "-> manual" in r.output


@pytest.mark.parametrize(
    ("register", "value", "message"),
    [("ov_threshold", "56", "is protected: repeat with --unlock"), ("dc_v", "50", "is read-only (input:")],
)
def test_refused_writes_exit_6(boards: dict[int, FakeBoard], register: str, value: str, message: str) -> None:
    r = invoke("write", *BUS, "-u", "1", "-y", register, value)
    assert r.exit_code == common.EXIT_ABORTED
    assert message in r.output
    assert boards[1].writes == []


def test_write_reports_old_and_new_value_with_map_digits() -> None:
    r = invoke("write", *BUS, "-u", "1", "-y", "vout_setpoint", "52")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "unit 1: vout_setpoint 51.00 V -> 52.00 V"


# ------------------------------------------------------------------ read / info


def test_read_table_shows_firmware_version_and_no_string_hex() -> None:
    r = CliRunner().invoke(cli, ["read", *BUS, "-u", "1", "fw_version", "serial"], terminal_width=120)
    assert r.exit_code == 0, r.output
    fw_row = next(line for line in r.output.splitlines() if "fw_version" in line)
    assert "1.2" in fw_row and "258" in fw_row
    serial_row = next(line for line in r.output.splitlines() if "serial" in line)
    assert "PS0001" in serial_row and "5053" not in serial_row  # no hex dump of "PS"


def test_info_range_column_only_for_writable_registers() -> None:
    r = CliRunner().invoke(cli, ["info", *BUS, "-u", "3"], terminal_width=160)
    assert r.exit_code == 0, r.output
    rows = {line.split("│")[1].strip(): line for line in r.output.splitlines() if line.count("│") >= 4}
    assert "standby|auto|manual" in rows["mode_cmd"]
    assert "15.00..45.00 °C" in rows["t_supply_sp"]
    assert "4294967295" not in rows["uptime"]


def test_info_names_registers_older_firmware_lacks(boards: dict[int, FakeBoard]) -> None:
    cdu = boards[3]
    newest = max(r.address for r in cdu.map.table("holding"))
    real_read = cdu.read

    def old_firmware(table: str, address: int, count: int) -> list[int]:
        if table == "holding" and address <= newest < address + count:
            raise ModbusException(2, 3)
        return real_read(table, address, count)

    cdu.read = old_firmware  # type: ignore[method-assign]
    r = CliRunner().invoke(cli, ["info", *BUS, "-u", "3", "--json"])
    assert r.exit_code == 0, r.output
    missing = next(r.name for r in cdu.map.table("holding") if r.address <= newest < r.end)
    assert missing in r.output.split('"not on this board"')[1].splitlines()[0]
    assert '"t_supply_sp"' in r.output


# ------------------------------------------------------------------ monitor


def test_monitor_without_ids_discovers_and_shows_the_rack_table() -> None:
    r = CliRunner().invoke(cli, ["monitor", *BUS, "--once"], terminal_width=120)
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert any("PS0001" in line and "51.23 V" in line for line in lines)
    assert any("CDU0002" in line for line in lines)
    assert len(lines) <= 40


def test_monitor_view_choice() -> None:
    assert pick_view("auto", 1) == "detail"
    assert pick_view("auto", 4) == "rack"
    assert pick_view("detail", 4) == "detail"


async def test_full_power_shelf_panel_fits_120x40(link: FakeLink) -> None:
    poller = BusPoller(link, [1])
    await poller.cycle()
    dev = poller.devices()[0]
    now = time.time()
    samples = {k: Sample(v.value, v.unit, now) for k, v in poller.latest[1].items()}
    console = Console(width=120, record=True, color_system=None)
    console.print(device_panel(DeviceView(1, dev.board, dev.name, True), samples, {}, now))
    text = console.export_text()
    assert len(text.splitlines()) <= 38
    assert all(len(line) <= 120 for line in text.splitlines())
    assert "dc_v" in text and "psu6" in text


async def test_poller_stops_asking_for_registers_the_board_lacks(
    link: FakeLink, boards: dict[int, FakeBoard]
) -> None:
    shelf = boards[1]
    last = max((r for r in shelf.map.table("input")), key=lambda r: r.address)
    real_read = shelf.read
    refused: list[int] = []

    def old_firmware(table: str, address: int, count: int) -> list[int]:
        if table == "input" and address + count > last.address:  # its table ends earlier
            refused.append(address)
            raise ModbusException(2, 4)
        return real_read(table, address, count)

    shelf.read = old_firmware  # type: ignore[method-assign]
    poller = BusPoller(link, [1])
    await poller.cycle()
    assert poller.online[1] and last.name not in poller.latest[1] and "dc_v" in poller.latest[1]
    first = len(refused)
    await poller.cycle()
    assert len(refused) == first  # pruned: no more exception-02 round trips


# ------------------------------------------------------------------ database commands


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = str(tmp_path / "rack.db")
    store = Store(path)
    store.device_id("shelf-a", 1, "power_shelf")
    t0 = time.time() - 120
    for i in range(60):
        store.add("shelf-a", t0 + i, [("dc_v", 50.0, "V", False), ("psu1_out_v", 50.0, "V", False)])
    store.flush()
    store.close()
    return path


def test_history_table_prints_unix_seconds_in_full(db: str) -> None:
    r = CliRunner().invoke(cli, ["history", "--db", db, "shelf-a", "dc_v", "--from", "-5m"], terminal_width=120)
    assert r.exit_code == 0, r.output
    assert "e+09" not in r.output


def test_history_unknown_register_suggests(db: str) -> None:
    r = invoke("history", "--db", db, "shelf-a", "psu_out_v")
    assert r.exit_code == common.EXIT_USAGE
    assert "did you mean psu1_out_v" in r.output


def test_alarms_empty_is_one_line_and_list_is_an_alias(db: str) -> None:
    r = invoke("alarms", "--db", db)
    assert r.exit_code == 0 and r.output.strip() == "no open alarms"
    mgr = AlarmManager(Store(db))
    mgr.raise_alarm("shelf-a", 1, "rule:hot", name="hot", kind="threshold", severity="critical",
                    latched=True, message="too hot", ts=time.time())
    mgr.store.close()
    r = CliRunner().invoke(cli, ["alarms", "--db", db, "list"], terminal_width=160)
    assert r.exit_code == 0, r.output
    assert "too hot" in r.output and "1 open alarm(s)" in r.output


def test_regular_file_as_port_is_not_a_serial_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(common, "LINK_FACTORY", common._rtu_link)
    path = tmp_path / "rackctl.db"
    path.write_bytes(b"")
    r = invoke("read", "--port", str(path), "-u", "1", "dc_v")
    assert r.exit_code == common.EXIT_CONFIG
    assert r.output.strip() == f"Error: {path} is not a serial device — check --port"


def test_pty_with_parity_says_use_parity_n(monkeypatch: pytest.MonkeyPatch, link: FakeLink) -> None:
    import termios

    async def refuses_parity() -> None:
        raise termios.error(22, "Invalid argument")

    monkeypatch.setattr(link, "connect", refuses_parity)
    r = invoke("read", "--port", "/dev/pts/9", "-u", "1", "dc_v")  # default parity E
    assert r.exit_code == common.EXIT_CONFIG
    assert "cannot set 115200 8E1 on /dev/pts/9: Invalid argument — a pty has no parity: use --parity N" in r.output
    assert "internal error" not in r.output


def test_rack_overview_with_an_alarm_fits_120_columns_unclipped() -> None:
    from rackctl.daemon_view import AlarmView
    from rackctl.monitor_view import rack_overview

    devices = [DeviceView(3, "cdu", "cdu-1", True, state="online"),
               DeviceView(4, "cdu", "cdu-2", False, state="dormant")]
    s = Sample
    latest = {3: {"mode": s("standby", "", 0), "t_supply": s(27.06, "°C", 0), "t_return": s(30.21, "°C", 0),
                  "flow": s(316.7, "L/min", 0), "dp": s(100.1, "kPa", 0), "valve_pos": s(46.2, "%", 0),
                  "lead_pump": s(1, "", 0), "alarms": s(["high_temp"], "", 0), "leak_zones": s([], "", 0)}}
    alarm = AlarmView(2, 3, "alarms.high_temp", "alarms.high_temp", "warning", True, False,
                      time.time(), None, "alarms: high_temp set")
    console = Console(width=120, record=True, color_system=None)
    console.print(rack_overview(devices, latest, [alarm]))
    text = console.export_text()
    assert "…" not in text
    assert "316.7 L/min" in text and "100.1 kPa" in text and "dormant" in text
    assert "cdu-1 (3)" in text  # the alarm names its device


def test_plot_breaks_the_line_where_the_daemon_was_down() -> None:
    import math

    from rackctl.cli.plot import break_gaps

    rows = [(float(t), 1.0) for t in range(10)] + [(float(t), 2.0) for t in range(300, 305)]
    out = break_gaps(rows)
    assert len(out) == len(rows) + 1
    gap = out[10]
    assert 9 < gap[0] < 300 and math.isnan(gap[1])
    assert break_gaps(rows[:10]) == rows[:10]  # steady sampling: untouched


def test_history_cells_print_unix_seconds_in_full() -> None:
    from rackctl.cli.history import _cell

    assert _cell(1795618060.4213) == "1795618060.421"
    assert _cell(None) == "-"
    assert _cell(50.75) == "50.75"


async def test_second_daemon_fails_on_the_http_port_before_touching_the_bus() -> None:
    import asyncio
    import socket
    from types import SimpleNamespace

    from rackctl.cli.daemon import serve

    class Daemon:
        started = False
        closed = False

        async def start(self) -> None:
            self.started = True

        async def stop(self) -> None:
            pass

        @property
        def store(self) -> SimpleNamespace:
            return SimpleNamespace(close=lambda: setattr(self, "closed", True))

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        cfg = SimpleNamespace(http=SimpleNamespace(token="", bind="127.0.0.1", port=port))
        daemon = Daemon()
        with pytest.raises(common.CliError) as err:
            await serve(daemon, cfg, stop=asyncio.Event())
    assert err.value.exit_code == common.EXIT_CONFIG
    assert f"cannot listen on 127.0.0.1:{port}" in err.value.message
    assert not daemon.started and daemon.closed
