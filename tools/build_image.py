"""Build a firmware image (``.rfw``, :mod:`rackproto.fwimage`) for one board type.

The image holds what the board's filesystem needs to run that board: the
``rackfw`` package under ``lib/rackfw/`` (without the *other* board's application
package, register table and I/O map, which that board never imports) and the
board directory's files (``main.py`` + its HAL module) at the root, optionally
compiled to ``.mpy`` with mpy-cross (about a third of the size, and no
compile-on-boot RAM spike). ``main.py`` always stays source: MicroPython only runs
``main.py`` itself, never ``main.mpy``.

Usage::

    python -m tools.build_image --board power_shelf -o build/power_shelf.rfw [--mpy]
        [--board-dir firmware/boards/emulated] [--version 1.0] [--firmware firmware]

Prints one summary line (files, octets, SHA-256) and exits 1 on an error.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from rackproto import fwimage

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"

# what a board of one type never imports (the other board's application)
NOT_FOR = {
    "power_shelf": ("cooling/", "regs_cdu.py", "io_cdu.py"),
    "cdu": ("power/", "regs_power_shelf.py", "io_power.py"),
}


def firmware_version(firmware: Path = FIRMWARE) -> tuple[int, int]:
    """(major, minor) from ``rackfw/version.py`` (read, not imported: it is MicroPython)."""
    text = (firmware / "rackfw" / "version.py").read_text()
    major = re.search(r"^FW_MAJOR\s*=\s*const\((\d+)\)", text, re.M)
    minor = re.search(r"^FW_MINOR\s*=\s*const\((\d+)\)", text, re.M)
    if not major or not minor:
        raise SystemExit("firmware/rackfw/version.py: FW_MAJOR / FW_MINOR not found")
    return int(major.group(1)), int(minor.group(1))


def collect(board: str, firmware: Path = FIRMWARE,
            board_dir: Path | None = None) -> dict[str, bytes]:
    """Image path -> source bytes for ``board``, in a stable (sorted) order."""
    if board not in NOT_FOR:
        raise SystemExit(f"unknown board {board!r}: expected one of {', '.join(NOT_FOR)}")
    pkg = firmware / "rackfw"
    files: dict[str, bytes] = {}
    for src in sorted(pkg.rglob("*.py")):
        rel = src.relative_to(pkg).as_posix()
        if "__pycache__" in rel or rel.startswith(NOT_FOR[board]):
            continue
        files[f"lib/rackfw/{rel}"] = src.read_bytes()
    bdir = board_dir or firmware / "boards" / "emulated"
    board_files = sorted(bdir.glob("*.py"))
    if not any(p.name == "main.py" for p in board_files):
        raise SystemExit(f"{bdir}: no main.py")
    for src in board_files:
        files[src.name] = src.read_bytes()
    return files


def compile_mpy(files: dict[str, bytes]) -> dict[str, bytes]:
    """Every module except ``main.py`` compiled with mpy-cross (``.py`` -> ``.mpy``)."""
    from tools.fw_build import mpy_cross_command

    out: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for path, data in files.items():
            if path == "main.py" or not path.endswith(".py"):
                out[path] = data
                continue
            src = Path(tmp) / path
            src.parent.mkdir(parents=True, exist_ok=True)
            src.write_bytes(data)
            dst = src.with_suffix(".mpy")
            # -s: the source name recorded in tracebacks (the path on the board)
            proc = subprocess.run([*mpy_cross_command(), "-s", path, "-o", str(dst), str(src)],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"mpy-cross failed on {path}:\n{proc.stderr.strip()}")
            out[path[:-3] + ".mpy"] = dst.read_bytes()
    return out


def build_image(board: str, *, mpy: bool = False, firmware: Path = FIRMWARE,
                board_dir: Path | None = None,
                version: tuple[int, int] | str | None = None) -> bytes:
    files = collect(board, firmware, board_dir)
    if mpy:
        files = compile_mpy(files)
    return fwimage.build(files, board, version or firmware_version(firmware))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.build_image", description=__doc__.split("\n\n")[0])
    ap.add_argument("--board", required=True, choices=sorted(NOT_FOR))
    ap.add_argument("-o", "--out", type=Path, help="output file (default build/<board>.rfw)")
    ap.add_argument("--mpy", action="store_true", help="compile modules to .mpy with mpy-cross")
    ap.add_argument("--firmware", type=Path, default=FIRMWARE, help="firmware tree (default firmware/)")
    ap.add_argument("--board-dir", type=Path, help="board files (default firmware/boards/emulated)")
    ap.add_argument("--version", help="major.minor (default from rackfw/version.py)")
    args = ap.parse_args(argv)
    try:
        image = build_image(args.board, mpy=args.mpy, firmware=args.firmware,
                            board_dir=args.board_dir, version=args.version)
    except fwimage.ImageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    out = args.out or ROOT / "build" / f"{args.board}.rfw"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(image)
    info = fwimage.parse(image)
    print(f"{out}: {info.board_type} {info.version_text}, {len(info.files)} files, "
          f"{info.size} octets, sha256 {info.sha256.hex()[:16]}…")
    return 0


if __name__ == "__main__":
    sys.exit(main())
