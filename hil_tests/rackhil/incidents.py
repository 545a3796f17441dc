"""The scenario vocabulary of the software rack: what a test can do to it.

:class:`~rackhil.rack.Rack` hands these out so HIL scenarios read like the incident
they model::

    rack.psu(1, 3).fail("overvoltage")      # shelf 1, PSU slot 3     -> PsuHandle
    rack.feed(1, "A").lose()                # AC feed A of shelf 1     -> FeedHandle
    rack.cdu(3).leak("cdu_tray")            # CDU 3                    -> CduHandle
    rack.cdu(3).pump(1).fail()              #                          -> PumpHandle
    rack.cdu(3).sensor("supply_temp").open_circuit()   #               -> SensorHandle
    rack.board(1).power_cycle(); rack.board(1).hang()  #               -> BoardUnit
    rack.line.ber(1e-3)                     # noise on the wire        -> LineFaults
    rack.babbler().start() ... .stop()      # a broken transceiver     -> Babbler

Each handle acts on the plant model (the physical truth the firmware measures), on
the node (power, hangs) or on the bus (line faults), and marks the action on the
rack's trace so its plot shows what happened around it. The rack itself -- nodes,
plants, bus, host and time -- is in :mod:`rackhil.rack`.
"""

from __future__ import annotations

import contextlib
import inspect
from typing import TYPE_CHECKING, Any

from . import faults
from .faults import BabblingNode, BitErrors, DroppedBytes
from .plants import ensure_micropython_shim
from .plants.base import Plant
from .plants.cdu import Cdu
from .rackspec import BoardSpec

ensure_micropython_shim()
from rackfw import io_cdu, io_power  # noqa: E402
from rackfw.events import RESET_POWER_ON, RESET_WATCHDOG  # noqa: E402

if TYPE_CHECKING:
    from .rack import Rack

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
IO_MODULES = {"cdu": io_cdu, "power_shelf": io_power}


class BoardUnit:
    """One board on the rack: its spec, node, plant, and what the rack did to it."""

    def __init__(self, rack: Rack, spec: BoardSpec, node: Any, plant: Plant) -> None:
        self.rack = rack
        self.spec = spec
        self.node = node
        self.plant = plant
        self.io = IO_MODULES[spec.type]
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
        return read_outputs(self.node, self.io.OUTPUT_COUNT)

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
        self._frozen = read_outputs(self.node, self.io.OUTPUT_COUNT)
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


def read_outputs(node: Any, count: int) -> dict[int, int]:
    """What a node's firmware drives on its ``count`` output channels now."""
    if hasattr(node, "get_outputs"):
        return dict(node.get_outputs())
    return {ch: node.get_output(ch) for ch in range(count)}


def write_sensors(node: Any, values: dict[int, int]) -> None:
    """Set a node's sensor inputs (in one call where the node supports it)."""
    if hasattr(node, "set_sensors"):
        node.set_sensors(values)
    else:
        for ch, v in values.items():
            node.set_sensor(ch, v)


class PsuHandle:
    """One PSU slot of a power shelf (``rack.psu(unit, slot)``); acts on the shelf plant."""

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
    """One AC feed (A/B) of a power shelf (``rack.feed(unit, "A")``)."""

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
    """A CDU's loop (``rack.cdu(unit)``): leaks, heat load, and its pumps and sensors."""

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
    """One pump of a CDU (``rack.cdu(unit).pump(n)``)."""

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
