"""A scripted bus node for the bus, capture and fault tests.

``Talker(name, [(start_us, data), ...])`` transmits each burst when the bus reaches
its start time and records every byte it hears as ``(arrival_us, byte)`` -- the
least a :class:`rackhil.node.Node` can be, so a test controls exactly what goes on
the wire and when.
"""

from __future__ import annotations


class Talker:
    """Drives scripted bursts at fixed times and records what it hears."""

    def __init__(self, name: str, script: list[tuple[int, bytes]]) -> None:
        self.name = name
        self.script = sorted(script)
        self.heard: list[tuple[int, int]] = []

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        self.heard.extend((t0_us + (i + 1) * byte_us, b) for i, b in enumerate(data))

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        out = [s for s in self.script if s[0] <= until_us]
        self.script = [s for s in self.script if s[0] > until_us]
        return out
