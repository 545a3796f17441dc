"""CLI bus commands (scan, info, read, write, monitor) against an in-memory bus."""

from __future__ import annotations

import json

import pytest
from bus_fakes import FakeBoard, FakeLink
from click.testing import CliRunner

from rackctl.cli import common
from rackctl.cli.main import cli

pytestmark = pytest.mark.timeout(60)

BUS = ["--port", "/dev/fake", "--parity", "N"]


@pytest.fixture
def boards() -> dict[int, FakeBoard]:
    shelf = FakeBoard("power_shelf", "PS0001")
    shelf.set("dc_v", 51.23)
    shelf.set("dc_i", 210.5)
    shelf.set("psu1_temp_inlet", -3.5)
    shelf.set("shelf_status", 0)
    cdu = FakeBoard("cdu", "CDU0002")
    cdu.set("flow", 123.4)
    return {1: shelf, 3: cdu}


@pytest.fixture(autouse=True)
def fake_bus(monkeypatch: pytest.MonkeyPatch, boards: dict[int, FakeBoard]) -> FakeLink:
    link = FakeLink(boards)
    monkeypatch.setattr(common, "LINK_FACTORY", lambda bus: link)
    return link


def invoke(*args: str, input: str | None = None):
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def test_scan_finds_both_boards() -> None:
    r = invoke("scan", *BUS, "--ids", "1-4", "--json")
    assert r.exit_code == 0, r.output
    found = json.loads(r.output)
    assert [(f["id"], f["board"], f["serial"], f["fw"]) for f in found] == [
        (1, "power_shelf", "PS0001", "1.2"),
        (3, "cdu", "CDU0002", "1.2"),
    ]


def test_scan_table_and_empty_bus() -> None:
    r = invoke("scan", *BUS, "--ids", "1-3")
    assert r.exit_code == 0 and "PS0001" in r.output and "CDU0002" in r.output
    r = invoke("scan", *BUS, "--ids", "10-12")
    assert r.exit_code == common.EXIT_TIMEOUT
    assert "no board answered" in r.output and "Traceback" not in r.output


def test_scan_rejects_bad_ids() -> None:
    r = invoke("scan", *BUS, "--ids", "5-2")
    assert r.exit_code == 2
    assert "1..247" in r.output


def test_read_by_name_and_address(boards: dict[int, FakeBoard]) -> None:
    dc_i = f"ir:{boards[1].map.get('dc_i').address}"
    r = invoke("read", *BUS, "-u", "1", "--json", "dc_v", dc_i, "psu1_temp_inlet", "vout_setpoint")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert body["dc_v"] == {"value": 51.23, "unit": "V", "raw": 5123}
    assert body["dc_i"]["value"] == pytest.approx(210.5)
    assert body["psu1_temp_inlet"]["value"] == -3.5
    assert body["vout_setpoint"]["value"] == 51.0


def test_read_table_output() -> None:
    r = invoke("read", *BUS, "-u", "3", "flow")
    assert r.exit_code == 0, r.output
    assert "flow" in r.output and "123.4 L/min" in r.output


def test_read_unknown_register_suggests() -> None:
    r = invoke("read", *BUS, "-u", "1", "dc_volts")
    assert r.exit_code == 2
    assert "no register 'dc_volts'" in r.output


def test_read_silent_unit_is_a_clear_timeout() -> None:
    r = invoke("read", *BUS, "-u", "9", "dc_v")
    assert r.exit_code == common.EXIT_TIMEOUT
    assert "no response" in r.output and "--parity" in r.output
    assert "Traceback" not in r.output


def test_write_with_yes(boards: dict[int, FakeBoard]) -> None:
    r = invoke("write", *BUS, "-u", "1", "--yes", "vout_setpoint", "52.5")
    assert r.exit_code == 0, r.output
    assert "unit 1: vout_setpoint 51.00 V -> 52.50 V" in r.output
    assert boards[1].writes == [(100, [5250])]


def test_write_out_of_range_sends_nothing(boards: dict[int, FakeBoard]) -> None:
    r = invoke("write", *BUS, "-u", "1", "--yes", "vout_setpoint", "60")
    assert r.exit_code == 1
    assert "outside" in r.output and "vout_setpoint" in r.output
    assert boards[1].writes == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["dc_v", "50"], "read-only"),
        (["ov_threshold", "55"], "--unlock"),
        (["vout_setpoint", "fifty"], "takes a number"),
    ],
)
def test_write_refusals(boards: dict[int, FakeBoard], args: list[str], message: str) -> None:
    r = invoke("write", *BUS, "-u", "1", "--yes", *args)
    assert r.exit_code != 0
    assert message in r.output
    assert boards[1].writes == []


def test_write_protected_with_unlock(boards: dict[int, FakeBoard]) -> None:
    r = invoke("write", *BUS, "-u", "1", "--yes", "--unlock", "ov_threshold", "55")
    assert r.exit_code == 0, r.output
    assert boards[1].writes == [(102, [5500])]
    assert boards[1].unlock_state == 2


def test_write_without_tty_and_without_yes_refuses(boards: dict[int, FakeBoard]) -> None:
    r = invoke("write", *BUS, "-u", "1", "vout_setpoint", "52")  # CliRunner stdin is no TTY
    assert r.exit_code == common.EXIT_ABORTED
    assert "--yes" in r.output
    assert boards[1].writes == []


@pytest.mark.parametrize(("answer", "written"), [("y\n", True), ("n\n", False)])
def test_write_asks_on_a_tty(
    monkeypatch: pytest.MonkeyPatch, boards: dict[int, FakeBoard], answer: str, written: bool
) -> None:
    monkeypatch.setattr(common, "stdin_is_tty", lambda: True)
    from rackctl.cli import write

    monkeypatch.setattr(write, "stdin_is_tty", lambda: True)
    r = invoke("write", *BUS, "-u", "1", "vout_setpoint", "52", input=answer)
    assert "51 V -> 52 V" in r.output
    assert (boards[1].writes == [(100, [5200])]) is written
    assert r.exit_code == (0 if written else common.EXIT_ABORTED)


def test_write_enum_by_name(boards: dict[int, FakeBoard]) -> None:
    r = invoke("write", *BUS, "-u", "1", "--yes", "psu2_on_cmd", "off")
    assert r.exit_code == 0, r.output
    assert boards[1].writes == [(114, [0])]


def test_info_shows_identity_and_settings() -> None:
    r = invoke("info", *BUS, "-u", "1", "--json")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert body["board"] == "power_shelf"
    assert body["identity"]["serial"] == "PS0001"
    assert body["registers"]["ov_threshold"]["value"] == 57.0
    assert "uptime" in body["registers"]


def test_monitor_once_renders_devices_and_flags(boards: dict[int, FakeBoard]) -> None:
    flags = sorted(boards[1].map.get("shelf_status").bits or {})
    boards[1].set("shelf_status", [flags[0]])
    r = invoke("monitor", *BUS, "--ids", "1,3,5", "--once")
    assert r.exit_code == 0, r.output
    assert "power_shelf" in r.output and "cdu" in r.output
    assert "dc_v" in r.output and "51.23" in r.output
    assert flags[0] in r.output


def test_monitor_without_tty_prints_summaries() -> None:
    r = invoke("monitor", *BUS, "--ids", "1,3,5", "--count", "2", "--interval", "0.1")
    assert r.exit_code == 0, r.output
    lines = [line for line in r.output.splitlines() if "devices online" in line]
    assert len(lines) == 2
    assert "2/2 devices online" in lines[-1]


def test_bad_port_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "LINK_FACTORY", common._rtu_link)
    r = invoke("read", "--port", "/dev/does-not-exist-rackctl", "-u", "1", "dc_v")
    assert r.exit_code == common.EXIT_CONFIG
    assert "cannot open /dev/does-not-exist-rackctl" in r.output
    assert "Traceback" not in r.output


def test_port_is_required() -> None:
    r = CliRunner(env={"RACKCTL_PORT": None}).invoke(cli, ["read", "-u", "1", "dc_v"])
    assert r.exit_code == 2 and "--port" in r.output


def test_unexpected_error_is_one_line(monkeypatch: pytest.MonkeyPatch, fake_bus: FakeLink) -> None:
    async def boom(*args: object) -> list[int]:
        raise RuntimeError("boom")

    monkeypatch.setattr(fake_bus, "read", boom)
    monkeypatch.delenv("RACKCTL_DEBUG", raising=False)
    r = CliRunner().invoke(cli, ["read", *BUS, "-u", "1", "dc_v"])
    assert r.exit_code == 1
    assert "internal error: RuntimeError: boom" in r.output and "RACKCTL_DEBUG" in r.output
    assert "Traceback" not in r.output
