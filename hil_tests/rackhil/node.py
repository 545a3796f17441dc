"""The node contract of the simulated bus, and batched stepping of many nodes.

A node is one attachment that runs firmware (docs/contracts.md, "Nodes on the
simulated bus"). ``advance_all`` is what the bus calls every step: VM nodes that share
one :class:`~rackhil.mcu.McuProcess` are advanced in a single pipe round-trip (their
workers run in parallel); every other node is advanced on its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Node(Protocol):
    name: str

    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        """Bytes reach this node's RX: byte i arrives at ``t0_us + (i+1)*byte_us``."""

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        """Run to virtual time ``until_us``; return transmissions started ``(start_us, data)``."""


def advance_all(nodes: Sequence[Any], until_us: int) -> list[list[tuple[int, bytes]]]:
    """Advance every node to ``until_us``; return their transmissions in ``nodes`` order.

    Nodes exposing ``batch_key()`` / ``advance_batch(nodes, until_us)`` (``VmNode``) are
    grouped by key, one call per group; the rest are advanced one by one.
    """
    results: list[list[tuple[int, bytes]] | None] = [None] * len(nodes)
    groups: dict[Any, list[int]] = {}
    for i, node in enumerate(nodes):
        key_fn = getattr(node, "batch_key", None)
        if key_fn is None:
            results[i] = node.advance(until_us)
        else:
            groups.setdefault(key_fn(), []).append(i)
    for idx in groups.values():
        members = [nodes[i] for i in idx]
        out = type(members[0]).advance_batch(members, until_us)
        for i, tx in zip(idx, out, strict=True):
            results[i] = tx
    return [r if r is not None else [] for r in results]
