"""Physical plant models of the software rack: the power shelf and the CDU loop.

Both follow one API (see :class:`~rackhil.plants.base.Plant`)::

    plant.step(dt_s, outputs)   # outputs: {channel: scaled int} as the firmware wrote them
    plant.sensors()             # {channel: scaled int} as the firmware's sensors HAL reads them

Channel numbers and units come from ``rackfw/io_power.py`` and ``rackfw/io_cdu.py``;
the equations and parameters are in ``docs/plants.md``.
"""

from __future__ import annotations

from ..shim import install as _install_shim


def ensure_micropython_shim() -> None:
    """Make ``from micropython import const`` work under CPython.

    The firmware's channel tables (``rackfw/io_*.py``) are MicroPython modules; the
    CPython stand-in lives in ``rackhil/shim`` (put on ``sys.path``, idempotent).
    """
    _install_shim()


ensure_micropython_shim()
