"""The conformance suite's VM backend: a Board in the MicroPython WebAssembly VM.

Starts ``node fixtures/run_vm.mjs ... --serve`` with fixtures/vm_serve.py and
speaks JSON lines to it, exposing the Node protocol (deliver / advance) so the
same Transactor drives CPython and VM boards. Self-contained on purpose: the
core's suite does not depend on the rackhil bridge being finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fwsim import Transactor

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
PKG = ROOT / "node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"


class VmProcessNode:
    def __init__(self, unit_id: int, baud: int) -> None:
        if shutil.which("node") is None or not PKG.exists():
            pytest.skip("node / micropython-webassembly-pyscript missing (run `make setup`)")
        self.proc = subprocess.Popen(
            ["node", str(FIXTURES / "run_vm.mjs"), str(ROOT), str(FIXTURES / "vm_serve.py"),
             str(FIXTURES), "--serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True,
        )
        line = self._readline()
        if line.strip() != "READY":
            raise RuntimeError(f"VM did not start: {line}")
        r = self.call({"op": "boot", "unit_id": unit_id, "baud": baud})
        self.byte_us = r["byte_us"]
        self.now = 1_000_000

    def _readline(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("VM process exited")
        return line

    def call(self, msg: dict) -> dict:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        r = json.loads(self._readline())
        if "printed" in r:
            r = r["reply"]
        if "error" in r:
            raise RuntimeError(f"VM: {r['error']}")
        return r

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        self.call({"op": "deliver", "data": data.hex(), "t0": t0_us, "byte_us": byte_us})

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        r = self.call({"op": "advance", "until": until_us})
        self.now = max(self.now, until_us)
        return [(t, bytes.fromhex(h)) for t, h in r["out"]]

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)


@contextlib.contextmanager
def open_bus(unit_id: int, baud: int = 115200) -> Iterator[Transactor]:
    node = VmProcessNode(unit_id, baud)
    try:
        yield Transactor(node, node.byte_us, lambda: node.now)
    finally:
        node.close()
