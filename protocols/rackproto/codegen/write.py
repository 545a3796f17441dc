"""Write (or check) every file generated from the register maps: ``make gen``.

``python -m rackproto.codegen.write`` regenerates all outputs; with ``--check`` it
regenerates in memory and exits 1 with a diff summary when a committed file
differs (CI runs this so a map edit without ``make gen`` fails). This is the
only module in rackproto that writes files.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from rackproto.errors import MapError
from rackproto.regmap import MAP_NAMES, RegisterMap, load

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]


def outputs(root: Path = ROOT) -> dict[Path, str]:
    """Every generated file (absolute path) and its expected content."""
    from rackproto.codegen.constructs import construct_module
    from rackproto.codegen.firmware import firmware_module
    from rackproto.codegen.markdown import markdown

    gens: list[tuple[Callable[[RegisterMap], str], str]] = [
        (firmware_module, "firmware/rackfw/regs_{name}.py"),
        (construct_module, "protocols/rackproto/generated/blocks_{name}.py"),
        (markdown, "docs/registers/{name}.md"),
    ]
    out: dict[Path, str] = {}
    for name in MAP_NAMES:
        rmap = load(name)
        for gen, pattern in gens:
            out[root / pattern.format(name=name)] = gen(rmap)
    return out


def stale(expected: dict[Path, str]) -> dict[Path, list[str]]:
    """Files whose content differs from ``expected``, with a unified diff each."""
    diffs: dict[Path, list[str]] = {}
    for path, text in expected.items():
        current = path.read_text(encoding="utf-8") if path.exists() else ""
        if current != text:
            diffs[path] = list(
                difflib.unified_diff(
                    current.splitlines(), text.splitlines(), str(path), "generated", lineterm=""
                )
            )
    return diffs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rackproto.codegen.write", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="compare, do not write; exit 1 on any difference"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        expected = outputs(args.root)
    except MapError as exc:
        log.error("invalid register map: %s", exc)
        return 2
    diffs = stale(expected)
    if args.check:
        for path, diff in diffs.items():
            added = sum(1 for d in diff if d.startswith("+") and not d.startswith("+++"))
            removed = sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))
            log.error("stale: %s (+%d -%d lines)", path.relative_to(args.root), added, removed)
            for line in diff[:20]:
                log.error("  %s", line)
        if diffs:
            log.error("%d generated file(s) out of date: run `make gen`", len(diffs))
            return 1
        log.info("%d generated files up to date", len(expected))
        return 0
    for path, text in expected.items():
        if path in diffs:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            log.info("wrote %s", path.relative_to(args.root))
    log.info("%d generated files, %d rewritten", len(expected), len(diffs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
