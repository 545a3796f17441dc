"""``rackctl alarms``: list and acknowledge alarms stored by the daemon.

Works on the database file, so it also works when the daemon is down. An ack
written here is seen by a running daemon at its next start (it keeps open
alarms in memory); to ack live, use the REST API (POST /api/alarms/{id}/ack).
"""

from __future__ import annotations

import json
import time
from typing import Any

import click
from rich import box
from rich.table import Table

from rackctl.cli.common import (
    EXIT_CONFIG,
    EXIT_USAGE,
    CliError,
    TimeParam,
    cli_errors,
    db_option,
    open_store,
    stdout_console,
)

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _manager(db_path: str) -> Any:
    from rackctl.alarms import AlarmManager

    return AlarmManager(open_store(db_path))


def alarm_table(alarms: list[Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    cleared = any(a.cleared_at for a in alarms)  # open alarms only: no empty column
    cols = ("id", "device", "alarm", "severity", "state", "raised", *(("cleared",) if cleared else ()), "message")
    for col in cols:
        table.add_column(col, justify="right" if col == "id" else "left", no_wrap=col != "message")
    for a in alarms:
        style = SEVERITY_STYLE.get(a.severity, "") if a.active else "dim"
        row = [
            str(a.id),
            f"{a.device_name} ({a.device})",
            a.name,
            a.severity,
            a.state + (" acked" if a.acked and a.active else ""),
            short_time(a.raised_at),
        ]
        if cleared:
            row.append(short_time(a.cleared_at) if a.cleared_at else "")
        table.add_row(*row, a.message, style=style)
    return table


def short_time(ts: float) -> str:
    """Local ``MM-DD HH:MM:SS`` for the table (JSON keeps full ISO 8601 UTC): a full
    ISO stamp per column made each alarm wrap over three lines in 80 columns."""
    return time.strftime("%m-%d %H:%M:%S", time.localtime(ts))


@click.group(invoke_without_command=True)
@db_option
@click.option("--all", "show_all", is_flag=True, help="Include cleared alarms (history).")
@click.option("--since", type=TimeParam(), default="-7d", show_default=True, help="With --all: start.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
@cli_errors
def command(ctx: click.Context, db_path: str, show_all: bool, since: float, as_json: bool) -> None:
    """List open alarms (active, or latched and not yet acknowledged)."""
    ctx.obj = db_path
    if ctx.invoked_subcommand is not None:
        return
    mgr = _manager(db_path)
    try:
        alarms = mgr.history(since=since) if show_all else mgr.list()
    finally:
        mgr.store.close()
    if as_json:
        click.echo(json.dumps([a.as_dict() for a in alarms], indent=1))
        return
    if not alarms:
        click.echo("no alarms since then" if show_all else "no open alarms")
        return
    title = "alarm history" if show_all else f"{len(alarms)} open alarm(s)"
    stdout_console().print(alarm_table(alarms, title))


@command.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include cleared alarms (history).")
@click.option("--since", type=TimeParam(), default="-7d", show_default=True, help="With --all: start.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.pass_context
def list_alarms(ctx: click.Context, show_all: bool, since: float, as_json: bool) -> None:
    """List open alarms (the same as `rackctl alarms` with no subcommand)."""
    parent = ctx.parent
    assert parent is not None  # noqa: S101 - click always sets it for a subcommand
    parent.invoke(command, db_path=ctx.obj, show_all=show_all, since=since, as_json=as_json)


@command.command("ack")
@click.argument("alarm_ids", nargs=-1, type=int, required=True)
@click.option(
    "--url", envvar="RACKCTL_URL",
    help="Ack through a running daemon's REST API (e.g. http://127.0.0.1:8080; env RACKCTL_URL).",
)
@click.option("--token", envvar="RACKCTL_TOKEN", help="Bearer token for --url (env RACKCTL_TOKEN).")
@click.pass_obj
@cli_errors
def ack(db_path: str, alarm_ids: tuple[int, ...], url: str | None, token: str | None) -> None:
    """Acknowledge ALARM_IDS (see the id column of `rackctl alarms`).

    With the daemon running, use --url so it sees the ack at once; without, the
    database is updated and the daemon picks it up at its next start.
    """
    if url:
        for alarm_id in alarm_ids:
            alarm = _ack_via_rest(url, token, alarm_id)
            click.echo(f"acknowledged {alarm['id']}: device {alarm['device']} {alarm['name']}")
        return
    mgr = _manager(db_path)
    try:
        for alarm_id in alarm_ids:
            try:
                alarm = mgr.ack(alarm_id)
            except KeyError:
                raise CliError(f"no alarm {alarm_id} — `rackctl alarms --all` lists them", EXIT_USAGE) from None
            click.echo(f"acknowledged {alarm.id}: {alarm.device_name} {alarm.name} ({alarm.state})")
    finally:
        mgr.store.close()


def _ack_via_rest(url: str, token: str | None, alarm_id: int) -> dict[str, Any]:
    import urllib.error
    import urllib.request

    if not token:
        raise CliError("--url needs --token (or RACKCTL_TOKEN): acks are writes", EXIT_USAGE)
    req = urllib.request.Request(
        f"{url.rstrip('/')}/api/alarms/{alarm_id}/ack",
        method="POST",
        headers={"Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except ValueError:
            message = exc.reason
        code = EXIT_USAGE if exc.code in (401, 404) else 1
        raise CliError(f"{url}: {exc.code} {message}", code) from None
    except urllib.error.URLError as exc:
        raise CliError(f"{url}: cannot reach the daemon ({exc.reason})", EXIT_CONFIG) from None
