"""CLI bus commands end to end: the real RtuClient on a pty, a pymodbus RTU server behind it."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest
from bus_fakes import FakeBoard
from click.testing import CliRunner

from rackctl.cli.main import cli

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server() -> Iterator[object]:
    from pty_modbus import ModbusPtyServer

    shelf = FakeBoard("power_shelf", "PS0042")
    shelf.set("dc_v", 51.23)
    shelf.set("psu3_temp_inlet", -1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        srv = ModbusPtyServer({1: shelf})
    yield srv
    srv.close()


def bus(server: object) -> list[str]:
    return ["--port", server.port, "--parity", "N", "--timeout", "0.3"]  # type: ignore[attr-defined]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_read_over_pty(server: object) -> None:
    r = invoke("read", *bus(server), "-u", "1", "--json", "dc_v", "psu3_temp_inlet", "serial")
    assert r.exit_code == 0, r.output
    body = json.loads(r.output)
    assert body["dc_v"]["value"] == 51.23
    assert body["psu3_temp_inlet"]["value"] == -1.5
    assert body["serial"]["value"] == "PS0042"


def test_write_and_read_back_over_pty(server: object) -> None:
    r = invoke("write", *bus(server), "-u", "1", "--yes", "vout_setpoint", "52.75")
    assert r.exit_code == 0, r.output
    assert "vout_setpoint 51.00 V -> 52.75 V" in r.output
    r = invoke("read", *bus(server), "-u", "1", "--json", "hr:100")
    assert json.loads(r.output)["vout_setpoint"]["raw"] == 5275


def test_scan_and_info_over_pty(server: object) -> None:
    r = invoke("scan", *bus(server), "--ids", "1", "--json")
    assert r.exit_code == 0, r.output
    assert [(d["id"], d["board"], d["serial"]) for d in json.loads(r.output)] == [
        (1, "power_shelf", "PS0042")
    ]
    r = invoke("info", *bus(server), "-u", "1", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["registers"]["ov_threshold"]["value"] == 57.0


def test_unknown_unit_times_out_cleanly(server: object) -> None:
    r = invoke("read", "--port", server.port, "--parity", "N", "--timeout", "0.1",  # type: ignore[attr-defined]
               "--retries", "0", "-u", "7", "--map", "power_shelf", "dc_v")
    # pymodbus answers unknown ids with an exception instead of silence; either way a
    # clear one-line error, never a traceback
    assert r.exit_code in (3, 4), r.output
    assert r.output.startswith("Error: ") and "Traceback" not in r.output
