"""Scenario helper: poll registers like a host would, and keep what it saw on the trace."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rackhil.rack import Rack
from rackproto.errors import RackError


@dataclass
class Samples:
    """What a watch saw: ``(t_s, {register: value})`` per successful poll, failures counted."""

    rows: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    failures: int = 0

    def values(self, name: str) -> list[Any]:
        return [row[name] for _, row in self.rows]

    def series(self, name: str) -> list[tuple[float, Any]]:
        return [(t, row[name]) for t, row in self.rows]

    def first(self, predicate: Any) -> tuple[float, dict[str, Any]] | None:
        """The first poll whose row satisfies ``predicate(row)``."""
        for t, row in self.rows:
            if predicate(row):
                return t, row
        return None

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1][1]


def watch(
    rack: Rack,
    unit: int,
    names: list[str],
    seconds: float,
    period: float = 0.2,
    *,
    plot: tuple[str, ...] = (),
) -> Samples:
    """Poll ``names`` of ``unit`` every ``period`` s for ``seconds`` of virtual time.

    Numeric registers listed in ``plot`` are recorded on the rack's trace as
    ``<register>.<unit>`` (a failed poll leaves a gap).
    """
    out = Samples()
    board = rack.unit(unit).name

    def poll(t: float) -> None:
        try:
            row = rack.master.read_many(unit, names)
        except RackError:
            out.failures += 1
            for name in plot:
                rack.trace.record(t, f"{name}.{board}", None)
            return
        out.rows.append((rack.now_s, row))
        for name in plot:
            rack.trace.record(rack.now_s, f"{name}.{board}", row[name])

    rack.every(period, seconds, poll)
    return out
