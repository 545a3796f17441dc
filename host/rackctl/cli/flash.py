"""``rackctl flash``: stage a firmware image on a board over the bus.

The image is checked (format, SHA-256, board type against the board's identity)
before anything is written, the operator confirms unless ``--yes``, then
:func:`rackctl.flasher.flash` sends it chunk by chunk with a progress bar. The
board verifies the staged image and reports ``ready``; applying it is the board's
boot loader's job on its next reset. A failed or interrupted flash aborts the
session so the board does not keep a half-written one open.

IMAGE_OR_DIR is an ``.rfw`` file (``python -m tools.build_image``) or a directory
holding ``<board_type>.rfw`` (the board's type picks the file); ``--build-from
firmware/`` builds the image for the board's type from a firmware tree instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from rackctl.cli.common import (
    EXIT_ABORTED,
    EXIT_CONFIG,
    EXIT_DEVICE,
    EXIT_ERROR,
    EXIT_USAGE,
    UNLOCK_KEY,
    BusOptions,
    CliError,
    bus_options,
    cli_errors,
    fw_text,
    identify,
    open_link,
    run,
    stdin_is_tty,
)
from rackproto import fwimage

log = logging.getLogger(__name__)


def load_image(source: Path | None, build_from: Path | None, board: str | None,
               mpy: bool = False) -> tuple[bytes, fwimage.FirmwareImage]:
    """The image bytes and their parsed header; ``board`` (the target's type) picks the
    file from a directory and the build target. ImageError -> CliError."""
    try:
        if build_from is not None:
            if board is None:
                raise CliError("--build-from needs the board's type (identity not read)")
            data = _build(build_from, board, mpy)
        else:
            assert source is not None
            path = source / f"{board}.rfw" if source.is_dir() else source
            if source.is_dir() and (board is None or not path.exists()):
                found = ", ".join(p.name for p in sorted(source.glob("*.rfw"))) or "none"
                raise CliError(f"{source}: no {board}.rfw for this board (found: {found})",
                               EXIT_CONFIG)
            data = path.read_bytes()
        return data, fwimage.parse(data)
    except fwimage.ImageError as exc:
        raise CliError(f"bad firmware image: {exc}", EXIT_ERROR) from exc


def _build(tree: Path, board: str, mpy: bool) -> bytes:
    """Build from a firmware tree with the repository's tools/build_image.py."""
    try:
        from tools.build_image import build_image
    except ImportError:
        sys.path.insert(0, str(tree.resolve().parent))  # the checkout that holds firmware/
        try:
            from tools.build_image import build_image
        except ImportError:
            raise CliError(f"--build-from {tree}: tools/build_image.py not found next to it; "
                           "build the image with `python -m tools.build_image` instead",
                           EXIT_CONFIG) from None
    try:
        return build_image(board, mpy=mpy, firmware=tree)
    except SystemExit as exc:  # the tool's own usage errors
        raise CliError(f"--build-from {tree}: {exc}", EXIT_CONFIG) from None


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=False),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
        transient=False,
    )


async def do_flash(bus: BusOptions, unit: int, source: Path | None, build_from: Path | None,
                   mpy: bool, yes: bool, unlock_key: int, console: Console) -> Any:
    from rackctl import flasher

    loaded = None
    if source is not None and source.is_file():  # a bad file is refused before the port opens
        loaded = load_image(source, None, None)
    async with open_link(bus) as link:
        ident, _map = await identify(link, unit)
        board = ident.get("board_type")
        board_name = board if isinstance(board, str) else None
        data, info = loaded or load_image(source, build_from, board_name, mpy)
        if board_name != info.board_type:
            raise CliError(f"image is for a {info.board_type} board but unit {unit} is "
                           f"{board_name or f'board type {board}'} — nothing was written")
        summary = (f"unit {unit} ({ident.get('model', '?')}, serial {ident.get('serial', '?')}, "
                   f"firmware {fw_text(ident.get('fw_version'))}) <- {info.board_type} "
                   f"{info.version_text} image, {len(info.files)} files, {info.size} octets, "
                   f"sha256 {info.sha256.hex()[:12]}")
        console.print(summary, markup=False)
        if not yes and not click.confirm("Flash it?", default=False, err=True):
            raise CliError("not flashed", EXIT_ABORTED)

        session = secrets.randbelow(0xFFFF) + 1
        with _progress(console) as bar:
            task = bar.add_task("unlock", total=len(data), note="")

            def on_progress(p: flasher.FlashProgress) -> None:
                note = f"retries {p.chunk_retries}" if p.chunk_retries else ""
                bar.update(task, completed=p.done, description=p.phase, note=note)

            try:
                report = await flasher.flash(link, unit, data, on_progress, session=session,
                                             unlock_key=unlock_key)
            except (flasher.SessionRefused, flasher.ImageTooLarge):
                raise  # nothing of ours to abort
            except (Exception, asyncio.CancelledError):
                await _abort(link, unit, session, unlock_key)
                raise
        return report


async def _abort(link: Any, unit: int, session: int, unlock_key: int) -> None:
    """Best effort: close our session so the board does not keep it open."""
    from rackctl import flasher

    with contextlib.suppress(Exception):
        fl = flasher.Flasher(link, unit, session=session, unlock_key=unlock_key, busy_timeout=2.0)
        st = await fl.abort()
        log.info("unit %d: session aborted (state %s)", unit, st.state)


@click.command()
@bus_options
@click.option("--device", "--unit", "-u", "unit", type=click.IntRange(1, 247), required=True,
              help="Unit id of the board to flash.")
@click.option("--build-from", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Build the image for the board's type from this firmware tree.")
@click.option("--mpy", is_flag=True, help="With --build-from: compile modules with mpy-cross.")
@click.option("--unlock-key", type=click.IntRange(0, 0xFFFF), default=UNLOCK_KEY,
              envvar="RACKCTL_UNLOCK_KEY", help="Board unlock key (env RACKCTL_UNLOCK_KEY).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.argument("image", required=False, type=click.Path(exists=True, path_type=Path),
                metavar="[IMAGE_OR_DIR]")
@cli_errors
def command(bus: BusOptions, unit: int, build_from: Path | None, mpy: bool, unlock_key: int,
            yes: bool, image: Path | None) -> None:
    """Stage firmware IMAGE_OR_DIR (an .rfw, or a directory of <board>.rfw) on a board.

    The board checks every chunk and the whole image and reports 'ready'; it
    applies the image on its next reset. Exit codes: 0 staged, 1 bad image or
    refused, 3 no answer, 4 device error, 6 cancelled.
    """
    from rackctl import flasher

    if (image is None) == (build_from is None):
        raise CliError("give an IMAGE_OR_DIR or --build-from DIR (one of them)", EXIT_USAGE)
    if not yes and not stdin_is_tty():
        raise CliError("refusing to flash without confirmation: no terminal to ask on — "
                       "pass --yes", EXIT_ABORTED)
    console = Console(stderr=True, highlight=False)
    try:
        report = run(do_flash(bus, unit, image, build_from, mpy, yes, unlock_key, console))
    except flasher.ImageTooLarge as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    except (flasher.SessionRefused, flasher.BoardBusy) as exc:
        raise CliError(str(exc), EXIT_DEVICE) from exc
    except flasher.FlashError as exc:
        raise CliError(str(exc), EXIT_ERROR) from exc
    click.echo(
        f"unit {unit}: {report.size} octets staged and verified (state {report.state}) in "
        f"{report.elapsed_s:.1f} s, {report.throughput:.0f} B/s; {report.chunk_retries} chunk "
        f"retries, {report.busy_retries} busy waits — applied on the board's next reset"
    )
