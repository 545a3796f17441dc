"""Fault injection vocabulary for the software rack.

Three families, each acting where the real fault would:

* **line** (on the wire, seen by every receiver): :class:`BitErrors` at a bit
  error rate, :class:`DroppedBytes`, and :class:`BabblingNode`, a fake attachment
  that drives garbage for a while (and so collides with everyone else);
* **board**: :func:`power_cycle` (delegates to ``node.power_cycle()``: RAM lost,
  flash kept) and a brown-out (:meth:`FaultSchedule.brown_out`: the board is off
  the bus for a while, then restarts);
* **sensor** (wrappers on a plant's sensor output, in the channel's scaled units):
  :class:`Stuck`, :class:`Noisy`, :class:`Drift`, :class:`OpenCircuit`,
  :class:`ShortCircuit`;
* **plant**: :class:`PsuFailure`, :class:`AcLoss`, :class:`PumpFailure`,
  :class:`Leak`, :class:`SensorFailure` — objects with ``inject(plant)`` /
  ``clear(plant)`` so a scenario can schedule them.

Everything random draws from the generator it is handed (the bus's or the
plant's, both seeded), so a faulty run is as reproducible as a clean one.

Bit errors and parity: a flipped bit inside the character frame changes the data
(data bits), breaks the parity (parity bit, or an odd number of data-bit flips) or
the framing (start/stop bits).  MicroPython's ``machine.UART`` on RP2040 and STM32
hands the byte over regardless of a parity error, so by default the (possibly
corrupted) byte is delivered; ``drop_errored=True`` models a UART that discards
characters with parity or framing errors.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Iterable
from typing import Any

from .bus import FLIPPED, LOST, Bus, Transmission
from .plants import ensure_micropython_shim
from .wire import LineSettings, flip_bits

ensure_micropython_shim()
from rackfw.io_power import SENSOR_OPEN, SENSOR_SHORT  # noqa: E402

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- line faults
class _Windowed:
    """Applies to transmissions starting in ``[start_us, end_us)`` from ``sources``."""

    def __init__(self, start_us: int = 0, end_us: int | None = None, sources: Iterable[str] | None = None) -> None:
        self.start_us = start_us
        self.end_us = end_us
        self.sources = None if sources is None else frozenset(sources)
        self.hits = 0  # bytes affected so far

    def active_for(self, tx: Transmission) -> bool:
        if tx.start_us < self.start_us or (self.end_us is not None and tx.start_us >= self.end_us):
            return False
        return self.sources is None or tx.source in self.sources


class BitErrors(_Windowed):
    """Independent bit flips at bit error rate ``ber`` over every bit of each character."""

    def __init__(self, ber: float, *, drop_errored: bool = False, **window: Any) -> None:
        super().__init__(**window)
        if not 0.0 <= ber < 1.0:
            raise ValueError("ber must be in [0, 1)")
        self.ber = ber
        self.drop_errored = drop_errored
        self.bits_flipped = 0

    def apply(self, tx: Transmission, line: LineSettings, rng: random.Random) -> None:
        if self.ber <= 0.0 or not self.active_for(tx):
            return
        nbits = line.bits_per_byte
        total = len(tx.data) * nbits
        log_q = math.log1p(-self.ber)
        flips: dict[int, list[int]] = {}
        pos = -1
        while True:  # geometric gaps between flipped bits: O(flips), not O(bits)
            pos += 1 + int(math.log(1.0 - rng.random()) / log_q)
            if pos >= total:
                break
            flips.setdefault(pos // nbits, []).append(pos % nbits)
        for index, bits in flips.items():
            got = flip_bits(tx.data[index], bits, line)
            tx.data[index] = got.value
            tx.flags[index] |= FLIPPED
            if self.drop_errored and not got.ok:
                tx.flags[index] |= LOST
            self.bits_flipped += len(bits)
            self.hits += 1


class DroppedBytes(_Windowed):
    """Each byte is lost (a receiver overrun, a glitch) with probability ``rate``."""

    def __init__(self, rate: float, **window: Any) -> None:
        super().__init__(**window)
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be in [0, 1]")
        self.rate = rate

    def apply(self, tx: Transmission, line: LineSettings, rng: random.Random) -> None:
        if self.rate <= 0.0 or not self.active_for(tx):
            return
        for i in range(len(tx.data)):
            if rng.random() < self.rate:
                tx.flags[i] |= LOST
                self.hits += 1


class BabblingNode:
    """A broken transceiver that drives random bytes, back to back, for a while.

    Attach it to the bus like a board; from ``start_us`` for ``duration_us`` it
    holds DE high and sends garbage, colliding with anything else on the wire.
    """

    def __init__(self, name: str, line: LineSettings, *, start_us: int, duration_us: int, seed: int = 0) -> None:
        self.name = name
        self.line = line
        self.start_us = start_us
        self.end_us = start_us + duration_us
        self.rng = random.Random(seed)
        self._sent_until = start_us
        self.bytes_sent = 0

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        pass  # deaf: it never listens

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        b = self.line.byte_us
        stop = min(until_us, self.end_us)
        if stop <= self._sent_until:
            return []
        n = -(-(stop - self._sent_until) // b)  # whole characters, the last may run past stop
        start = self._sent_until
        self._sent_until += n * b
        self.bytes_sent += n
        return [(start, self.rng.randbytes(n))]


# ---------------------------------------------------------------- board faults
def power_cycle(node: Any) -> None:
    """Cut and restore the board's power: RAM state lost, flash kept."""
    node.power_cycle()


# ---------------------------------------------------------------- sensor faults
class Stuck:
    """The reading freezes (at ``value``, or at the first value it sees)."""

    def __init__(self, value: int | None = None) -> None:
        self.value = value

    def apply(self, value: int, t_s: float, rng: random.Random) -> int:
        if self.value is None:
            self.value = value
        return self.value


class Noisy:
    """Extra gaussian noise (and an optional offset), in the channel's units."""

    def __init__(self, sigma: float, bias: float = 0.0) -> None:
        self.sigma = sigma
        self.bias = bias

    def apply(self, value: int, t_s: float, rng: random.Random) -> int:
        return round(value + self.bias + rng.gauss(0.0, self.sigma))


class Drift:
    """A transmitter drifting away at ``per_s`` units per second from when first applied."""

    def __init__(self, per_s: float) -> None:
        self.per_s = per_s
        self.t0: float | None = None

    def apply(self, value: int, t_s: float, rng: random.Random) -> int:
        if self.t0 is None:
            self.t0 = t_s
        return round(value + self.per_s * (t_s - self.t0))


class OpenCircuit:
    """Broken wire: the ADC rails high (``SENSOR_OPEN``)."""

    def apply(self, value: int, t_s: float, rng: random.Random) -> int:
        return SENSOR_OPEN


class ShortCircuit:
    """Shorted input: ``SENSOR_SHORT``."""

    def apply(self, value: int, t_s: float, rng: random.Random) -> int:
        return SENSOR_SHORT


# ---------------------------------------------------------------- plant faults
class PsuFailure:
    """PSU in 0-based ``slot`` fails: ``"dead"``, ``"overvoltage"`` or ``"fan"``."""

    def __init__(self, slot: int, mode: str) -> None:
        self.slot, self.mode = slot, mode

    def inject(self, plant: Any) -> None:
        plant.fail_psu(self.slot, self.mode)

    def clear(self, plant: Any) -> None:
        plant.repair_psu(self.slot)


class AcLoss:
    """AC feed ``feed`` (0 = A, 1 = B) is lost."""

    def __init__(self, feed: int) -> None:
        self.feed = feed

    def inject(self, plant: Any) -> None:
        plant.lose_feed(self.feed)

    def clear(self, plant: Any) -> None:
        plant.restore_feed(self.feed)


class PumpFailure:
    """Pump ``index`` fails: ``"dead"``, ``"overcurrent"`` or ``"no_tach"``."""

    def __init__(self, index: int, mode: str = "dead") -> None:
        self.index, self.mode = index, mode

    def inject(self, plant: Any) -> None:
        plant.fail_pump(self.index, self.mode)

    def clear(self, plant: Any) -> None:
        plant.repair_pump(self.index)


class Leak:
    """Coolant leak in ``zone`` (``io_cdu.LEAK_*``); clearing also dries the sensor."""

    def __init__(self, zone: int, lpm: float = 2.0) -> None:
        self.zone, self.lpm = zone, lpm

    def inject(self, plant: Any) -> None:
        plant.leak(self.zone, self.lpm)

    def clear(self, plant: Any) -> None:
        plant.stop_leak(self.zone, dry=True)


class SensorFailure:
    """Sensor fault ``fault`` on channel ``ch`` of a plant."""

    def __init__(self, ch: int, fault: Any) -> None:
        self.ch, self.fault = ch, fault

    def inject(self, plant: Any) -> None:
        plant.inject_sensor_fault(self.ch, self.fault)

    def clear(self, plant: Any) -> None:
        plant.clear_sensor_fault(self.ch)


# ---------------------------------------------------------------- scheduling
class FaultSchedule:
    """Run fault actions at virtual times, on bus step boundaries (<= one quantum late).

    ``schedule.inject(at_s, PsuFailure(2, "dead"), shelf, duration_s=30)`` injects
    at ``at_s`` and clears ``duration_s`` later; ``at(at_s, fn)`` runs any callable.
    """

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._actions: list[tuple[int, int, Callable[[], None], str]] = []
        self._seq = 0
        self.log: list[tuple[int, str]] = []  # (time_us, label) of what ran
        bus.add_step_hook(self._run_due)

    def at(self, at_s: float, action: Callable[[], None], label: str = "") -> None:
        self._seq += 1
        self._actions.append((round(at_s * 1_000_000), self._seq, action, label or repr(action)))
        self._actions.sort(key=lambda a: (a[0], a[1]))

    def inject(self, at_s: float, fault: Any, plant: Any, duration_s: float | None = None) -> None:
        name = type(fault).__name__
        self.at(at_s, lambda: fault.inject(plant), f"inject {name}")
        if duration_s is not None:
            self.at(at_s + duration_s, lambda: fault.clear(plant), f"clear {name}")

    def line_fault(self, at_s: float, fault: Any, duration_s: float | None = None) -> None:
        name = type(fault).__name__
        self.at(at_s, lambda: self.bus.add_line_fault(fault), f"line {name}")
        if duration_s is not None:
            self.at(at_s + duration_s, lambda: self.bus.remove_line_fault(fault), f"end {name}")

    def brown_out(self, at_s: float, node: Any, off_s: float) -> None:
        """The board loses power at ``at_s`` (off the bus), restarts ``off_s`` later."""

        def back() -> None:
            node.power_cycle()
            self.bus.attach(node)

        self.at(at_s, lambda: self.bus.detach(node), f"brown-out {node.name}")
        self.at(at_s + off_s, back, f"power back {node.name}")

    @property
    def pending(self) -> int:
        return len(self._actions)

    def _run_due(self, now_us: int) -> None:
        while self._actions and self._actions[0][0] <= now_us:
            _, _, action, label = self._actions.pop(0)
            log.info("fault at %.6f s: %s", now_us / 1e6, label)
            self.log.append((now_us, label))
            action()
