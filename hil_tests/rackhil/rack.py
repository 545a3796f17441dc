"""The software rack: boards running the real firmware, their plants, one RS-485 bus.

:class:`Rack` assembles what the other rackhil modules provide — a node per board
(``VmNode``: the firmware in the MicroPython WebAssembly VM; ``CPythonNode``: the same
firmware under CPython), one plant model per board, the :class:`~rackhil.bus.Bus`, an
in-process host port with a :class:`~rackhil.master.Master`, optionally a pty — and
couples plants and boards: every ``plant_step`` of virtual time (100 ms by default,
the firmware's control period) it reads each board's outputs, steps its plant and
pushes the new sensor readings.

Time is virtual and in lockstep by default: :meth:`Rack.run` advances everything
together as fast as the host allows, and a run is reproducible from the rack's seed.
:meth:`Rack.start_realtime` paces the same bus to the wall clock on a background
thread and exposes it on a pty for programs like pymodbus.

The scenario vocabulary reads like an incident report::

    rack.psu(1, 3).fail("overvoltage")      # shelf 1, PSU slot 3
    rack.feed(1, "A").lose()
    rack.cdu(3).leak("cdu_tray")
    rack.cdu(3).pump(1).fail()
    rack.cdu(3).sensor("supply_temp").open_circuit()
    rack.board(1).power_cycle(); rack.board(1).hang()
    rack.line.ber(1e-3); rack.babbler().start() ... .stop()
    rack.run(seconds=5)

The handles behind that vocabulary live in :mod:`rackhil.incidents`. Every action
is logged and marked on :attr:`Rack.trace`, whose plot shows what the plants did
around it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from .bus import Bus
from .incidents import (
    Babbler,
    BoardUnit,
    CduHandle,
    FeedHandle,
    LineFaults,
    PsuHandle,
    write_sensors,
)
from .master import Master
from .plants import ensure_micropython_shim
from .plants.base import Plant
from .plants.cdu import Cdu, CduParams
from .plants.power_shelf import PowerShelf
from .rackspec import BoardSpec, RackSpec
from .trace import Trace
from .transport import HostPort

ensure_micropython_shim()
from rackfw import io_power  # noqa: E402
from rackfw.events import RESET_WATCHDOG  # noqa: E402  (re-exported for tests)

# the vocabulary classes stay importable from here, as before the split
__all__ = [
    "RESET_WATCHDOG", "Babbler", "BoardUnit", "CduHandle", "FeedHandle", "LineFaults",
    "PsuHandle", "Rack", "TurnaroundGuard", "make_plant", "open_rack",
]

log = logging.getLogger(__name__)

#: Silence on the wire after which a real-time bus takes idle strides (a board's
#: turnaround is t3.5 plus one main-loop pass; a reply must never wait for a stride)
REALTIME_IDLE_AFTER_US = 50_000

NodeFactory = Callable[[BoardSpec, RackSpec], Any]


def make_plant(spec: BoardSpec, seed: int) -> Plant:
    """The plant model for one board, seeded from the rack seed and the unit id."""
    params = dict(spec.plant)
    noise = params.pop("noise", 1.0)
    plant_seed = seed * 1000 + spec.id
    if spec.type == "power_shelf":
        if "psus" in params:
            params["psus"] = int(params["psus"])
        return PowerShelf(seed=plant_seed, noise=noise, **params)
    return Cdu(seed=plant_seed, noise=noise, params=CduParams(**params))


class Rack:
    """Boards + plants + bus + host, in virtual time (see the module docstring)."""

    def __init__(
        self,
        spec: RackSpec | None = None,
        *,
        realtime: bool = False,
        node_factory: NodeFactory | None = None,
        trace: Trace | None = None,
        master_timeout: float = 0.1,
        master_retries: int = 0,
    ) -> None:
        from . import rackspec

        self.spec = spec or rackspec.default()
        self.realtime = realtime
        # the coarsest lockstep quantum the bus allows (t3.5) while frames are on the
        # wire, one plant step per stride while it is silent: same frames, fewer steps
        step_us = round(self.spec.plant_step_s * 1_000_000)
        self.bus = Bus(self.spec.line, seed=self.spec.seed, quantum_us=self.spec.line.t35_us, idle_quantum_us=step_us)
        self.trace = trace or Trace(self.spec.name)
        self.units: dict[int, BoardUnit] = {}
        self._closed = False
        self.pty: Any = None
        self.runner: Any = None
        self.capture: Any = None
        self._pty_guard: Any = None
        self._mcu: Any = None  # one McuProcess (Node) for every VM board of the rack
        factory = node_factory or self._make_node
        try:
            for bspec in self.spec.boards:
                node = factory(bspec, self.spec)
                plant = make_plant(bspec, self.spec.seed)
                unit = BoardUnit(self, bspec, node, plant)
                self.units[bspec.id] = unit
                self._push_sensors(unit)
                self.bus.attach(node)
        except BaseException:
            self.close()
            raise
        self.host = HostPort(self.bus, "host")
        self.master = Master(
            self.host,
            {b.id: b.map_name for b in self.spec.boards},
            timeout=master_timeout,
            retries=master_retries,
        )
        self.line = LineFaults(self)
        self._probe_key_signals()
        self._step_us = round(self.spec.plant_step_s * 1_000_000)
        self._next_plant_us = self._step_us
        self.bus.add_step_hook(self._on_step)

    def _probe_key_signals(self) -> None:
        """Every rack traces its plants' key signals, ``<quantity>.<board>.plant``: the DC
        bus of each shelf, supply temperature and flow of each CDU.  A scenario that
        records the registers as ``<quantity>.<board>`` gets them in the same panel, the
        firmware's view over the physical truth."""
        for unit in self.units.values():
            plant, name = unit.plant, unit.name
            if isinstance(plant, PowerShelf):
                self.trace.probe(f"bus_v.{name}.plant", partial(getattr, plant, "bus_v"), unit="V")
            elif isinstance(plant, Cdu):
                self.trace.probe(f"t_supply.{name}.plant", partial(getattr, plant, "t_supply_c"), unit="°C")
                self.trace.probe(f"flow.{name}.plant", partial(getattr, plant, "flow_lpm"), unit="L/min")

    def _make_node(self, spec: BoardSpec, rack: RackSpec) -> Any:
        """A node running the real firmware for ``spec`` on its runtime (vm / cpython);
        a VM board boots from sources or ``.mpy`` as ``spec.firmware`` says."""
        config = {"board": spec.type, "unit_id": spec.id, "baud": rack.line.baud,
                  "serial": f"EMU-{spec.id:04d}"}
        if spec.runtime == "vm":
            from .mcu import McuProcess, VmNode

            if self._mcu is None:
                self._mcu = McuProcess()
            return VmNode.emulated(self._mcu, spec.name, config, firmware=spec.firmware,
                                   seed=rack.seed * 1000 + spec.id)
        from .cpython_node import CPythonNode

        return CPythonNode(spec.name, config)

    @classmethod
    def default(cls, *, realtime: bool = False, runtime: str | None = None, **kw: Any) -> Rack:
        """The default rack (``examples/rack.toml``): shelves 1, 2 and CDUs 3, 4."""
        from . import rackspec

        return cls(rackspec.default(runtime), realtime=realtime, **kw)

    @classmethod
    def from_file(cls, path: str | Path, *, runtime: str | None = None, **kw: Any) -> Rack:
        from . import rackspec

        spec = rackspec.load(path)
        return cls(spec.with_runtime(runtime) if runtime else spec, **kw)

    # ---- time ---------------------------------------------------------------------------
    @property
    def now_s(self) -> float:
        return self.bus.now_s

    def run(self, seconds: float) -> Rack:
        """Advance the whole rack ``seconds`` of virtual time (lockstep)."""
        self._run_until_us(self.bus.now_us + round(seconds * 1_000_000))
        return self

    def run_until(self, t_s: float) -> Rack:
        self._run_until_us(round(t_s * 1_000_000))
        return self

    def _run_until_us(self, until_us: int) -> None:
        """Step the bus to ``until_us``, never across a plant coupling or a board service.

        While nothing is on the wire the bus takes idle strides (``idle_quantum_us`` =
        the plant step): boards only talk when spoken to and the host only writes when
        a scenario calls it, so each node's own event loop can run that far in one call
        (exact firmware timing, far fewer round-trips to the VMs).
        """
        bus = self.bus
        while bus.now_us < until_us:
            bus.step(min(until_us, self._next_plant_us, self._next_service_us()))

    def _next_service_us(self) -> int:
        times = [u._back_at_us for u in self.units.values() if u._back_at_us is not None]
        return min(times, default=1 << 62)

    def every(self, period_s: float, seconds: float, fn: Callable[[float], Any]) -> None:
        """Run ``seconds`` calling ``fn(now_s)`` every ``period_s`` (a polling host)."""
        end = self.bus.now_us + round(seconds * 1_000_000)
        step = round(period_s * 1_000_000)
        while self.bus.now_us < end:
            t_next = min(end, self.bus.now_us + step)
            fn(self.now_s)
            self._run_until_us(max(t_next, self.bus.now_us))

    def _on_step(self, now_us: int) -> None:
        for unit in self.units.values():
            if unit.state != "on":
                unit._service(now_us)
        if now_us < self._next_plant_us:
            return
        dt = self._step_us / 1_000_000
        while self._next_plant_us <= now_us:
            self._next_plant_us += self._step_us
        for unit in self.units.values():
            unit.plant.step(dt, unit.outputs())
            if unit.state == "on":
                self._push_sensors(unit)
        self.trace.sample(now_us / 1_000_000)

    def _push_sensors(self, unit: BoardUnit) -> None:
        write_sensors(unit.node, unit.plant.sensors())

    def _mark(self, label: str) -> None:
        log.info("t=%.3f s: %s", self.now_s, label)
        self.trace.mark(self.now_s, label)

    # ---- who is on the rack -------------------------------------------------------------
    @property
    def devices(self) -> list[tuple[int, str, str]]:
        """``(unit, map_name, name)`` per board (what ``rackctl run`` configures)."""
        return [(b.id, b.map_name, b.name) for b in self.spec.boards]

    def unit(self, unit: int) -> BoardUnit:
        try:
            return self.units[unit]
        except KeyError:
            raise KeyError(f"no board {unit} on this rack (boards: {sorted(self.units)})") from None

    def board(self, unit: int) -> BoardUnit:
        return self.unit(unit)

    def _typed(self, unit: int, kind: str) -> BoardUnit:
        u = self.unit(unit)
        if u.spec.type != kind:
            raise ValueError(f"board {unit} is a {u.spec.type}, not a {kind}")
        return u

    def shelf(self, unit: int) -> PowerShelf:
        """The power-shelf plant of board ``unit`` (ground truth for assertions)."""
        plant = self._typed(unit, "power_shelf").plant
        assert isinstance(plant, PowerShelf)
        return plant

    def psu(self, unit: int, slot: int) -> PsuHandle:
        """PSU in front-panel ``slot`` (1..6) of power shelf ``unit``."""
        self._typed(unit, "power_shelf")
        if not 1 <= slot <= io_power.PSU_COUNT:
            raise ValueError(f"PSU slot must be 1..{io_power.PSU_COUNT}")
        return PsuHandle(self, unit, slot)

    def feed(self, unit: int, feed: str) -> FeedHandle:
        """AC feed ``"A"`` or ``"B"`` of power shelf ``unit``."""
        self._typed(unit, "power_shelf")
        if feed.upper() not in ("A", "B"):
            raise ValueError("feed must be 'A' or 'B'")
        return FeedHandle(self, unit, "AB".index(feed.upper()))

    def cdu(self, unit: int) -> CduHandle:
        self._typed(unit, "cdu")
        return CduHandle(self, unit)

    def babbler(self, name: str = "babbler", seed: int | None = None) -> Babbler:
        """A broken transceiver that will drive garbage once started."""
        return Babbler(self, name, self.spec.seed if seed is None else seed)

    # ---- real time and lifecycle -----------------------------------------------------------
    def start_realtime(self, pty_path: str | Path | None = None, *, capture: bool = False) -> str:
        """Expose the bus on a pty (symlinked at ``pty_path``) and run it in real time."""
        from .pty_port import DEFAULT_LINK, PtyPort, RealTimeRunner

        if capture and self.capture is None:
            from .capture import Capture

            self.capture = Capture(bus=self.bus)
        self.host.close()  # the pty is the host now; an idle port would only cost time
        # A program on the pty writes whenever it likes and must get its replies in
        # real time: idle strides (one plant step) only after REALTIME_IDLE_AFTER_US of
        # silence on the wire (longer than any board's turnaround), and a stride is cut
        # short the moment the program writes (the runner waits on the pty's fd).
        self.bus.idle_quantum_us = self._step_us
        self.bus.idle_after_us = REALTIME_IDLE_AFTER_US
        self.pty = PtyPort(self.bus, "pty", link=pty_path or DEFAULT_LINK)
        self.bus.detach(self.pty)  # re-attached behind the turnaround guard
        self._pty_guard = self.bus.attach(TurnaroundGuard(self.pty, self.bus))
        self.runner = RealTimeRunner(self.bus).start()
        return self.pty.port

    def start(self) -> Rack:
        """``rackctl run``'s entry: real time on the default pty when ``realtime``."""
        if self.realtime and self.runner is None:
            self.start_realtime()
        return self

    @property
    def port(self) -> str | None:
        return self.pty.port if self.pty is not None else None

    def stop(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop the runner, close the pty and every node (no VM process left behind)."""
        if self._closed:
            return
        self._closed = True
        if self.runner is not None:
            self.runner.stop()
        if self.pty is not None:
            self.bus.detach(self._pty_guard)
            self.pty.close()
        for unit in self.units.values():
            close = getattr(unit.node, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:  # keep closing the others
                    log.exception("closing %s", unit.name)
        if self._mcu is not None:
            self._mcu.close()  # ends the Node process and its worker threads
            self._mcu = None

    def __enter__(self) -> Rack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TurnaroundGuard:
    """A host attachment that keeps t3.5 of silence before it transmits.

    The Modbus client rule ("t3.5 before a request") matters here more than on copper:
    the bus hands a reply to the *other* boards up to one quantum late, and a program
    on the pty (pymodbus's synchronous client does this) may answer a reply with its
    next request at once.  A board would then see the tail of the previous reply run
    into the request — one garbled frame, one timeout.  The guard holds each write
    back until t3.5 + one quantum after the last byte the host heard.
    """

    passive = True

    def __init__(self, port: Any, bus: Bus) -> None:
        self.port = port
        self.name = port.name
        self._gap_us = bus.line.t35_us + bus.quantum_us
        self._quiet_from = 0

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        self._quiet_from = max(self._quiet_from, t0_us + len(data) * byte_us)
        self.port.deliver(data, t0_us, byte_us)

    def fileno(self) -> int:
        return int(self.port.fileno())

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        earliest = self._quiet_from + self._gap_us
        return [(max(start, earliest), data) for start, data in self.port.advance(until_us)]


@contextlib.contextmanager
def open_rack(spec: RackSpec | None = None, **kw: Any) -> Iterator[Rack]:
    """``with open_rack(spec) as rack:`` — closed (node processes ended) on exit."""
    rack = Rack(spec, **kw)
    try:
        yield rack
    finally:
        rack.close()
