"""Virtual-time speed-up of the software rack: simulated seconds per wall-clock second.

The rack runs in lockstep virtual time; how much faster than real time it runs decides
how long the HIL scenarios take and whether the pty mode can keep up.  Measured for the
default 4-board rack and for a 32-board rack (power shelves and CDUs alternating, ids
1..32), each with the firmware in the MicroPython WebAssembly VM (one Node process,
one worker per board) and under CPython, in two regimes:

* **idle** — nobody polls: the bus takes one stride per plant step (100 ms);
* **polled** — the scenario master reads one telemetry block from every board once
  per simulated second (the daemon's default interval), so the wire is busy and the
  bus steps in t3.5 quanta around every transaction.

Boot time (building the rack, one VM per board) is reported separately and is not
part of the speed-up.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from rackhil import rackspec
from rackhil.rack import Rack

WARMUP_S = 2.0
IDLE_S = 20.0
POLLED_S = 10.0


def _spec(boards: int, runtime: str) -> rackspec.RackSpec:
    base = rackspec.default(runtime)
    if boards == len(base.boards):
        return base
    specs = []
    for unit in range(1, boards + 1):
        kind = "power_shelf" if unit % 2 else "cdu"
        specs.append(rackspec.BoardSpec(unit, kind, f"{kind}-{unit}", runtime))
    return dataclasses.replace(base, boards=tuple(specs), name=f"{boards} boards")


def _poll_all(rack: Rack) -> None:
    for unit in rack.units.values():
        rack.master.read_block(unit.id, "shelf" if unit.spec.type == "power_shelf" else "loop")


def measure(boards: int, runtime: str) -> dict[str, float]:
    t0 = time.perf_counter()
    rack = Rack(_spec(boards, runtime))
    try:
        boot = time.perf_counter() - t0
        rack.run(WARMUP_S)
        t0 = time.perf_counter()
        rack.run(IDLE_S)
        idle = IDLE_S / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        rack.every(1.0, POLLED_S, lambda _t: _poll_all(rack))
        polled = POLLED_S / (time.perf_counter() - t0)
        failed = rack.master.counters.failed
    finally:
        rack.close()
    return {"boot": boot, "idle": idle, "polled": polled, "failed": failed}


def run() -> dict[str, Any]:
    rows: list[tuple[str, Any, str]] = []
    notes = []
    for runtime in ("vm", "cpython"):
        for boards in (4, 32):
            m = measure(boards, runtime)
            rows.append((f"{boards} boards, {runtime}: speed-up idle", round(m["idle"], 1), "sim s / wall s"))
            rows.append((f"{boards} boards, {runtime}: speed-up polled 1/s", round(m["polled"], 1), "sim s / wall s"))
            rows.append((f"{boards} boards, {runtime}: boot", round(m["boot"], 2), "s"))
            if m["failed"]:
                notes.append(f"{boards} boards on {runtime}: {m['failed']} polls failed (should be 0).")
    return {
        "title": "Software rack: virtual-time speed-up",
        "rows": rows,
        "notes": __doc__.split("\n\n", 1)[1].strip() + ("\n\n" + "\n".join(notes) if notes else ""),
    }


if __name__ == "__main__":
    for label, value, unit in run()["rows"]:
        print(f"{label}: {value} {unit}")
