"""A multi-drop, half-duplex RS-485 bus in virtual time.

Every attachment (a board's :class:`~rackhil.node.Node`, a host port, a babbling
fault node) implements the node contract of ``docs/contracts.md``::

    deliver(data, t0_us, byte_us)   # byte i reaches RX at t0_us + (i+1)*byte_us
    advance(until_us) -> [(start_us, data), ...]   # what it drove while DE was high

The bus steps everyone in lockstep quanta (``quantum_us``, default 1 ms, never more
than t3.5 so a frame end cannot be missed; ``idle_quantum_us`` optionally lets a
silent bus take longer steps, which saves round trips to VM nodes between polls), charges each byte its real character
time (:mod:`rackhil.wire`), delivers every transmission to every other attachment
and garbles the bytes of transmissions that overlap in time (two drivers at once).

Ordering within one step ``(now, target]`` and why:

1. *Passive* attachments (host ports: ``passive = True``; they only talk when a
   program writes, between steps) hand over what was written, starting by now.
2. Bytes arriving by ``target`` are delivered to the *active* nodes **before** they
   run, so a node sees a host request byte-exact, at its true arrival time.
3. Active nodes run to ``target`` (batched through ``rackhil.node.advance_all``
   when that exists, so VM processes run in parallel).
4. Passive attachments and listeners (capture) get bytes arriving by ``target``
   only now, when every transmission that could overlap them is known: what a
   host port reads and what the capture records is exact, collisions included.

The price of step 2: a transmission that starts inside a step reaches the *other
nodes* at the next step boundary (bytes still carry their true timestamps), and
when it collides with an earlier one, the earlier one's bytes already handed to
nodes in step 2 stay clean for those nodes (at most one quantum's worth; the rest
of both frames is garbled for everyone).  A board never needs another board's
response on time, so this trade keeps host<->board traffic exact.

A node does not hear its own transmission (RE is tied to DE on the boards).
Everything random (collision garbage, line faults) comes from one seeded
``random.Random``, so a run is reproducible from its seed.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .clock import AsFastAsPossible, RealTimePacer
from .wire import DEFAULT_LINE, LineSettings

log = logging.getLogger(__name__)

#: flags on a byte as it travels
LOST = 1  # the receiving UART discards it (parity/framing error, dropped)
GARBLED = 2  # corrupted by a collision
FLIPPED = 4  # bits flipped by line noise


class Attachment(Protocol):
    name: str

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None: ...

    def advance(self, until_us: int) -> list[tuple[int, bytes]]: ...


A = TypeVar("A", bound=Attachment)


class LineFault(Protocol):
    """Something that corrupts transmissions on the wire (see :mod:`rackhil.faults`)."""

    def apply(self, tx: Transmission, line: LineSettings, rng: random.Random) -> None: ...


@dataclass(frozen=True)
class WireByte:
    """One character as a bus monitor sees it, in arrival order."""

    t_us: int  # end of the character (when a receiver has it)
    value: int
    source: str
    flags: int = 0


class Transmission:
    """One burst a driver put on the wire: bytes back to back from ``start_us``."""

    __slots__ = ("source", "start_us", "data", "flags", "byte_us", "cursors", "final")

    def __init__(self, source: str, start_us: int, data: bytes, byte_us: int) -> None:
        self.source = source
        self.start_us = start_us
        self.data = bytearray(data)
        self.flags = bytearray(len(data))
        self.byte_us = byte_us
        self.cursors: dict[int, int] = {}  # attachment id -> bytes already delivered
        self.final = 0  # bytes already reported to listeners

    @property
    def end_us(self) -> int:
        return self.start_us + len(self.data) * self.byte_us

    def arrival_us(self, index: int) -> int:
        return self.start_us + (index + 1) * self.byte_us

    def count_arrived(self, t_us: int) -> int:
        """How many bytes have fully arrived by ``t_us``."""
        if t_us < self.start_us:
            return 0
        return min(len(self.data), (t_us - self.start_us) // self.byte_us)

    def overlapping(self, t0_us: int, t1_us: int) -> range:
        """Indices of bytes whose wire time intersects ``[t0_us, t1_us)``."""
        b = self.byte_us
        first = max(0, (t0_us - self.start_us) // b)
        last = min(len(self.data), -(-(t1_us - self.start_us) // b))
        return range(first, max(first, last))


class _Attached:
    __slots__ = ("ident", "node", "passive", "enabled")

    def __init__(self, ident: int, node: Attachment, passive: bool) -> None:
        self.ident = ident
        self.node = node
        self.passive = passive
        self.enabled = True


def _default_advance_all(nodes: Sequence[Attachment], until_us: int) -> list[list[tuple[int, bytes]]]:
    return [list(node.advance(until_us)) for node in nodes]


def _find_advance_all() -> Callable[[Sequence[Any], int], Any]:
    try:
        from .node import advance_all  # the VM helper's batching (parallel processes)
    except ImportError:
        return _default_advance_all
    return advance_all


class Bus:
    """The shared wire: attach nodes, then ``run_until`` / ``run`` in virtual time."""

    def __init__(
        self,
        line: LineSettings = DEFAULT_LINE,
        *,
        seed: int = 0,
        quantum_us: int = 1000,
        idle_quantum_us: int | None = None,
        idle_after_us: int = 0,
        pacer: AsFastAsPossible | RealTimePacer | None = None,
        advance_all: Callable[[Sequence[Any], int], Any] | None = None,
    ) -> None:
        if quantum_us <= 0:
            raise ValueError("quantum_us must be positive")
        self.line = line
        self.seed = seed
        self.rng = random.Random(seed)
        self.quantum_us = min(quantum_us, line.t35_us)
        self.idle_quantum_us = max(self.quantum_us, idle_quantum_us or self.quantum_us)
        # idle strides only once the wire has been silent this long: a board answers a
        # request after its turnaround, and its reply must not wait for a stride's end
        self.idle_after_us = idle_after_us
        self._last_wire_us = 0
        self.pacer = pacer or AsFastAsPossible()
        self.now_us = 0
        self.line_faults: list[LineFault] = []
        self._attached: list[_Attached] = []
        self._inflight: list[Transmission] = []
        self._listeners: list[Callable[[WireByte], None]] = []
        self._step_hooks: list[Callable[[int], None]] = []
        self._last_end: dict[str, int] = {}
        self._advance_all = advance_all or _find_advance_all()
        self._started = False
        self.lag_s = 0.0  # how far a paced run trails the wall clock
        self.collisions = 0

    # ---- wiring ------------------------------------------------------------
    def attach(self, node: A, *, passive: bool | None = None) -> A:
        """Connect ``node``; ``passive`` defaults to the node's own ``passive`` attribute."""
        if any(a.enabled and a.node.name == node.name for a in self._attached):
            raise ValueError(f"an attachment named {node.name!r} is already on the bus")
        if passive is None:
            passive = bool(getattr(node, "passive", False))
        att = _Attached(len(self._attached), node, passive)
        self._attached.append(att)
        for tx in self._inflight:  # joining mid-burst: hear only what is still to come
            tx.cursors[att.ident] = tx.count_arrived(self.now_us)
        return node

    def detach(self, node: Attachment) -> None:
        """Disconnect ``node``: it neither receives nor drives from now on."""
        for a in self._attached:
            if a.node is node:
                a.enabled = False

    @property
    def nodes(self) -> list[Attachment]:
        return [a.node for a in self._attached if a.enabled]

    def add_listener(self, listener: Callable[[WireByte], None]) -> None:
        """Call ``listener`` with every byte once it is final (capture, monitors)."""
        self._listeners.append(listener)

    def add_step_hook(self, hook: Callable[[int], None]) -> None:
        """Call ``hook(now_us)`` after every step (fault schedules, plant coupling)."""
        self._step_hooks.append(hook)

    def add_line_fault(self, fault: LineFault) -> None:
        self.line_faults.append(fault)

    def remove_line_fault(self, fault: LineFault) -> None:
        self.line_faults.remove(fault)

    def set_pacer(self, pacer: AsFastAsPossible | RealTimePacer) -> None:
        """Switch pacing; a real-time pacer's origin is the current virtual time."""
        self.pacer = pacer
        pacer.start(self.now_us)
        self._started = True

    # ---- state -------------------------------------------------------------
    @property
    def now_s(self) -> float:
        return self.now_us / 1_000_000

    def busy(self, at_us: int | None = None) -> bool:
        """True while some driver is on the wire at ``at_us`` (default: now)."""
        t = self.now_us if at_us is None else at_us
        return any(tx.start_us <= t < tx.end_us for tx in self._inflight)

    # ---- time --------------------------------------------------------------
    def run_until(self, until_us: int) -> None:
        """Step every attachment in lockstep up to virtual time ``until_us``."""
        while self.now_us < until_us:
            self.step(until_us)

    def run(self, seconds: float) -> None:
        self.run_until(self.now_us + round(seconds * 1_000_000))

    def step(self, limit_us: int | None = None) -> int:
        """Advance one quantum (or up to ``limit_us``); returns the new time."""
        if not self._started:
            self.pacer.start(self.now_us)
            self._started = True
        live = [a for a in self._attached if a.enabled]
        passive = [a for a in live if a.passive]
        active = [a for a in live if not a.passive]
        for a in passive:  # host writes happen between steps: they start at or before now
            self._register_all(a, a.node.advance(self.now_us))
        idle = not self._inflight and self.now_us >= self._last_wire_us + self.idle_after_us
        quantum = self.idle_quantum_us if idle else self.quantum_us
        target = self.now_us + quantum
        if limit_us is not None:
            target = min(target, limit_us)
        if target <= self.now_us:
            return self.now_us
        wake = [a.node.fileno() for a in passive if hasattr(a.node, "fileno")] if idle else []
        if wake:  # a host may write during the stride: cut it short when it does
            target = max(self.now_us + 1, self.pacer.wait_or_wake(target, wake))
            self.lag_s = 0.0
        else:
            self.lag_s = self.pacer.wait_until(target)
        self._commit(active, target)
        if active:
            results = self._advance_all([a.node for a in active], target)
            for a, txs in zip(active, results, strict=True):
                self._register_all(a, txs)
        self._report(target)
        self._commit(passive, target)
        self._retire(target)
        self.now_us = target
        for hook in self._step_hooks:
            hook(target)
        return target

    # ---- transmissions -----------------------------------------------------
    def _register_all(self, att: _Attached, txs: Iterable[tuple[int, bytes]]) -> None:
        for start_us, data in txs:
            if data:
                self.transmit(att.node.name, start_us, bytes(data))

    def transmit(self, source: str, start_us: int, data: bytes) -> Transmission:
        """Put ``data`` on the wire from ``source`` starting at ``start_us``.

        A driver cannot overlap itself (its UART queues), so a burst that starts
        before the same source's previous one ended is moved to follow it.
        """
        prev_end = self._last_end.get(source, 0)
        if start_us < prev_end:
            log.debug("%s: burst at %d us queued behind its previous one (%d us)", source, start_us, prev_end)
            start_us = prev_end
        tx = Transmission(source, start_us, data, self.line.byte_us)
        self._last_end[source] = tx.end_us
        self._last_wire_us = max(self._last_wire_us, tx.end_us)
        for fault in self.line_faults:
            fault.apply(tx, self.line, self.rng)
        for other in self._inflight:
            if other.source != source and other.start_us < tx.end_us and tx.start_us < other.end_us:
                self._collide(tx, other)
        self._inflight.append(tx)
        return tx

    def _collide(self, a: Transmission, b: Transmission) -> None:
        """Two drivers at once: every byte of either that overlaps the other is garbage."""
        self.collisions += 1
        log.info("collision on the bus: %s and %s at %d us", a.source, b.source, max(a.start_us, b.start_us))
        for tx, other in ((a, b), (b, a)):
            for i in tx.overlapping(other.start_us, other.end_us):
                if not tx.flags[i] & GARBLED:
                    tx.data[i] ^= self.rng.randrange(1, 256)
                    tx.flags[i] |= GARBLED

    def _commit(self, receivers: list[_Attached], until_us: int) -> None:
        """Hand each receiver the bytes that have arrived by ``until_us``."""
        for tx in self._inflight:
            arrived = tx.count_arrived(until_us)
            for r in receivers:
                if r.node.name == tx.source:
                    continue
                done = tx.cursors.get(r.ident, 0)
                if done >= arrived:
                    continue
                tx.cursors[r.ident] = arrived
                self._deliver_runs(r.node, tx, done, arrived)

    @staticmethod
    def _deliver_runs(node: Attachment, tx: Transmission, i0: int, i1: int) -> None:
        """Deliver bytes ``i0:i1`` as contiguous runs, skipping bytes the UART lost."""
        i = i0
        while i < i1:
            if tx.flags[i] & LOST:
                i += 1
                continue
            j = i
            while j < i1 and not tx.flags[j] & LOST:
                j += 1
            node.deliver(bytes(tx.data[i:j]), tx.start_us + i * tx.byte_us, tx.byte_us)
            i = j

    def _report(self, until_us: int) -> None:
        """Report final bytes to listeners in arrival order (before hosts see them)."""
        if not self._listeners:
            return
        events: list[WireByte] = []
        for tx in self._inflight:
            arrived = tx.count_arrived(until_us)
            for i in range(tx.final, arrived):
                events.append(WireByte(tx.arrival_us(i), tx.data[i], tx.source, tx.flags[i]))
            tx.final = arrived
        events.sort(key=lambda e: e.t_us)
        for event in events:
            for listener in self._listeners:
                listener(event)

    def _retire(self, until_us: int) -> None:
        """Forget bursts every receiver (and listener) has had in full."""
        for tx in self._inflight:
            if not self._listeners:
                tx.final = tx.count_arrived(until_us)
        live = [(a.ident, a.node.name) for a in self._attached if a.enabled]
        self._inflight = [tx for tx in self._inflight if not self._retired(tx, live)]

    @staticmethod
    def _retired(tx: Transmission, live: list[tuple[int, str]]) -> bool:
        """A burst is done once listeners and every other receiver have all of it."""
        n = len(tx.data)
        if tx.final < n:
            return False
        return all(tx.cursors.get(ident, 0) >= n for ident, name in live if name != tx.source)
