"""``rackctl decode``: readable text, JSON, register tables, and clean usage errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rackctl.cli.main import cli
from rackproto import adu as adus
from rackproto import pdu as P
from rackproto.regmap import load


def invoke(*args: str):  # noqa: ANN201 - click Result
    return CliRunner().invoke(cli, ["decode", *args], terminal_width=200)


def test_read_request_from_the_brief() -> None:
    result = invoke("01030000000AC5CD")
    assert result.exit_code == 0, result.output
    out = result.output.lower()
    for part in ("read request", "fc 03 read holding registers", "10 holding registers", "address 0", "device 1"):
        assert part in out


def test_hex_with_spaces_as_separate_arguments() -> None:
    result = invoke("01", "03", "00", "00", "00", "0A", "C5", "CD")
    assert result.exit_code == 0
    assert "10 holding registers" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["01030000000AC5CE"], "bad CRC"),
        (["xyz"], "not hex"),
        (["01"], "RTU frame of 1 bytes"),
        (["01030000000AC5CD", "--map", "no_such_board"], "no register map"),
    ],
)
def test_errors_exit_2_without_traceback(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_json_output() -> None:
    frame = adus.build(4, P.ReadRegistersResponse(3, (1, 2, 3))).hex()
    result = invoke(frame, "--json")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc["frame"] == frame
    (it,) = doc["interpretations"]
    assert (it["role"], it["device"], it["function"]) == ("response", 4, 3)
    assert it["fields"]["values"] == [1, 2, 3]


def test_register_table_with_map_and_start() -> None:
    shelf = load("power_shelf")
    reg = next(r for r in shelf.table("holding") if r.type == "u16" and r.scale != 1 and r.unit)
    frame = adus.build(1, P.ReadRegistersResponse(3, (5400,))).hex()
    result = invoke(frame, "--map", "power_shelf", "--start", str(reg.address))
    assert result.exit_code == 0, result.output
    assert reg.name in result.output
    assert reg.unit in result.output
    assert f"{5400 * reg.scale:.{reg.digits}f}" in result.output


def test_map_without_start_explains_what_is_missing() -> None:
    frame = adus.build(1, P.ReadRegistersResponse(3, (5400,))).hex()
    result = invoke(frame, "--map", "power_shelf")
    assert result.exit_code == 0
    assert "--start" in result.output


def test_echo_frames_say_so() -> None:
    result = invoke(adus.build(1, P.WriteSingle(6, 1, 3)).hex())
    assert result.exit_code == 0
    assert "echo" in result.output
