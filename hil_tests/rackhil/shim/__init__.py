"""Directory of CPython shims for MicroPython-only modules (see ``micropython.py``)."""

import sys
from pathlib import Path

SHIM_DIR = Path(__file__).resolve().parent


def install() -> None:
    """Make ``import micropython`` work under CPython (idempotent)."""
    if sys.implementation.name == "micropython":
        return
    path = str(SHIM_DIR)
    if path not in sys.path:
        sys.path.insert(0, path)
