"""Shared pieces of the bus and database CLI commands.

* ``bus_options`` adds ``--port/--baud/--parity/--timeout/--retries`` and
  ``open_link`` turns them into a connected Modbus client (tests swap
  ``LINK_FACTORY`` for an in-memory bus);
* ``cli_errors`` turns every library error into one line on stderr and a
  documented exit code — an operator never sees a traceback;
* register lookup by name or address, block-merged reads, value formatting and
  time-range parsing, so every command accepts the same spellings.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import difflib
import functools
import logging
import os
import re
import sqlite3
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.console import Console

from rackproto.errors import (
    ConfigError,
    CrcError,
    DeviceTimeout,
    MapError,
    ModbusException,
    RackError,
    RangeError,
)

# exit codes (documented in `rackctl --help` epilogs and docs/operations)
EXIT_ERROR = 1  # any other rackctl error
EXIT_USAGE = 2  # bad arguments (click's own code)
EXIT_TIMEOUT = 3  # device did not answer
EXIT_DEVICE = 4  # device answered with an exception, or a corrupt frame
EXIT_CONFIG = 5  # config / map / database problem
EXIT_ABORTED = 6  # refused or cancelled by the operator

UNLOCK_KEY = 0xC0DE  # rackfw.unlock.KEY; the complement follows within 5 s

T = TypeVar("T")
log = logging.getLogger(__name__)


class CliError(click.ClickException):
    """A message for the operator and an exit code; printed without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def error_for(exc: BaseException) -> CliError:
    """Map a library error to an operator message and exit code."""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, DeviceTimeout | TimeoutError):
        # the link appends pymodbus' own wording in parentheses: noise for an operator
        text = str(exc).split(" (Modbus Error", 1)[0] or "timeout"
        return CliError(
            f"{text} — check the unit id (-u), wiring, --baud and --parity "
            "(a pty needs --parity N)",
            EXIT_TIMEOUT,
        )
    if isinstance(exc, ModbusException):
        hint = {
            2: " (no such register on this board — check the map with `rackctl info`)",
            3: " (value refused — out of range, or a protected register needs --unlock)",
            6: " (device busy — retry in a moment)",
        }.get(exc.code, "")
        return CliError(f"device answered: {exc}{hint}", EXIT_DEVICE)
    if isinstance(exc, CrcError):
        return CliError(f"{exc} — noisy line or wrong --baud/--parity", EXIT_DEVICE)
    if isinstance(exc, RangeError):
        return CliError(str(exc), EXIT_ERROR)
    if isinstance(exc, ConfigError | MapError):
        return CliError(str(exc), EXIT_CONFIG)
    if isinstance(exc, RackError):
        return CliError(str(exc), EXIT_ERROR)
    if isinstance(exc, PermissionError):
        return CliError(
            f"{exc.filename or ''}: permission denied — is your user in the dialout group?",
            EXIT_CONFIG,
        )
    if isinstance(exc, FileNotFoundError):
        return CliError(f"{exc.filename}: no such file or device", EXIT_CONFIG)
    if isinstance(exc, OSError):
        return CliError(f"{exc}", EXIT_ERROR)
    if isinstance(exc, sqlite3.Error):
        return CliError(
            f"history database error: {exc} — a file from an older rackctl, or damaged? "
            "move it aside (--db) and let the daemon start a new one",
            EXIT_CONFIG,
        )
    if os.environ.get("RACKCTL_DEBUG"):
        raise exc
    return CliError(
        f"internal error: {type(exc).__name__}: {exc} — please report it; "
        "RACKCTL_DEBUG=1 shows the traceback",
        EXIT_ERROR,
    )


def cli_errors(func: Callable[..., T]) -> Callable[..., T]:
    """Decorator for command callbacks: library errors become CliError."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise CliError("interrupted", EXIT_ABORTED) from None
        except Exception as exc:  # noqa: BLE001 - every error becomes one line
            raise error_for(exc) from exc

    return wrapper


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine for a command (fresh event loop)."""
    return asyncio.run(coro)


def stdout_console() -> Console:
    """Rich console for command output. Piped or redirected, rich would assume 80
    columns and clip or wrap every table cell; a file has no width, so use 160."""
    console = Console(highlight=False, soft_wrap=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(highlight=False, soft_wrap=False, width=max(console.width, 160))
    return console


# ----------------------------------------------------------------- bus options


@dataclass(frozen=True)
class BusOptions:
    port: str
    baud: int
    parity: str
    timeout: float
    retries: int


def bus_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add the serial options; the callback receives ``bus: BusOptions``."""
    options = [
        click.option(
            "--port",
            envvar="RACKCTL_PORT",
            required=True,
            help="Serial device or pty of the RS-485 bus (env RACKCTL_PORT).",
        ),
        click.option(
            "--baud", type=int, default=115200, show_default=True, help="Line speed."
        ),
        click.option(
            "--parity",
            type=click.Choice(["N", "E", "O"], case_sensitive=False),
            default="E",
            show_default=True,
            help="Parity (Modbus default E; a pty needs N).",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(min=0.01),
            default=0.5,
            show_default=True,
            help="Response timeout per attempt, seconds.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, 10),
            default=1,
            show_default=True,
            help="Extra attempts after a timeout or CRC error.",
        ),
    ]

    @functools.wraps(func)
    def wrapper(port: str, baud: int, parity: str, timeout: float, retries: int, **kw: Any) -> Any:
        quiet_bus_logging()
        bus = BusOptions(port, baud, parity.upper(), timeout, retries)
        return func(bus=bus, **kw)

    for opt in reversed(options):
        wrapper = opt(wrapper)
    return wrapper


def quiet_bus_logging() -> None:
    """Keep pymodbus from dumping frames on stderr in interactive commands.

    Without a logging config Python's last-resort handler prints pymodbus' ERROR
    records ("No response received…", ">>>>> recv: 0x…") around our own one-line
    error; the link already classifies those failures. RACKCTL_DEBUG=1 keeps them.
    """
    if not os.environ.get("RACKCTL_DEBUG"):
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


_URL_PORT = re.compile(r"^[a-z0-9+]+://", re.I)


def _rtu_link(bus: BusOptions) -> Any:
    from rackctl.modbus_client import RtuClient

    if not _URL_PORT.match(bus.port):
        if not os.path.exists(bus.port):
            raise CliError(
                f"cannot open {bus.port}: no such device — check --port "
                "(USB adapters are /dev/ttyUSB*, /dev/ttyACM*; the emulated rack's pty is "
                "the path `rackctl sim --pty` printed)",
                EXIT_CONFIG,
            )
        if not stat.S_ISCHR(os.stat(bus.port).st_mode):
            raise CliError(f"{bus.port} is not a serial device — check --port", EXIT_CONFIG)

    return RtuClient(
        bus.port, baud=bus.baud, parity=bus.parity, timeout=bus.timeout, retries=bus.retries
    )


# swapped by tests for an in-memory bus; must return an object with the
# rackctl.modbus_client.ModbusLink methods plus async connect() and close()
LINK_FACTORY: Callable[[BusOptions], Any] = _rtu_link


@asynccontextmanager
async def open_link(bus: BusOptions) -> AsyncIterator[Any]:
    link = LINK_FACTORY(bus)
    try:
        await link.connect()
    except RackError as exc:
        reason = str(exc).removeprefix(f"{bus.port}: ").removeprefix("cannot open serial port")
        raise CliError(
            f"cannot open {bus.port}{': ' + reason if reason else ''} — check --port, and that "
            "no other program (a daemon, a monitor) holds it",
            EXIT_CONFIG,
        ) from exc
    except OSError as exc:
        raise CliError(f"cannot open {bus.port}: {exc.strerror or exc}", EXIT_CONFIG) from exc
    except Exception as exc:
        if type(exc).__module__ != "termios":  # termios.error is not an OSError
            raise
        hint = " — a pty has no parity: use --parity N" if bus.parity != "N" else ""
        raise CliError(
            f"cannot set {bus.baud} 8{bus.parity}1 on {bus.port}: {exc.args[-1]}{hint}",
            EXIT_CONFIG,
        ) from exc
    try:
        yield link
    finally:
        link.close()


# ----------------------------------------------------------------- ids and maps

_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+))?\s*$")


def parse_ids(text: str) -> list[int]:
    """``"1,3,5-7"`` -> [1, 3, 5, 6, 7]; Modbus unit ids 1..247."""
    out: list[int] = []
    for part in text.split(","):
        m = _RANGE.match(part)
        if not m:
            raise click.BadParameter(f"{part!r}: expected ids like 1,3,5-7")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if not 1 <= lo <= hi <= 247:
            raise click.BadParameter(f"{part!r}: unit ids are 1..247, low to high")
        out.extend(i for i in range(lo, hi + 1) if i not in out)
    return out


class IdList(click.ParamType):
    name = "IDS"

    def convert(self, value: Any, param: Any, ctx: Any) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            return parse_ids(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


def load_map(name: str) -> Any:
    from rackproto import regmap

    if name not in regmap.MAP_NAMES:
        raise CliError(f"unknown map {name!r}: expected one of {', '.join(regmap.MAP_NAMES)}")
    return regmap.load(name)


BOARD_MAPS = {1: "power_shelf", 2: "cdu"}


async def identify(link: Any, unit: int) -> tuple[dict[str, Any], Any]:
    """Read the identity block; return (identity values, the board's RegisterMap)."""
    common = load_map("common")
    block = common.block("identity")
    words = await link.read(unit, "input", block.base, block.size)
    ident = {v.name: v.value for v in common.decode("input", block.base, words)}
    board = ident.get("board_type")
    map_name = board if isinstance(board, str) else BOARD_MAPS.get(board)  # type: ignore[arg-type]
    regmap = load_map(map_name) if map_name in ("power_shelf", "cdu") else common
    return ident, regmap


def fw_text(version: Any) -> str:
    if isinstance(version, int):
        return f"{version >> 8}.{version & 0xFF}"
    return str(version)


def suggest(token: str, names: Iterable[str], limit: int = 5) -> list[str]:
    """Names an operator probably meant: close spellings first (difflib), then names
    containing the token, then names sharing its pieces (``psu_out_v`` -> ``psu1_out_v``)."""
    names = list(dict.fromkeys(names))
    low = token.lower()
    bare = re.sub(r"\d+", "", low)  # the same name without the block index: psu_out_v ~ psu1_out_v
    out = [n for n in names if n != low and re.sub(r"\d+", "", n) == bare]
    out += [n for n in difflib.get_close_matches(low, names, n=limit, cutoff=0.75) if n not in out]
    out += [n for n in names if low in n and n not in out]
    out += [n for n in difflib.get_close_matches(low, names, n=limit, cutoff=0.6) if n not in out]
    return out[:limit]


_ADDR = re.compile(r"^(?:(coil|co|c|discrete|di|d|input|ir|i|holding|hr|h):)?(\d+|0x[0-9a-f]+)$", re.I)
_TABLE_ALIASES = {
    "c": "coil", "co": "coil", "coil": "coil",
    "d": "discrete", "di": "discrete", "discrete": "discrete",
    "i": "input", "ir": "input", "input": "input",
    "h": "holding", "hr": "holding", "holding": "holding",
}  # fmt: skip


def resolve(regmap: Any, token: str) -> Any:
    """A register by name, ``table:address`` (``ir:100``, ``hr:0x10``) or bare address."""
    if token in regmap:
        return regmap.get(token)
    if token.lower() in regmap:  # DC_V as typed from a datasheet
        return regmap.get(token.lower())
    m = _ADDR.match(token.strip())
    if not m:
        close = suggest(token, [r.name for r in regmap.registers])
        hint = (
            f" — did you mean {', '.join(close)}?"
            if close
            else f" — docs/registers/{regmap.name}.md lists them"
        )
        raise CliError(f"map {regmap.name!r} has no register {token!r}{hint}", EXIT_USAGE)
    address = int(m.group(2), 0)
    tables = [_TABLE_ALIASES[m.group(1).lower()]] if m.group(1) else ["input", "holding"]
    hits = [r for r in regmap.registers if r.table in tables and r.address == address]
    if not hits:
        raise CliError(f"no register at {'/'.join(tables)} address {address} in map {regmap.name!r}", EXIT_USAGE)
    if len(hits) > 1:
        names = ", ".join(f"{r.table}:{r.address} ({r.name})" for r in hits)
        raise CliError(f"address {address} is ambiguous: {names} — prefix ir: or hr:", EXIT_USAGE)
    return hits[0]


def spans(registers: Iterable[Any], max_gap: int = 4) -> list[tuple[str, int, int]]:
    """Merge registers into (table, start, count) reads within the Modbus limits."""
    limits = {"coil": 2000, "discrete": 2000, "input": 125, "holding": 125}
    out: list[tuple[str, int, int]] = []
    for r in sorted(set(registers), key=lambda r: (r.table, r.address)):
        if out:
            table, start, count = out[-1]
            if (
                table == r.table
                and r.address <= start + count + max_gap
                and max(start + count, r.end) - start <= limits[table]
            ):
                out[-1] = (table, start, max(start + count, r.end) - start)
                continue
        out.append((r.table, r.address, r.count))
    return out


async def read_values(
    link: Any, unit: int, regmap: Any, registers: Iterable[Any], skip_missing: bool = False
) -> list[Any]:
    """Read and decode registers with as few requests as the limits allow.

    With ``skip_missing`` a block the board refuses with exception 02 is read again
    register by register and the ones it does not have are left out (a board whose
    firmware predates the host's map); otherwise the exception propagates.
    """
    wanted = list(registers)
    names = {r.name for r in wanted}
    values: list[Any] = []
    for table, start, count in spans(wanted):
        try:
            words = await link.read(unit, table, start, count)
        except ModbusException as exc:
            if not skip_missing or exc.code != 2:
                raise
            inside = [r for r in wanted if r.table == table and start <= r.address < start + count]
            for r in inside:
                try:
                    one = await link.read(unit, table, r.address, r.count)
                except ModbusException as exc1:
                    if exc1.code != 2:
                        raise
                    log.info("unit %s has no %s (%s:%s)", unit, r.name, table, r.address)
                    continue
                values.extend(v for v in regmap.decode(table, r.address, one) if v.name == r.name)
            continue
        values.extend(v for v in regmap.decode(table, start, words) if v.name in names)
    order = {r.name: i for i, r in enumerate(wanted)}
    return sorted(values, key=lambda v: order[v.name])


async def unlock(link: Any, unit: int, key: int = UNLOCK_KEY) -> None:
    """The two-step unlock: key, then its complement (rackfw.unlock)."""
    await link.write_registers(unit, 0, [key])
    await link.write_registers(unit, 0, [key ^ 0xFFFF])


def format_value(value: Any, unit: str = "", digits: int | None = None) -> str:
    if isinstance(value, bool):
        text = "on" if value else "off"
    elif isinstance(value, float):
        text = f"{value:.{digits}f}" if digits is not None else f"{value:g}"
    elif isinstance(value, list | tuple):
        text = ",".join(str(v) for v in value) or "-"
    elif isinstance(value, bytes):
        text = value.hex()
    else:
        text = str(value)
    return f"{text} {unit}".rstrip() if unit else text


def json_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return list(value)
    return value


# ----------------------------------------------------------------- time ranges

_RELATIVE = re.compile(r"^-?\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_time(text: str, now: float | None = None) -> float:
    """Unix seconds from ``now``, ``-2h``/``30m`` (ago), unix seconds, or ISO 8601."""
    now = time.time() if now is None else now
    t = text.strip()
    if t.lower() == "now":
        return now
    m = _RELATIVE.match(t.lower())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return float(t)
    except ValueError:
        pass
    try:
        parsed = dt.datetime.fromisoformat(t)
    except ValueError:
        raise click.BadParameter(
            f"{text!r}: use 'now', a span ago like -2h / 30m / 7d, unix seconds or ISO 8601"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.astimezone()  # local time, as an operator would type it
    return parsed.timestamp()


class TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_time(str(value))
        except click.BadParameter as exc:
            self.fail(exc.message, param, ctx)


def iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


def stdin_is_tty() -> bool:
    return sys.stdin.isatty()


# ----------------------------------------------------------------- history db

db_option = click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False),
    default="var/rackctl.db",
    show_default=True,
    envvar="RACKCTL_DB",
    help="History database written by the daemon (env RACKCTL_DB).",
)


def open_store(path: str) -> Any:
    """Open an existing history database (never creates one by accident)."""
    from rackctl.store import Store

    if not os.path.exists(path):
        raise CliError(
            f"{path}: no history database here — pass --db (the daemon's [store] path)",
            EXIT_CONFIG,
        )
    return Store(path)


def device_key(text: str) -> str | int:
    """A device as the store knows it: a name, or a Modbus unit id when all digits."""
    return int(text) if text.isdigit() else text


def store_device(store: Any, text: str) -> str:
    """Resolve a device name or unit id to the stored name; CliError lists the known ones."""
    key = device_key(text)
    known = store.devices()
    for name, unit, _map in known:
        if key == name or key == unit:
            return name
    listed = ", ".join(f"{n} (id {u})" for n, u, _ in known) or "none recorded yet"
    raise CliError(f"no device {text!r} in the history; known: {listed}", EXIT_USAGE)


def store_register(store: Any, device: str, register: str) -> str:
    names = [n for n, _u in store.registers(device)]
    if register not in names:
        close = suggest(register, names, limit=6)
        hint = f"did you mean {', '.join(close)}?" if close else f"{len(names)} registers recorded"
        raise CliError(f"{device} has no history for {register!r} — {hint}", EXIT_USAGE)
    return register


def time_range_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--to", "t_to", type=TimeParam(), default="now", show_default=True,
        help="End: now, -10m, unix seconds or ISO 8601.",
    )(func)
    func = click.option(
        "--from", "t_from", type=TimeParam(), default="-1h", show_default=True,
        help="Start: -2h, 30m (ago), unix seconds or ISO 8601.",
    )(func)
    return func


def check_range(t_from: float, t_to: float) -> None:
    if t_from >= t_to:
        raise CliError(f"--from ({iso(t_from)}) must be before --to ({iso(t_to)})", EXIT_USAGE)


def setup_logging(level: str) -> None:
    """Logging for the long-running commands (stderr; the journal under systemd).

    pymodbus logs every failed attempt at ERROR with a dump of the last frames; the
    link already counts and classifies those (rack_bus_*_total), so its logger is
    kept quiet unless ``debug`` is asked for.
    """
    import logging

    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level.lower() != "debug":
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
