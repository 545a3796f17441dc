"""Drive MicroPython WebAssembly VMs (one per board) from Python.

``McuProcess`` starts ``node mcu_host.mjs`` and talks to it over pipes with one JSON
object per line; bytes travel as hex, files for the VM's filesystem as base64 (text
sources and binary ``.mpy`` alike, see :mod:`rackhil.firmware_files`). Each board
lives in its own Node worker thread (the pyscript port allows one VM per JS realm),
so a batch command such as :meth:`McuProcess.advance` runs several boards in parallel
for one pipe round-trip.

Time inside a VM is virtual: ``ticks_us()`` is whatever the worker's event loop says.
Real time only matters for hangs: wasm cannot be interrupted, so the host terminates
a worker that makes no progress (no ``poll()`` returning, no answer) for
``hang_timeout_s`` and reboots the board as a watchdog reset (flash and sensors
kept), which is reported in :attr:`BoardStep.resets` as ``(t, 2, "hang")`` (2 = watchdog). A long
advance that keeps polling is never a hang, however slow the machine.

Every entry from JS into the firmware goes through a guard that fully unlocks the
heap before an exception propagates, so an allocation under
``micropython.heap_lock()`` surfaces as :class:`McuCrash` (MemoryError) instead of
wedging the VM.

``VmNode`` adapts one board to the bus ``Node`` protocol (docs/contracts.md).
"""

from __future__ import annotations

import atexit
import base64
import collections
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rackproto.errors import RackError

from .firmware_files import check_one_format, emulated_board_files

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
HOST_SCRIPT = HERE / "mcu_host.mjs"
REPO_ROOT = HERE.parent.parent
FIRMWARE_DIR = REPO_ROOT / "firmware"

RESET_POWER_ON = 1
RESET_WATCHDOG = 2  # the common map's reset_cause enum
DEFAULT_FLASH_SIZE = 256 * 1024


class McuError(RackError, RuntimeError):
    """The MCU host failed (Node missing, protocol error, host process died)."""


class McuUnavailable(McuError):
    """Node or the MicroPython WebAssembly package is not installed."""


def _clean_traceback(tb: str) -> str:
    """Drop the frames of the worker's own entry wrappers (compiled from ``<stdin>``)."""
    return "\n".join(ln for ln in tb.split("\n") if not ln.startswith('  File "<stdin>"'))


class McuCrash(McuError):
    """A Python exception escaped the firmware; ``traceback`` is MicroPython's text."""

    def __init__(self, board: str, traceback: str, steps: Mapping[str, BoardStep] | None = None):
        traceback = _clean_traceback(traceback)
        super().__init__(f"firmware on board {board!r} crashed:\n{traceback}")
        self.board = board
        self.traceback = traceback
        self.steps = dict(steps or {})


class McuHang(McuError):
    """Code run in a board did not return in real time; the board was watchdog-reset."""

    def __init__(self, board: str, step: BoardStep | None = None):
        super().__init__(f"board {board!r} hung and was reset by the watchdog")
        self.board = board
        self.step = step


@dataclass
class BoardStep:
    """What one board did during one command (advance, boot, power cycle)."""

    now_us: int
    tx: list[tuple[int, bytes]] = field(default_factory=list)
    de: list[tuple[int, int]] = field(default_factory=list)
    outputs: list[tuple[int, int, int]] = field(default_factory=list)
    printed: list[str] = field(default_factory=list)
    resets: list[tuple[int, int, str]] = field(default_factory=list)
    crashed: str | None = None
    hung: bool = False
    next_us: int | None = None  # earliest time the board can act again (None: never)

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BoardStep:
        return cls(
            now_us=int(d.get("now", 0)),
            tx=[(int(t), bytes.fromhex(h)) for t, h in d.get("tx", [])],
            de=[(int(t), int(v)) for t, v in d.get("de", [])],
            outputs=[(int(t), int(c), int(v)) for t, c, v in d.get("outputs", [])],
            printed=list(d.get("printed", [])),
            resets=[(int(r[0]), int(r[1]), str(r[2])) for r in d.get("resets", [])],
            crashed=d.get("crashed"),
            hung="hung_at" in d,
            next_us=None if d.get("next") is None else int(d["next"]),
        )


_LIVE: weakref.WeakSet[McuProcess] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for proc in list(_LIVE):
        proc.kill()


def _check_node() -> str:
    node = shutil.which("node")
    if node is None:
        raise McuUnavailable("node (>= 20) is not on PATH: install Node.js and run `make setup`")
    return node


def firmware_files(*packages: str, root: Path = FIRMWARE_DIR, dest: str = "/lib") -> dict[str, str]:
    """Collect firmware sources as ``{vm_path: text}`` for :meth:`McuProcess.load`.

    ``packages`` are paths relative to ``root`` (a directory is taken recursively, ``.py``
    files only); they land under ``dest`` with the same relative path. (Bytes and
    precompiled ``.mpy``: :mod:`rackhil.firmware_files`.)
    """
    out: dict[str, str] = {}
    for pkg in packages:
        src = root / pkg
        paths = sorted(src.rglob("*.py")) if src.is_dir() else [src]
        for p in paths:
            rel = p.relative_to(root if src.is_dir() else src.parent)
            out[f"{dest}/{rel.as_posix()}"] = p.read_text()
    return out


class McuProcess:
    """One Node process hosting any number of board VMs.

    Not thread-safe: one caller drives it (requests are strictly request/response).
    """

    def __init__(self, hang_timeout_s: float = 2.0, cwd: Path | None = None):
        node = _check_node()
        self.hang_timeout_s = hang_timeout_s
        self._next_id = 0
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._crash_reported: set[str] = set()
        env = dict(os.environ)
        env.setdefault("RACKHIL_NODE_MODULES", str(REPO_ROOT))
        self._proc = subprocess.Popen(
            [node, str(HOST_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=str(cwd or REPO_ROOT),
            env=env,
            start_new_session=True,  # own process group: close() can kill workers too
        )
        _LIVE.add(self)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()
        try:
            self.info = self._read_response(0)
        except McuError as exc:
            self.kill()
            if "make setup" in str(exc):
                raise McuUnavailable(str(exc)) from None
            raise

    # ------------------------------------------------------------ plumbing
    @property
    def pid(self) -> int:
        return self._proc.pid

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            line = line.rstrip("\n")
            self._stderr.append(line)
            log.debug("mcu_host: %s", line)

    def _request(self, cmd: str, **args: Any) -> Any:
        if self._proc.poll() is not None and cmd != "close":
            raise McuError(f"MCU host exited ({self._proc.returncode}): {self._stderr_tail()}")
        self._next_id += 1
        req_id = self._next_id
        msg = json.dumps({"id": req_id, "cmd": cmd, **args})
        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            self._proc.stdin.write(msg + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise McuError(f"MCU host pipe closed: {self._stderr_tail()}") from exc
        return self._read_response(req_id)

    def _read_response(self, req_id: int) -> Any:
        assert self._proc.stdout is not None
        while True:
            line = self._proc.stdout.readline()
            if not line:
                self._proc.wait(timeout=5)
                raise McuError(f"MCU host exited ({self._proc.returncode}): {self._stderr_tail()}")
            resp = json.loads(line)
            if resp.get("id") == req_id:
                break
            if resp.get("id") in (0, None) and not resp.get("ok"):
                break  # the host itself failed (e.g. at start-up)
            # otherwise: the answer to a request whose caller was interrupted; skip it
        if not resp.get("ok"):
            raise McuError(str(resp.get("error")))
        return resp.get("result")

    def _stderr_tail(self) -> str:
        return "\n".join(list(self._stderr)[-20:])

    def _step(self, board: str, raw: Mapping[str, Any]) -> BoardStep:
        step = BoardStep.from_json(raw)
        if step.crashed is None:
            self._crash_reported.discard(board)
        return step

    def _raise_crashes(self, steps: Mapping[str, BoardStep]) -> None:
        for name, step in steps.items():
            if step.crashed is not None and name not in self._crash_reported:
                self._crash_reported.add(name)
                raise McuCrash(name, step.crashed, steps)

    # ------------------------------------------------------------ commands
    def load(
        self,
        board: str,
        files: Mapping[str, str | bytes],
        main: str | None = "main",
        config: Mapping[str, Any] | None = None,
        flash: bytes = b"",
        flash_size: int = DEFAULT_FLASH_SIZE,
        seed: int | None = None,
        start_us: int = 0,
    ) -> BoardStep:
        """Create (or replace) a board VM, write ``files`` into its filesystem, import ``main``.

        ``files`` maps VM paths to text (written UTF-8) or bytes (written as they are, e.g.
        ``.mpy``); a module given both as ``.py`` and ``.mpy`` is a ``ValueError``.

        ``main`` may define a module global ``board`` with ``poll() -> int``; without it
        the VM only serves exec/eval. ``config`` reaches the firmware as JSON through
        ``jshal.config_json()`` (plus ``reset_cause``); ``wdt_ms`` (default 2000, 0 = off)
        and ``baud`` (default 115200) are also read by the worker.
        """
        raw = self._request(
            "load",
            **self._load_spec(board, files, main, config, flash, flash_size, seed, start_us),
        )
        self._crash_reported.discard(board)
        step = self._step(board, raw)
        self._raise_crashes({board: step})
        return step

    def load_many(self, specs: Iterable[Mapping[str, Any]]) -> dict[str, BoardStep]:
        """Boot several boards in parallel (one worker each); keys as :meth:`load`'s args.

        Every board is loaded even when one crashes on import; the first crash is then
        raised as :class:`McuCrash` with all boot steps attached.
        """
        reqs = [self._load_spec(**spec) for spec in specs]
        raw = self._request("load_many", boards=reqs)
        for r in reqs:
            self._crash_reported.discard(r["board"])
        steps = {name: self._step(name, r) for name, r in raw.items()}
        self._raise_crashes(steps)
        return steps

    def _load_spec(
        self,
        board: str,
        files: Mapping[str, str | bytes],
        main: str | None = "main",
        config: Mapping[str, Any] | None = None,
        flash: bytes = b"",
        flash_size: int = DEFAULT_FLASH_SIZE,
        seed: int | None = None,
        start_us: int = 0,
    ) -> dict[str, Any]:
        check_one_format(files)
        return {
            "board": board,
            "files_b64": {
                path: base64.b64encode(data.encode() if isinstance(data, str) else data).decode()
                for path, data in files.items()
            },
            "main": main,
            "config": dict(config or {}),
            "flash": bytes(flash).hex(),
            "flash_size": flash_size,
            "seed": seed,
            "start_us": start_us,
            "hang_timeout_ms": int(self.hang_timeout_s * 1000),
        }

    def advance(
        self,
        until_us: Mapping[str, int] | int,
        rx: Mapping[str, Iterable[tuple[int, int, bytes]]] | None = None,
        sensors: Mapping[str, Mapping[int, int]] | None = None,
        boards: Iterable[str] | None = None,
    ) -> dict[str, BoardStep]:
        """Run boards to a virtual time in one round-trip; workers run in parallel.

        ``until_us`` is one time for ``boards`` or a ``{board: until}`` mapping. ``rx``
        holds per-board deliveries ``(t0_us, byte_us, data)``: byte i arrives at
        ``t0_us + (i+1)*byte_us``. ``sensors`` values are applied before running.
        Raises :class:`McuCrash` (with all steps attached) the first time a board's
        firmware raises; a crashed board stays halted until reloaded or power-cycled.
        """
        if isinstance(until_us, Mapping):
            targets = dict(until_us)
        else:
            if boards is None:
                raise ValueError("boards is required when until_us is a single time")
            targets = {b: until_us for b in boards}
        rx = rx or {}
        sensors = sensors or {}
        req = {
            name: {
                "until": int(t),
                "rx": [[int(t0), int(bu), bytes(d).hex()] for t0, bu, d in rx.get(name, ())],
                "sensors": [[int(c), int(v)] for c, v in sensors.get(name, {}).items()],
            }
            for name, t in targets.items()
        }
        raw = self._request("advance", boards=req)
        steps = {name: self._step(name, r) for name, r in raw.items()}
        for name, step in steps.items():
            if step.hung:
                log.warning("board %s hung; watchdog reset at %d us", name, step.now_us)
        self._raise_crashes(steps)
        return steps

    def set_sensors(self, values: Mapping[str, Mapping[int, int]]) -> None:
        self._request(
            "set_sensors",
            boards={b: [[int(c), int(v)] for c, v in vals.items()] for b, vals in values.items()},
        )

    def get_outputs(self, boards: Iterable[str]) -> dict[str, dict[int, int]]:
        raw = self._request("get_outputs", boards=list(boards))
        return {b: {int(c): int(v) for c, v in r["outputs"]} for b, r in raw.items()}

    def exec(self, board: str, code: str) -> str:
        """Run statements in the board's ``__main__``; return what they printed.

        Raises :class:`McuCrash` with the traceback when the code raises, and
        :class:`McuHang` when it does not return (the board is then watchdog-reset).
        """
        raw = self._request("exec", board=board, code=code)
        return self._code_result(board, raw)

    def eval(self, board: str, expr: str) -> Any:
        """Evaluate an expression in the board's ``__main__``; return ``repr`` parsed back.

        Values whose repr is not a Python literal come back as the repr string.
        """
        import ast

        raw = self._request("eval", board=board, expr=expr)
        self._code_result(board, raw)
        text = raw.get("value")
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text

    def _code_result(self, board: str, raw: Mapping[str, Any]) -> str:
        if "hung_at" in raw:
            raise McuHang(board, self._step(board, raw))
        if raw.get("error"):
            raise McuCrash(board, raw["error"])
        return "\n".join(raw.get("printed", []) + [""]) if raw.get("printed") else ""

    def heap_used(self, board: str) -> int:
        """Bytes allocated on the board's MicroPython heap after a full collection."""
        return int(self.eval(board, "(__import__('gc').collect(), __import__('gc').mem_alloc())[1]"))

    def power_cycle(
        self, board: str, keep_flash: bool = True, reset_cause: int = RESET_POWER_ON
    ) -> BoardStep:
        """Fresh VM (RAM lost) told ``reset_cause`` (default power-on); flash kept unless asked."""
        raw = self._request(
            "power_cycle", board=board, keep_flash=keep_flash, reset_cause=reset_cause
        )
        self._crash_reported.discard(board)
        step = self._step(board, raw)
        self._raise_crashes({board: step})
        return step

    def read_flash(self, board: str) -> bytes:
        return bytes.fromhex(self._request("read_flash", board=board)["flash"])

    def cut_flash_after(self, board: str, nbytes: int) -> None:
        """Torn-write fault: the board loses power once ``nbytes`` more flash bytes are
        programmed or erased; it reboots (cause power-on, reason ``power_cut``) when the
        current ``poll()`` returns, with exactly those bytes changed."""
        self._request("flash_cut", board=board, after=int(nbytes))

    def now_us(self, board: str) -> int:
        return int(self._request("now", board=board)["now"])

    def unload(self, board: str) -> None:
        self._request("unload", board=board)

    # ------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Stop all boards and the Node process (and its process group)."""
        if self._proc.poll() is None:
            try:
                self._request("close")
            except McuError:
                pass
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        if self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._proc.wait(timeout=5)
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        _LIVE.discard(self)

    def __enter__(self) -> McuProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VmNode:
    """One board VM as a bus node (``rackhil.node.Node``).

    RX deliveries and sensor changes are buffered and shipped with the next advance, so
    a bus step costs one round-trip for all VM nodes of a process (see
    :func:`rackhil.node.advance_all`). Outputs are tracked from the change events the
    worker reports, so ``get_output`` needs no round-trip.
    """

    def __init__(
        self,
        mcu: McuProcess,
        name: str,
        files: Mapping[str, str | bytes],
        main: str = "main",
        config: Mapping[str, Any] | None = None,
        flash: bytes = b"",
        flash_size: int = DEFAULT_FLASH_SIZE,
        seed: int | None = None,
        start_us: int = 0,
    ):
        self._setup(mcu, name, start_us)
        self._absorb(
            mcu.load(name, files, main=main, config=config, flash=flash,
                     flash_size=flash_size, seed=seed, start_us=start_us)
        )

    def _setup(self, mcu: McuProcess, name: str, start_us: int) -> None:
        self.mcu = mcu
        self.name = name
        self.sensors: dict[int, int] = {}
        self.outputs: dict[int, int] = {}
        self.printed: list[str] = []
        self.de_log: list[tuple[int, int]] = []
        self.resets: list[tuple[int, int, str]] = []
        self.now_us = start_us
        self.next_us: int | None = start_us
        self._vm_now = start_us
        self.skipped = 0  # advances answered without a round-trip (board idle)
        self._rx: list[tuple[int, int, bytes]] = []
        self._sensors_dirty: dict[int, int] = {}
        self._tx_stash: list[tuple[int, bytes]] = []

    @classmethod
    def load_many(cls, mcu: McuProcess, specs: Iterable[Mapping[str, Any]]) -> list[VmNode]:
        """Several nodes booted in parallel; each spec holds :class:`VmNode`'s arguments
        (``name``, ``files``, ``main``, ``config``, ``flash``, ``flash_size``, ``seed``,
        ``start_us``)."""
        reqs: list[dict[str, Any]] = []
        for spec in specs:
            req = dict(spec)
            req["board"] = req.pop("name")
            reqs.append(req)
        steps = mcu.load_many(reqs)
        nodes = []
        for req in reqs:
            node = cls.__new__(cls)
            node._setup(mcu, req["board"], req.get("start_us", 0))
            node._absorb(steps[req["board"]])
            nodes.append(node)
        return nodes

    @staticmethod
    def emulated_files(
        extra_files: Mapping[str, str | bytes] | None = None, firmware: str = "py"
    ) -> dict[str, str | bytes]:
        """``rackfw`` + ``firmware/boards/emulated`` as a VM filesystem under ``/lib``.

        ``firmware`` is ``"py"`` (sources, compiled by the VM at boot) or ``"mpy"``
        (mpy-cross output, cached; ``main.py`` stays source). An extra file replaces
        the module it names in either format.
        """
        files: dict[str, str | bytes] = dict(emulated_board_files(firmware))
        for path, data in (extra_files or {}).items():
            stem = path[:-4] if path.endswith(".mpy") else path[:-3] if path.endswith(".py") else None
            if stem is not None:
                files.pop(stem + ".py", None)
                files.pop(stem + ".mpy", None)
            files[path] = data
        return files

    @classmethod
    def emulated_many(
        cls,
        mcu: McuProcess,
        boards: Iterable[tuple[str, Mapping[str, Any]]],
        firmware: str = "py",
        **kw: Any,
    ) -> list[VmNode]:
        """Real-firmware boards ``[(name, config), ...]`` booted in parallel."""
        files = cls.emulated_files(firmware=firmware)
        return cls.load_many(
            mcu, [dict(kw, name=n, files=files, main="main", config=c) for n, c in boards]
        )

    @classmethod
    def emulated(
        cls,
        mcu: McuProcess,
        name: str,
        config: Mapping[str, Any],
        extra_files: Mapping[str, str | bytes] | None = None,
        firmware: str = "py",
        **kw: Any,
    ) -> VmNode:
        """A board running the real firmware: ``rackfw`` + ``boards/emulated`` in ``/lib``
        (``firmware="mpy"``: precompiled, as deployed on an RP2040)."""
        files = cls.emulated_files(extra_files, firmware)
        return cls(mcu, name, files, main="main", config=config, **kw)

    def _absorb(self, step: BoardStep) -> list[tuple[int, bytes]]:
        self._vm_now = step.now_us
        self.now_us = max(self.now_us, step.now_us)
        self.next_us = step.next_us
        self.printed.extend(step.printed)
        self.de_log.extend(step.de)
        self.resets.extend(step.resets)
        for _t, ch, v in step.outputs:
            self.outputs[ch] = v
        return step.tx

    # -- Node protocol
    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        self._rx.append((t0_us, byte_us, bytes(data)))

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        return VmNode.advance_batch([self], until_us)[0]

    def batch_key(self) -> int:
        return id(self.mcu)

    def _must_run(self, until_us: int) -> bool:
        """False when nothing can happen on the board before ``until_us`` (pure clock move).

        Sensor changes do not count: firmware reads sensors only while polled, so they
        ride along with the next advance that runs it.
        """
        return bool(self._rx or (self.next_us is not None and self.next_us <= until_us))

    @staticmethod
    def advance_batch(nodes: list[VmNode], until_us: int) -> list[list[tuple[int, bytes]]]:
        """Advance VM nodes of one process in one round-trip.

        Nodes whose next event lies after ``until_us`` and that have nothing pending
        only move their clock here: the firmware cannot observe the difference (it sees
        time only when polled), and the next real advance carries the new time.
        """
        result: dict[int, list[tuple[int, bytes]]] = {}
        busy = []
        for n in nodes:
            if n._must_run(until_us):
                busy.append(n)
            else:
                n.now_us = max(n.now_us, until_us)
                n.skipped += 1
                result[id(n)], n._tx_stash = n._tx_stash, []
        if busy:
            result.update(zip(map(id, busy), VmNode._advance_now(busy, until_us), strict=True))
        return [result[id(n)] for n in nodes]

    @staticmethod
    def _advance_now(nodes: list[VmNode], until_us: int) -> list[list[tuple[int, bytes]]]:
        mcu = nodes[0].mcu
        rx = {n.name: n._rx for n in nodes if n._rx}
        sensors = {n.name: n._sensors_dirty for n in nodes if n._sensors_dirty}
        try:
            steps = mcu.advance({n.name: until_us for n in nodes}, rx=rx, sensors=sensors)
        except McuCrash as exc:
            steps = exc.steps
            for n in nodes:
                n._clear_pending()
                if n.name in steps:
                    n._absorb(steps[n.name])
            raise
        out = []
        for n in nodes:
            n._clear_pending()
            tx = n._absorb(steps[n.name])
            if n._tx_stash:
                tx, n._tx_stash = n._tx_stash + tx, []
            out.append(tx)
        return out

    def _clear_pending(self) -> None:
        self._rx = []
        self._sensors_dirty = {}

    # -- plant side
    def set_sensor(self, ch: int, value: int) -> None:
        value = int(value)
        if self.sensors.get(ch) != value:
            self.sensors[ch] = value
            self._sensors_dirty[ch] = value

    def set_sensors(self, values: Mapping[int, int]) -> None:
        for ch, v in values.items():
            self.set_sensor(ch, v)

    def get_output(self, ch: int) -> int:
        return self.outputs.get(ch, 0)

    def get_outputs(self) -> dict[int, int]:
        return dict(self.outputs)

    def power_cycle(self, keep_flash: bool = True, reset_cause: int = RESET_POWER_ON) -> None:
        """Fresh VM, RAM lost; flash kept (unless ``keep_flash`` is false).

        The VM first runs up to ``now_us`` (bytes that arrived by then reach the old
        firmware); bytes still on their way arrive at the rebooted board.
        """
        self.sync()
        self._absorb(self.mcu.power_cycle(self.name, keep_flash, reset_cause))

    def sync(self) -> None:
        """Bring the VM's clock up to ``now_us`` (after skipped idle advances)."""
        if self._vm_now < self.now_us or self._sensors_dirty or self._rx:
            # what it sends meanwhile is handed to the bus by the next advance
            self._tx_stash.extend(VmNode._advance_now([self], self.now_us)[0])

    # -- inspection (the VM's clock is synced first, so code sees the node's time)
    def exec(self, code: str) -> str:
        self.sync()
        try:
            return self.mcu.exec(self.name, code)
        except McuHang as exc:
            if exc.step is not None:
                self._absorb(exc.step)
            raise

    def eval(self, expr: str) -> Any:
        self.sync()
        return self.mcu.eval(self.name, expr)

    def heap_used(self) -> int:
        self.sync()
        return self.mcu.heap_used(self.name)

    def read_flash(self) -> bytes:
        return self.mcu.read_flash(self.name)

    def cut_flash_after(self, nbytes: int) -> None:
        """See :meth:`McuProcess.cut_flash_after` (``CPythonNode``: same name)."""
        self.sync()
        self.mcu.cut_flash_after(self.name, nbytes)
