"""Daemon config: the example loads, defaults apply, and every bad value names its key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rackctl import config
from rackctl.daemon import Daemon
from rackproto.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "daemon.toml"

MINIMAL = """
[[buses]]
port = "/dev/ttyUSB0"

[[devices]]
id = 7
map = "cdu"
"""


def test_example_config_polls_the_default_emulated_rack(tmp_path: Path) -> None:
    cfg = config.load(EXAMPLE)
    (bus,) = cfg.buses
    assert (bus.port, bus.baud, bus.parity) == ("/tmp/rack/ttyRACK", 115200, "N")
    assert [(d.id, d.map) for d in cfg.devices] == [
        (1, "power_shelf"), (2, "power_shelf"), (3, "cdu"), (4, "cdu")]
    assert cfg.devices[3].poll == {"loop": 0.5, "gains": 0.0}
    assert cfg.store.raw_retention == 2 * 3600 and cfg.store.heartbeat == 600
    # and the daemon accepts it (rule registers and poll overrides exist in the maps)
    cfg = dataclasses.replace(cfg, store=dataclasses.replace(cfg.store, path=str(tmp_path / "h.db")))
    daemon = Daemon(cfg)
    assert sorted(daemon.devices) == [1, 2, 3, 4]
    daemon.store.close()


def test_defaults() -> None:
    cfg = config.loads(MINIMAL)
    bus = cfg.buses[0]
    assert (bus.name, bus.baud, bus.parity, bus.retries, bus.dormant_after) == ("bus0", 19200, "E", 2, 3)
    dev = cfg.devices[0]
    assert (dev.name, dev.bus, dev.poll) == ("bus0-7", "bus0", {})
    assert cfg.http.bind == "127.0.0.1" and cfg.http.token is None
    assert cfg.alarms == ()


@pytest.mark.parametrize(
    "text, duration",
    [("250ms", 0.25), ("10s", 10), ("5m", 300), ("2h", 7200), ("14d", 14 * 86400), (3, 3.0),
     (0.5, 0.5), (" 1.5 s ", 1.5)],
)
def test_durations(text: object, duration: float) -> None:
    assert config.parse_duration(text, "k") == pytest.approx(duration)


@given(st.integers(1, 10**6), st.sampled_from(["ms", "s", "m", "h", "d"]))
def test_duration_units_scale(n: int, unit: str) -> None:
    factor = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert config.parse_duration(f"{n}{unit}", "k") == pytest.approx(n * factor)


BAD = [
    ('[[buses]]\nport = "x"\nbaud = 1234\n', r"^buses\[0\]\.baud: expected one of 1200, 2400"),
    ('[[buses]]\nport = "x"\nparity = "X"\n', r"^buses\[0\]\.parity: expected one of N, E, O"),
    ('[[buses]]\nbaud = 9600\n', r"^buses\[0\]\.port: required key missing"),
    ('[[buses]]\nport = "x"\ntimeout = "fast"\n', r"^buses\[0\]\.timeout: expected a duration"),
    ('[[buses]]\nport = "x"\nretries = -1\n', r"^buses\[0\]\.retries: expected an integer in 0\.\.10"),
    ('[[buses]]\nport = "x"\nretries = true\n', r"^buses\[0\]\.retries: expected int"),
    ('[[buses]]\nport = "x"\nspeed = 9600\n', r"^buses\[0\]\.speed: unknown key"),
    ('[[buses]]\nport = "x"\n[[buses]]\nport = "y"\nname = "bus0"\n', r"^buses\[1\]\.name: duplicate"),
    ("", r"^buses: at least one"),
    (MINIMAL + '[[devices]]\nid = 300\nmap = "cdu"\n', r"^devices\[1\]\.id: expected an integer in 1\.\.247"),
    (MINIMAL + '[[devices]]\nid = 8\nmap = "toaster"\n', r"^devices\[1\]\.map: expected one of power_shelf, cdu"),
    (MINIMAL + '[[devices]]\nid = 7\nmap = "cdu"\nname = "b"\n', r"^devices\[1\]\.id: id 7 is used twice"),
    (MINIMAL + '[[devices]]\nid = 8\nmap = "cdu"\nbus = "nope"\n', r"^devices\[1\]\.bus: expected one of bus0"),
    (MINIMAL + '[[devices]]\nid = 8\nmap = "cdu"\npoll = { flow = "often" }\n', r"^devices\[1\]\.poll\.flow: expected a duration"),
    (MINIMAL + '[store]\nraw_retention = "1d"\ndownsample_retention = "1h"\n', r"^store\.downsample_retention: must be >="),
    (MINIMAL + '[store]\nchanges_only = "some"\n', r"^store\.changes_only: expected one of none, slow, all"),
    (MINIMAL + '[http]\nport = 70000\n', r"^http\.port: expected an integer in 0\.\.65535"),
    (MINIMAL + '[[alarms]]\nregister = "flow"\nop = "=="\nlimit = 1\n', r"^alarms\[0\]\.op: expected one of >, >=, <, <="),
    (MINIMAL + '[[alarms]]\nregister = "flow"\nop = ">"\n', r"^alarms\[0\]\.limit: required key missing"),
    (MINIMAL + '[[alarms]]\nregister = "flow"\nop = ">"\nlimit = 1\nseverity = "meh"\n', r"^alarms\[0\]\.severity: expected one of info, warning, critical"),
    (MINIMAL + '[[alarms]]\nregister = "flow"\nop = ">"\nlimit = 1\ndevice = "ghost"\n', r"^alarms\[0\]\.device: unknown device"),
    (MINIMAL + '[[alarms]]\nregister = "flow"\nop = ">"\nlimit = 1\nhysteresis = -1\n', r"^alarms\[0\]\.hysteresis: must be >= 0"),
    ("buses = [", r"^<toml>: "),
    ("[store]\nvacuum = 1\n[[buses]]\nport = 'x'\n", r"^store\.vacuum: unknown key"),
]


@pytest.mark.parametrize("text, message", BAD)
def test_bad_values_name_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config.loads(text)


def test_load_prefixes_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[[buses]]\nport = "x"\nbaud = 1\n')
    with pytest.raises(ConfigError, match=r"bad\.toml: buses\[0\]\.baud"):
        config.load(path)
    with pytest.raises(ConfigError, match="cannot read"):
        config.load(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    "extra, message",
    [
        ('[[alarms]]\nregister = "psu1_out_v"\nop = ">"\nlimit = 1\n', r"^alarms\[0\]\.register: no configured device"),
        ("", None),
    ],
)
def test_daemon_checks_names_against_the_maps(tmp_path: Path, extra: str, message: str | None) -> None:
    text = MINIMAL + f'[store]\npath = "{tmp_path / "h.db"}"\n' + extra
    cfg = config.loads(text)
    if message is None:
        Daemon(cfg).store.close()
        return
    with pytest.raises(ConfigError, match=message):
        Daemon(cfg)


def test_daemon_rejects_unknown_poll_override(tmp_path: Path) -> None:
    cfg = config.loads(MINIMAL + 'poll = { nozzle = "1s" }\n' + f'[store]\npath = "{tmp_path / "h.db"}"\n')
    with pytest.raises(ConfigError, match=r"^devices\[0\]\.poll\.nozzle: map 'cdu' has no such"):
        Daemon(cfg)
