"""``rackctl write``: range-checked register writes, with confirmation.

The value is checked against the map (type, range, access) *before* anything is
sent, so a typo never reaches the board. Protected registers need ``--unlock``,
which sends the two-step unlock key first. Without ``--yes`` the command asks;
with no terminal to ask on it refuses rather than guess.
"""

from __future__ import annotations

from typing import Any

import click

from rackctl.cli.common import (
    EXIT_ABORTED,
    UNLOCK_KEY,
    BusOptions,
    CliError,
    bus_options,
    cli_errors,
    format_value,
    identify,
    load_map,
    open_link,
    read_values,
    resolve,
    run,
    stdin_is_tty,
)

_TRUE = {"1", "true", "on", "yes"}
_FALSE = {"0", "false", "off", "no"}


def parse_value(reg: Any, text: str) -> Any:
    """The operator's text as the engineering value the register type expects."""
    t = reg.type
    if t == "bool" or reg.table == "coil":
        low = text.strip().lower()
        if low in _TRUE | _FALSE:
            return low in _TRUE
        raise CliError(f"{reg.name} is a bit: write on/off, 1/0 or true/false (got {text!r})")
    if t in ("string", "bytes"):
        return text
    if t == "flags16":
        try:
            return int(text, 0)
        except ValueError:
            return [f for f in text.split(",") if f]
    if t == "enum":
        names = {v: k for k, v in (reg.enum or {}).items()}  # value -> name
        try:
            number = int(text, 0)
        except ValueError:
            number = None
        if number is None and text in names.values():
            return text
        if number is not None and (not names or number in names):
            return number
        choices = ", ".join(f"{n} ({v})" for v, n in sorted(names.items()))
        raise CliError(f"{reg.name}: {text!r} is not one of {choices}")
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise CliError(f"{reg.name} takes a number, got {text!r}") from None


def check_writable(reg: Any, unlock: bool) -> None:
    if reg.table not in ("holding", "coil") or reg.access == "ro":
        raise CliError(f"{reg.name} is read-only ({reg.table}:{reg.address})", EXIT_ABORTED)
    if reg.access == "protected" and not unlock:
        raise CliError(
            f"{reg.name} is protected: repeat with --unlock to send the unlock key first",
            EXIT_ABORTED,
        )


async def do_write(
    bus: BusOptions,
    unit: int,
    name: str,
    text: str,
    unlock: bool,
    key: int,
    map_name: str | None,
    confirm: Any,
) -> Any:
    async with open_link(bus) as link:
        regmap = load_map(map_name) if map_name else (await identify(link, unit))[1]
        reg = resolve(regmap, name)
        check_writable(reg, unlock)
        value = parse_value(reg, text)
        words = regmap.encode_value(reg, value)  # RangeError before anything is sent
        current = (await read_values(link, unit, regmap, [reg]))[0]
        confirm(reg, current.value, value)
        if unlock and reg.access == "protected":
            await link.write_registers(unit, 0, [key])
            await link.write_registers(unit, 0, [key ^ 0xFFFF])
        if reg.table == "coil":
            await link.write_coil(unit, reg.address, bool(value))
        else:
            await link.write_registers(unit, reg.address, words)
        return (await read_values(link, unit, regmap, [reg]))[0]


@click.command()
@bus_options
@click.option("--unit", "-u", type=click.IntRange(1, 247), required=True, help="Unit id.")
@click.option("--unlock", is_flag=True, help="Send the unlock key first (protected registers).")
@click.option(
    "--unlock-key",
    type=click.IntRange(0, 0xFFFF),
    default=UNLOCK_KEY,
    envvar="RACKCTL_UNLOCK_KEY",
    help="Board unlock key (env RACKCTL_UNLOCK_KEY).",
)
@click.option(
    "--map",
    "map_name",
    type=click.Choice(["common", "power_shelf", "cdu"]),
    help="Register map (default: read the board's identity to choose).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.argument("register")
@click.argument("value")
@cli_errors
def command(
    bus: BusOptions,
    unit: int,
    unlock: bool,
    unlock_key: int,
    map_name: str | None,
    yes: bool,
    register: str,
    value: str,
) -> None:
    """Write VALUE to REGISTER (a name or an address like hr:101) on one board.

    VALUE is in engineering units (28.5 for 28.5 °C), an enum name (manual) or
    number, flag names joined by commas, or on/off for bits. It is checked against
    the map before anything is sent and read back after. Example:

        rackctl write --port /dev/ttyUSB0 -u 3 t_supply_sp 28.5
    """
    if not yes and not stdin_is_tty():
        raise CliError(
            "refusing to write without confirmation: no terminal to ask on — pass --yes",
            EXIT_ABORTED,
        )

    def confirm(reg: Any, old: Any, new: Any) -> None:
        if yes:
            return
        question = (
            f"unit {unit}: {reg.name} = {format_value(old, reg.unit)} -> "
            f"{format_value(new, reg.unit)}{' (protected)' if reg.access == 'protected' else ''}. Write?"
        )
        if not click.confirm(question, default=False):
            raise CliError("not written", EXIT_ABORTED)

    before: list[Any] = []

    def remember_and_confirm(reg: Any, old: Any, new: Any) -> None:
        before.append(old)
        confirm(reg, old, new)

    after = run(do_write(bus, unit, register, value, unlock, unlock_key, map_name, remember_and_confirm))
    digits = after.register.digits
    old = format_value(before[0], after.unit, digits) if before else "?"
    click.echo(f"unit {unit}: {after.name} {old} -> {format_value(after.value, after.unit, digits)}")
