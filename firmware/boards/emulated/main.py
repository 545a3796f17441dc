"""rackctl controller on the emulated board (MicroPython WebAssembly VM in the software rack).

The host (hil_tests/rackhil/mcu_worker.mjs) provides the hardware through the JS
module ``jshal`` (wrapped by ``hal_js``) and drives the loop itself: it calls
``board.poll()`` on every RX byte, at the end of every transmission and when the
delay ``poll()`` returned has passed, all in virtual time. So this file only builds
the Board and exposes it as the module global ``board``; there is no ``while True``.

Board config (JSON from the host): ``board`` ("power_shelf" or "cdu"), ``unit_id``,
``baud``, ``serial``, ``hw_rev``, ``reset_cause`` (the common map's enum: 1 power-on, 2 watchdog, 3 brown-out, 4 software, 5 update).
"""

import hal_js

from rackfw.board import Board



def app_class(kind):
    """The application class for a board type name (None: common registers only)."""
    if kind == "cdu":
        from rackfw.cooling.app import CduApp

        return CduApp
    if kind == "power_shelf":
        from rackfw.power.app import PowerShelfApp

        return PowerShelfApp
    return None


cfg = hal_js.config()
board = Board(
    hal_js.UART(cfg.get("baud", 115200)),
    hal_js.Pin(),
    hal_js.Clock(),
    hal_js.Sensors(),
    hal_js.Outputs(),
    hal_js.Flash(),
    hal_js.WDT(),
    app=app_class(cfg.get("board", "power_shelf")),
    unit_id=cfg.get("unit_id", 0),
    serial=cfg.get("serial", "EMU-0001"),
    hw_rev=cfg.get("hw_rev", 1),
    reset_cause=cfg.get("reset_cause", 1),
    reset=hal_js.reset,
)
