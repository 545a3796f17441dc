"""The ``rackctl`` command group.

Each subcommand lives in its own module ``rackctl.cli.<name>`` exposing a click
command called ``command``; modules are imported only when their command runs, so
``rackctl --help`` stays fast and one broken command cannot take the others down.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from rackctl import __version__

# command name -> module under rackctl.cli
COMMANDS: dict[str, str] = {
    "decode": "decode",
    "scan": "scan",
    "info": "info",
    "read": "read",
    "write": "write",
    "monitor": "monitor",
    "history": "history",
    "export": "export",
    "plot": "plot",
    "alarms": "alarms",
    "daemon": "daemon",
    "sim": "sim",
    "run": "run",
    "flash": "flash",
    "bench": "bench",
}


def _available() -> dict[str, str]:
    return {
        name: mod
        for name, mod in COMMANDS.items()
        if importlib.util.find_spec(f"rackctl.cli.{mod}") is not None
    }


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_available())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        mod = _available().get(cmd_name)
        if mod is None:
            return None
        module = importlib.import_module(f"rackctl.cli.{mod}")
        return module.command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rackctl")
def cli() -> None:
    """Monitor, control and flash rack power-shelf and CDU controller boards over Modbus RTU."""


def main() -> None:
    cli()
