"""rackctl controller on the emulated board (MicroPython WebAssembly VM in the software rack).

The host (hil_tests/rackhil/mcu_worker.mjs) provides the hardware through the JS
module ``jshal`` (wrapped by ``hal_js``) and drives the loop itself: it calls
``board.poll()`` on every RX byte, at the end of every transmission and when the
delay ``poll()`` returned has passed, all in virtual time. So this file only installs
a staged firmware image (``rackfw.boot``: the modules it replaces must not be imported
before), builds the Board and exposes it as the module global ``board``; there is no
``while True``. ``staged`` keeps the boot loader's status (``rackfw.boot.S_*``).

Board config (JSON from the host): ``board`` ("power_shelf" or "cdu"), ``unit_id``,
``baud``, ``serial``, ``hw_rev``, ``reset_cause`` (the common map's enum: 1 power-on, 2 watchdog, 3 brown-out, 4 software, 5 update).
"""

import hal_js

from rackfw import boot

BOARD_TYPES = {"power_shelf": 1, "cdu": 2}  # the common map's board_type enum

cfg = hal_js.config()
flash = hal_js.Flash()
# Before anything else of rackfw is imported: a staged image replaces those modules.
staged = boot.apply_staged(flash, BOARD_TYPES.get(cfg.get("board", "power_shelf"), 0))

from rackfw.board import Board  # noqa: E402  (after the install, on purpose)


def app_class(kind):
    """The application class for a board type name (None: common registers only)."""
    if kind == "cdu":
        from rackfw.cooling.app import CduApp

        return CduApp
    if kind == "power_shelf":
        from rackfw.power.app import PowerShelfApp

        return PowerShelfApp
    return None


board = Board(
    hal_js.UART(cfg.get("baud", 115200)),
    hal_js.Pin(),
    hal_js.Clock(),
    hal_js.Sensors(),
    hal_js.Outputs(),
    flash,
    hal_js.WDT(),
    app=app_class(cfg.get("board", "power_shelf")),
    unit_id=cfg.get("unit_id", 0),
    serial=cfg.get("serial", "EMU-0001"),
    hw_rev=cfg.get("hw_rev", 1),
    reset_cause=boot.RESET_UPDATE if staged == boot.S_INSTALLED else cfg.get("reset_cause", 1),
    reset=hal_js.reset,
)
boot.report(board, staged)
