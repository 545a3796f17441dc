"""N+1 redundancy of the PSU group and the "may this PSU be switched off" rule.

A PSU contributes capacity when it is present, switched on, free of latched faults
and has AC; its capacity is its output current limit (rated, or lower while it is
derating) times the bus voltage.  The shelf is N+1 redundant when the load still
fits after losing the single largest contributor.

Refusal rule used by the app's ``on_write`` (Modbus exception 04, "server device
failure" — the request is valid but the device cannot act on it now): switching a
PSU off is refused when the remaining contributors could not carry the present load
plus ``MARGIN_PCT``.  Switching off a PSU that contributes nothing (off, faulted, no
AC) is always allowed.  Loss of N+1 alone does not refuse the command: an operator
may knowingly run without redundancy.
"""

from micropython import const

MARGIN_PCT = const(10)


class Redundancy:
    def __init__(self, count):
        self.count = count
        self.cap_w = [0] * count   # capacity per slot this tick, W
        self.total_w = 0
        self.largest_w = 0
        self.load_w = 0
        self.healthy = 0

    def update(self, load_w):
        """Recompute totals after the app filled ``cap_w``; returns N+1 status."""
        total = 0
        largest = 0
        healthy = 0
        for c in self.cap_w:
            if c > 0:
                healthy += 1
                total += c
                if c > largest:
                    largest = c
        self.total_w = total
        self.largest_w = largest
        self.healthy = healthy
        self.load_w = load_w
        return self.n_plus_1()

    def n_plus_1(self):
        return self.healthy >= 2 and self.total_w - self.largest_w >= self.load_w

    def may_turn_off(self, slot):
        """Whether switching ``slot`` off leaves enough capacity for the load."""
        c = self.cap_w[slot]
        if c <= 0:
            return True
        need = self.load_w + self.load_w * MARGIN_PCT // 100
        return self.total_w - c >= need
