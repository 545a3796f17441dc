"""``rackctl sim``: the software rack in real time on a pty, for any Modbus host program.

    rackctl sim --pty /tmp/rack/ttyRACK
    rackctl sim --rack my-rack.toml --pty /tmp/rack/ttyRACK --capture rack.pcap

Without ``--rack`` it runs the default rack (``examples/rack.toml``: power shelves at
ids 1 and 2, CDUs at 3 and 4, 115200 8E1 on the wire, firmware in the MicroPython VM).
``--baud``/``--parity`` change the simulated wire; the pty itself is always opened as
8N1 at that baud (the Linux pty driver rejects parity).  Ctrl-C or SIGTERM stops it
cleanly (exit 0), writing the capture if one was asked for.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

from rackctl.cli.common import CliError, cli_errors

log = logging.getLogger("rackctl.cli.sim")


@click.command("sim")
@click.option("--rack", "rack_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Rack description (TOML). Default: examples/rack.toml.")
@click.option("--pty", "pty_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to link the pty, e.g. /tmp/rack/ttyRACK.")
@click.option("--capture", type=click.Path(dir_okay=False, path_type=Path),
              help="Write every frame on the wire to this pcap file on exit.")
@click.option("--baud", type=int, help="Baud rate of the simulated wire (default: the rack file's).")
@click.option("--parity", type=click.Choice(["E", "N", "O"], case_sensitive=False),
              help="Parity of the simulated wire (default: the rack file's).")
@click.option("--runtime", type=click.Choice(["vm", "cpython"]),
              help="Run every board's firmware in the MicroPython VM or under CPython.")
@click.option("--firmware", type=click.Choice(["py", "mpy"]),
              help="VM boards boot from sources (py) or mpy-cross output (mpy, as on an RP2040).")
@click.option("-v", "--verbose", count=True, help="Log more (-v info, -vv debug).")
@cli_errors
def command(
    rack_file: Path | None,
    pty_path: Path,
    capture: Path | None,
    baud: int | None,
    parity: str | None,
    runtime: str | None,
    firmware: str | None,
    verbose: int,
) -> None:
    """Run the software rack in real time on a pty until Ctrl-C."""
    from rackhil import rackspec, sim  # lazy: only this command needs the emulator

    logging.basicConfig(level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(verbose, 2)],
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = rackspec.load(rack_file) if rack_file is not None else rackspec.default()
    if runtime:
        spec = spec.with_runtime(runtime)
    if firmware:
        spec = spec.with_firmware(firmware)
    if baud is not None or parity is not None:
        spec = spec.with_line(baud=baud, parity=parity.upper() if parity else None)
    if pty_path.exists() and not pty_path.is_symlink():
        raise CliError(f"{pty_path} exists and is not a symlink; choose another --pty", 5)

    def ready(info: sim.SimInfo) -> None:
        click.echo(f"rack {info.spec.name!r}: {len(info.spec.boards)} boards on {info.port} -> {info.device}")
        click.echo(f"wire {info.wire}; open the port as {info.host_settings} "
                   "(a pty has no parity; the simulated wire keeps its own)")
        for b in info.spec.boards:
            fmt = f" ({b.firmware})" if b.runtime == "vm" else ""
            click.echo(f"  id {b.id:3d}  {b.type:<12} {b.name:<12} runtime {b.runtime}{fmt}")
        click.echo("Ctrl-C to stop.", nl=True)

    sim.serve(spec, pty_path, capture=capture, on_ready=ready)
    if capture is not None:
        click.echo(f"capture written to {capture}")
    click.echo("rack stopped")
