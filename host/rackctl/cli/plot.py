"""``rackctl plot``: a PNG of one or more registers over time (matplotlib, Agg).

Registers with different units get their own stacked axes sharing the time
axis, so volts and amperes are never drawn against one scale.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import click

from rackctl.cli.common import (
    CliError,
    check_range,
    cli_errors,
    db_option,
    open_store,
    store_device,
    store_register,
    time_range_options,
)


def render_png(series: list[tuple[str, str, list[tuple[Any, ...]]]], title: str, path: str) -> None:
    """Draw ``(label, unit, rows)`` series into ``path``; one axis per unit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    units = list(dict.fromkeys(u for _l, u, _r in series))
    fig, axes = plt.subplots(len(units), 1, sharex=True, figsize=(10, 2.6 * len(units) + 0.6), squeeze=False)
    for (label, unit, rows) in series:
        ax = axes[units.index(unit)][0]
        rows = break_gaps(rows)
        xs = [dt.datetime.fromtimestamp(r[0]) for r in rows]
        ax.plot(xs, [r[1] for r in rows], label=label, linewidth=1.2)
        if rows and len(rows[0]) == 4:  # bucketed: shade min..max
            ax.fill_between(xs, [r[2] for r in rows], [r[3] for r in rows], alpha=0.2)
        ax.set_ylabel(unit or "value")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="upper left", fontsize="small")
    locator = mdates.AutoDateLocator()
    axes[-1][0].xaxis.set_major_locator(locator)
    axes[-1][0].xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))  # 14:45, not "25 14:45"
    axes[0][0].set_title(title)
    first = next((r[0][0] for _l, _u, r in series if r), None)
    if first is not None:
        zone = dt.datetime.fromtimestamp(first).astimezone().tzname()
        axes[-1][0].set_xlabel(f"time ({zone}), from {dt.datetime.fromtimestamp(first):%Y-%m-%d %H:%M:%S}")
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def break_gaps(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Insert a NaN row where samples stop for much longer than usual (daemon stopped,
    device dormant), so the plot shows a gap instead of a straight line across it."""
    if len(rows) < 3:
        return rows
    steps = sorted(b[0] - a[0] for a, b in zip(rows, rows[1:], strict=False))
    limit = max(10 * steps[len(steps) // 2], 30.0)
    out = [rows[0]]
    for prev, row in zip(rows, rows[1:], strict=False):
        if row[0] - prev[0] > limit:
            out.append((prev[0] + 1e-3, *([math.nan] * (len(row) - 1))))
        out.append(row)
    return out


@click.command()
@db_option
@click.argument("device")
@click.argument("registers", nargs=-1, required=True)
@time_range_options
@click.option("--resolution", type=click.FloatRange(min=0), help="Bucket seconds; 0 = raw.")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default="plot.png", show_default=True,
    help="PNG file to write.",
)
@cli_errors
def command(
    db_path: str,
    device: str,
    registers: tuple[str, ...],
    t_from: float,
    t_to: float,
    resolution: float | None,
    output: str,
) -> None:
    """Plot REGISTERS of DEVICE (name or unit id) into a PNG."""
    check_range(t_from, t_to)
    store = open_store(db_path)
    try:
        name = store_device(store, device)
        units = dict(store.registers(name))
        series = []
        for reg in registers:
            store_register(store, name, reg)
            series.append((reg, units.get(reg, ""), store.history(name, reg, t_from, t_to, resolution)))
    finally:
        store.close()
    if not any(rows for _l, _u, rows in series):
        raise CliError(f"no samples for {', '.join(registers)} on {name} in that range — widen --from/--to")
    render_png(series, f"{name}: {', '.join(registers)}", output)
    click.echo(f"wrote {output}")
