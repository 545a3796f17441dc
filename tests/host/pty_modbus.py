"""A pymodbus RTU server on one pty, bridged to a second pty the code under test opens.

A pty is one serial port with two ends, but the server and the client each want a
*device path*; two ptys whose masters are copied to each other by a thread give
both a path (``server_path``, ``client_path``). 8N1 only: the pty driver rejects
parity. The server runs on its own thread and event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import tty
from typing import Any

from pymodbus.datastore import (
    ModbusDeviceContext,
    ModbusSequentialDataBlock,
    ModbusServerContext,
)
from pymodbus.server import ModbusSerialServer


class PtyBridge:
    def __init__(self) -> None:
        self._a_master, a_slave = os.openpty()
        self._b_master, b_slave = os.openpty()
        for fd in (a_slave, b_slave):
            tty.setraw(fd)
        self.server_path = os.ttyname(a_slave)
        self.client_path = os.ttyname(b_slave)
        self._slaves = (a_slave, b_slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True, name="pty-bridge")
        self._thread.start()

    def _pump(self) -> None:
        pair = {self._a_master: self._b_master, self._b_master: self._a_master}
        while not self._stop.is_set():
            ready, _, _ = select.select(list(pair), [], [], 0.05)
            for fd in ready:
                with contextlib.suppress(OSError):
                    os.write(pair[fd], os.read(fd, 4096))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self._a_master, self._b_master, *self._slaves):
            with contextlib.suppress(OSError):
                os.close(fd)


def _block(words: dict[int, int], size: int) -> ModbusSequentialDataBlock:
    # pymodbus 3.16 blocks are 1-based (the block stores from ``address - 1``)
    return ModbusSequentialDataBlock(1, [words.get(a, 0) for a in range(size)])


class ModbusPtyServer:
    """Serve FakeBoard register contents (``bus_fakes.FakeBoard``) on a bridged pty."""

    def __init__(self, boards: dict[int, Any], baud: int = 115200) -> None:
        self.bridge = PtyBridge()
        self.devices = devices = {
            unit: ModbusDeviceContext(
                ir=_block(b.words["input"], b.map.table_size("input")),
                hr=_block(b.words["holding"], b.map.table_size("holding")),
                co=_block(b.words["coil"], max(1, b.map.table_size("coil"))),
                di=_block(b.words["discrete"], max(1, b.map.table_size("discrete"))),
            )
            for unit, b in boards.items()
        }
        self.context = ModbusServerContext(devices=devices, single=False)
        self.baud = baud
        self._loop = asyncio.new_event_loop()
        self._server: ModbusSerialServer | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="modbus-pty-server")
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("pymodbus server did not start")

    @property
    def port(self) -> str:
        return self.bridge.client_path

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def main() -> None:
            self._server = ModbusSerialServer(
                self.context,
                port=self.bridge.server_path,
                baudrate=self.baud,
                parity="N",
                ignore_missing_devices=True,  # a real bus: other ids stay silent
            )
            task = asyncio.create_task(self._server.serve_forever())
            await asyncio.sleep(0.2)
            self._ready.set()
            await task

        with contextlib.suppress(asyncio.CancelledError, Exception):
            self._loop.run_until_complete(main())

    def close(self) -> None:
        if self._server is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            with contextlib.suppress(Exception):
                fut.result(5)
        self._thread.join(timeout=5)
        self.bridge.close()
