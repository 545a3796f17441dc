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

Every action is logged and marked on :attr:`Rack.trace`, whose plot shows what the
plants did around it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from . import faults
from .bus import Bus
from .faults import BabblingNode, BitErrors, DroppedBytes
from .master import Master
from .plants import ensure_micropython_shim
from .plants.base import Plant
from .plants.cdu import Cdu, CduParams
from .plants.power_shelf import PowerShelf
from .rackspec import BoardSpec, RackSpec
from .trace import Trace
from .transport import HostPort

ensure_micropython_shim()
from rackfw import io_cdu, io_power  # noqa: E402
from rackfw.events import RESET_POWER_ON, RESET_WATCHDOG  # noqa: E402

log = logging.getLogger(__name__)

WATCHDOG_S = 2.0  # hardware watchdog timeout of the boards (RP2040 WDT set by main.py)

#: Makes the firmware's main loop "stuck" in the VM: no UART service, no control tick,
#: so no watchdog feed (``rackfw.board.Board`` feeds it from the tick).  The stuck tick
#: still pushes its deadline out, so ``poll()`` keeps returning a sane delay instead of
#: asking the VM host to spin at 1 µs steps until the watchdog fires.
_HANG_FIRMWARE = """\
import main
from rackfw.timebase import ticks_add
def _stuck(now_ms, late_ms, b=main.board):
    b._next_tick = ticks_add(now_ms, 1000)
main.board._tick = _stuck
main.board.link.service = lambda *a: 0
"""

NodeFactory = Callable[[BoardSpec, RackSpec], Any]

#: Friendly sensor names (scenarios) -> channel, per board type; ``S_<NAME>`` of the
#: io module is accepted too (``rack.cdu(3).sensor("t_supply")``).
SENSOR_ALIASES = {
    "cdu": {
        "supply_temp": io_cdu.S_T_SUPPLY,
        "return_temp": io_cdu.S_T_RETURN,
        "facility_in_temp": io_cdu.S_T_FAC_IN,
        "facility_out_temp": io_cdu.S_T_FAC_OUT,
        "supply_pressure": io_cdu.S_P_SUPPLY,
        "return_pressure": io_cdu.S_P_RETURN,
        "valve_feedback": io_cdu.S_VALVE_FB,
    },
    "power_shelf": {"bus_voltage": io_power.S_BUS_V, "bus_current": io_power.S_BUS_I},
}
_IO = {"cdu": io_cdu, "power_shelf": io_power}


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


class BoardUnit:
    """One board on the rack: its spec, node, plant, and what the rack did to it."""

    def __init__(self, rack: Rack, spec: BoardSpec, node: Any, plant: Plant) -> None:
        self.rack = rack
        self.spec = spec
        self.node = node
        self.plant = plant
        self.io = _IO[spec.type]
        self.state = "on"  # on | hung | off
        self.resets = 0
        self.watchdog_resets = 0
        self._frozen: dict[int, int] | None = None
        self._back_at_us: int | None = None
        self._resets_seen = 0
        self._cause = RESET_POWER_ON

    @property
    def id(self) -> int:
        return self.spec.id

    @property
    def name(self) -> str:
        return self.spec.name

    def outputs(self) -> dict[int, int]:
        """What the board drives now (held while hung, hardware defaults while off)."""
        if self.state == "hung" and self._frozen is not None:
            return self._frozen
        if self.state == "off":
            return dict(self.plant.OUTPUT_DEFAULTS)
        return _read_outputs(self.node, self.io.OUTPUT_COUNT)

    # ---- board faults (rack.board(n).…) ------------------------------------------------
    def power_cycle(self, off_s: float = 0.0) -> BoardUnit:
        """Cut power (RAM lost, flash kept) and restore it after ``off_s`` (0: at once)."""
        self.rack._mark(f"{self.name}: power cycle")
        if off_s <= 0:
            self._reboot(RESET_POWER_ON)
        else:
            self._go_off("off", off_s, RESET_POWER_ON)
        return self

    def hang(self, watchdog_s: float = WATCHDOG_S) -> BoardUnit:
        """The firmware's main loop gets stuck: deaf, mute, outputs frozen — until the
        hardware watchdog (not fed any more) resets the board.

        In the VM the stuck loop is made real: the board object stops servicing the
        UART and stops ticking (so it stops feeding the watchdog), and the VM host's
        own watchdog (``wdt_ms``) resets it.  Nodes without a watchdog of their own
        are taken off the bus and reset here ``watchdog_s`` later.
        """
        self.rack._mark(f"{self.name}: firmware hangs")
        if hasattr(self.node, "resets") and (hasattr(self.node, "exec") or hasattr(self.node, "board")):
            self._resets_seen = len(self.node.resets)
            if hasattr(self.node, "exec"):  # VmNode: patch the firmware inside the VM
                self.node.exec(_HANG_FIRMWARE)
            else:  # CPythonNode: the same patch on the board object in this interpreter
                exec(_HANG_FIRMWARE.replace("import main\n", ""), {"main": self.node})
            self.state = "hung"
            return self
        self._frozen = _read_outputs(self.node, self.io.OUTPUT_COUNT)
        self._go_off("hung", watchdog_s, RESET_WATCHDOG)
        return self

    def _go_off(self, state: str, for_s: float, cause: int) -> None:
        bus = self.rack.bus
        bus.detach(self.node)
        self.state = state
        self._back_at_us = bus.now_us + round(for_s * 1_000_000)
        self._cause = cause

    def _service(self, now_us: int) -> None:
        """Called every bus step while the board is hung or off."""
        if self._back_at_us is None:
            resets = getattr(self.node, "resets", ())
            if self.state == "hung" and len(resets) > self._resets_seen:
                self.watchdog_resets += 1
                self.resets += 1
                self.state = "on"
                self.rack._mark(f"{self.name}: watchdog reset")
            return
        if now_us < self._back_at_us:
            return
        self._back_at_us = None
        # run the invisible firmware up to now (its clock stays with the bus), then reset
        with contextlib.suppress(Exception):
            self.node.advance(now_us)
        if self._cause == RESET_WATCHDOG:
            self.watchdog_resets += 1
            self.rack._mark(f"{self.name}: watchdog reset")
        self._reboot(self._cause)
        self.rack.bus.attach(self.node)
        self.state = "on"
        self._frozen = None

    def _reboot(self, cause: int) -> None:
        self.resets += 1
        if "reset_cause" in inspect.signature(self.node.power_cycle).parameters:
            self.node.power_cycle(reset_cause=cause)
        else:  # VmNode: its own watchdog reports watchdog resets; a power cycle is power-on
            self.node.power_cycle()
        self.rack._push_sensors(self)


def _read_outputs(node: Any, count: int) -> dict[int, int]:
    if hasattr(node, "get_outputs"):
        return dict(node.get_outputs())
    return {ch: node.get_output(ch) for ch in range(count)}


def _write_sensors(node: Any, values: dict[int, int]) -> None:
    if hasattr(node, "set_sensors"):
        node.set_sensors(values)
    else:
        for ch, v in values.items():
            node.set_sensor(ch, v)


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
        """A node running the real firmware for ``spec`` on its runtime (vm / cpython)."""
        config = {"board": spec.type, "unit_id": spec.id, "baud": rack.line.baud,
                  "serial": f"EMU-{spec.id:04d}"}
        if spec.runtime == "vm":
            from .mcu import McuProcess, VmNode

            if self._mcu is None:
                self._mcu = McuProcess()
            return VmNode.emulated(self._mcu, spec.name, config, seed=rack.seed * 1000 + spec.id)
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
        _write_sensors(unit.node, unit.plant.sensors())

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
        # a program on the pty writes whenever it likes: no idle strides that would
        # delay its replies (and hand other boards frames late)
        self.bus.idle_quantum_us = self.bus.quantum_us
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

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        earliest = self._quiet_from + self._gap_us
        return [(max(start, earliest), data) for start, data in self.port.advance(until_us)]


# ---- scenario vocabulary ------------------------------------------------------------------
class PsuHandle:
    def __init__(self, rack: Rack, unit: int, slot: int) -> None:
        self.rack, self.unit, self.slot = rack, unit, slot
        self.plant = rack.shelf(unit)

    def _act(self, what: str) -> PsuHandle:
        self.rack._mark(f"shelf {self.unit} PSU {self.slot}: {what}")
        return self

    def fail(self, mode: str = "dead") -> PsuHandle:
        """``"dead"``, ``"overvoltage"`` or ``"fan"``."""
        self.plant.fail_psu(self.slot - 1, mode)
        return self._act(f"fails ({mode})")

    def repair(self) -> PsuHandle:
        self.plant.repair_psu(self.slot - 1)
        return self._act("repaired")

    def remove(self) -> PsuHandle:
        self.plant.remove_psu(self.slot - 1)
        return self._act("pulled")

    def insert(self) -> PsuHandle:
        self.plant.insert_psu(self.slot - 1)
        return self._act("inserted")


class FeedHandle:
    def __init__(self, rack: Rack, unit: int, feed: int) -> None:
        self.rack, self.unit, self.feed = rack, unit, feed
        self.plant = rack.shelf(unit)

    def lose(self) -> FeedHandle:
        self.plant.lose_feed(self.feed)
        self.rack._mark(f"shelf {self.unit} feed {'AB'[self.feed]} lost")
        return self

    def restore(self) -> FeedHandle:
        self.plant.restore_feed(self.feed)
        self.rack._mark(f"shelf {self.unit} feed {'AB'[self.feed]} back")
        return self

    def set(self, volts: float) -> FeedHandle:
        self.plant.set_feed(self.feed, volts)
        self.rack._mark(f"shelf {self.unit} feed {'AB'[self.feed]} at {volts:.0f} V")
        return self


class CduHandle:
    def __init__(self, rack: Rack, unit: int) -> None:
        self.rack, self.unit = rack, unit
        plant = rack.unit(unit).plant
        assert isinstance(plant, Cdu)
        self.plant: Cdu = plant

    def _zone(self, zone: str | int) -> int:
        return zone if isinstance(zone, int) else getattr(io_cdu, "LEAK_" + zone.upper())

    def leak(self, zone: str | int = "cdu_tray", lpm: float = 2.0) -> CduHandle:
        self.plant.leak(self._zone(zone), lpm)
        self.rack._mark(f"CDU {self.unit}: leak in {zone}")
        return self

    def stop_leak(self, zone: str | int = "cdu_tray", dry: bool = True) -> CduHandle:
        self.plant.stop_leak(self._zone(zone), dry=dry)
        self.rack._mark(f"CDU {self.unit}: leak in {zone} stopped")
        return self

    def heat_load(self, watts: float) -> CduHandle:
        self.plant.set_heat_load(watts)
        self.rack._mark(f"CDU {self.unit}: heat load {watts / 1000:.0f} kW")
        return self

    def pump(self, n: int) -> PumpHandle:
        """Pump ``n`` as numbered on the panel (1 = lead at start)."""
        if not 1 <= n <= io_cdu.PUMP_COUNT:
            raise ValueError(f"pump must be 1..{io_cdu.PUMP_COUNT}")
        return PumpHandle(self, n)

    def sensor(self, name: str) -> SensorHandle:
        return SensorHandle(self.rack, self.unit, name)


class PumpHandle:
    def __init__(self, cdu: CduHandle, n: int) -> None:
        self.cdu, self.n = cdu, n

    def fail(self, mode: str = "dead") -> PumpHandle:
        """``"dead"``, ``"overcurrent"`` or ``"no_tach"``."""
        self.cdu.plant.fail_pump(self.n - 1, mode)
        self.cdu.rack._mark(f"CDU {self.cdu.unit} pump {self.n} fails ({mode})")
        return self

    def repair(self) -> PumpHandle:
        self.cdu.plant.repair_pump(self.n - 1)
        self.cdu.rack._mark(f"CDU {self.cdu.unit} pump {self.n} repaired")
        return self


class SensorHandle:
    """One analogue input of a board; faults act on what its ADC reports."""

    def __init__(self, rack: Rack, unit: int, name: str) -> None:
        u = rack.unit(unit)
        self.rack, self.unit, self.name = rack, unit, name
        self.plant = u.plant
        alias = SENSOR_ALIASES[u.spec.type].get(name)
        ch = alias if alias is not None else getattr(u.io, "S_" + name.upper(), None)
        if ch is None:
            raise KeyError(f"board {unit} ({u.spec.type}) has no sensor {name!r}")
        self.ch: int = ch

    def _fault(self, fault: Any, what: str) -> SensorHandle:
        self.plant.inject_sensor_fault(self.ch, fault)
        self.rack._mark(f"board {self.unit} sensor {self.name}: {what}")
        return self

    def open_circuit(self) -> SensorHandle:
        return self._fault(faults.OpenCircuit(), "open circuit")

    def short_circuit(self) -> SensorHandle:
        return self._fault(faults.ShortCircuit(), "short circuit")

    def stuck(self, value: int | None = None) -> SensorHandle:
        return self._fault(faults.Stuck(value), "stuck")

    def noisy(self, sigma: float, bias: float = 0.0) -> SensorHandle:
        return self._fault(faults.Noisy(sigma, bias), f"noisy (sigma {sigma})")

    def repair(self) -> SensorHandle:
        self.plant.clear_sensor_fault(self.ch)
        self.rack._mark(f"board {self.unit} sensor {self.name}: repaired")
        return self


class LineFaults:
    """Noise on the wire (``rack.line``): every receiver sees the same corrupted bytes."""

    def __init__(self, rack: Rack) -> None:
        self.rack = rack
        self.active: list[Any] = []

    def ber(self, ber: float, *, drop_errored: bool = False) -> BitErrors:
        fault = BitErrors(ber, drop_errored=drop_errored, start_us=self.rack.bus.now_us)
        return self._add(fault, f"line BER {ber:g}")

    def drop(self, rate: float) -> DroppedBytes:
        fault = DroppedBytes(rate, start_us=self.rack.bus.now_us)
        return self._add(fault, f"line drops {rate:.1%} of bytes")

    def _add(self, fault: Any, label: str) -> Any:
        self.rack.bus.add_line_fault(fault)
        self.active.append(fault)
        self.rack._mark(label)
        return fault

    def clear(self) -> None:
        for fault in self.active:
            self.rack.bus.remove_line_fault(fault)
        self.active.clear()
        self.rack._mark("line clean")


class Babbler:
    """A node whose transceiver is stuck transmitting garbage (``start``/``stop``)."""

    FOREVER_US = 10**15

    def __init__(self, rack: Rack, name: str, seed: int) -> None:
        self.rack, self.name, self.seed = rack, name, seed
        self.node: BabblingNode | None = None

    def start(self) -> Babbler:
        bus = self.rack.bus
        self.node = BabblingNode(self.name, bus.line, start_us=bus.now_us, duration_us=self.FOREVER_US, seed=self.seed)
        bus.attach(self.node)
        self.rack._mark(f"{self.name} starts babbling")
        return self

    def stop(self) -> Babbler:
        if self.node is not None:
            self.node.end_us = self.rack.bus.now_us
            self.rack.bus.detach(self.node)
            self.node = None
            self.rack._mark(f"{self.name} quiet")
        return self

    def __enter__(self) -> Babbler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def open_rack(spec: RackSpec | None = None, **kw: Any) -> Iterator[Rack]:
    """``with open_rack(spec) as rack:`` — closed (node processes ended) on exit."""
    rack = Rack(spec, **kw)
    try:
        yield rack
    finally:
        rack.close()
