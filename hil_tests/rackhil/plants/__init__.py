"""Physical plant models of the software rack: the power shelf and the CDU loop.

Both follow one API (see :class:`~rackhil.plants.base.Plant`)::

    plant.step(dt_s, outputs)   # outputs: {channel: scaled int} as the firmware wrote them
    plant.sensors()             # {channel: scaled int} as the firmware's sensors HAL reads them

Channel numbers and units come from ``rackfw/io_power.py`` and ``rackfw/io_cdu.py``;
the equations and parameters are in ``docs/plants.md``.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path


def ensure_micropython_shim() -> None:
    """Make ``from micropython import const`` work under CPython.

    The firmware's channel tables are MicroPython modules.  The VM helper ships a
    shim package under ``rackhil/shim``; until (or unless) it is importable, a
    minimal in-memory module with ``const`` = identity stands in.
    """
    try:
        import micropython  # noqa: F401
    except ImportError:
        shim = Path(__file__).resolve().parents[1] / "shim"
        if (shim / "micropython.py").exists():
            sys.path.append(str(shim))
            return
        module = types.ModuleType("micropython")
        module.const = lambda value: value  # type: ignore[attr-defined]
        sys.modules["micropython"] = module


ensure_micropython_shim()
