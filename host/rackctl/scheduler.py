"""One poll scheduler per RS-485 bus: plans block reads from the maps and runs them.

Why it looks like this:

* **Plan from the map.** Every register with a poll interval (map default, or a
  per-device override by register or block name) is grouped by table and interval;
  address-contiguous registers are merged into one read of at most 125 registers
  (2000 bits), bridging gaps of up to ``max_gap`` unused addresses — one request
  costs a turnaround of milliseconds, a few extra words cost microseconds.
* **One request at a time.** The scheduler is a single coroutine and the link holds a
  lock, so requests never overlap on the bus; the most overdue block goes first, so a
  slow device cannot starve the others.
* **Failures are per device.** After ``dormant_after`` consecutive failed polls
  (timeout or CRC after the link's retries) a device goes *dormant*: its blocks stop
  and a single probe read is tried every ``reprobe`` seconds, so a dead board costs
  the bus one timeout per reprobe period instead of one per block per cycle.
* **Exception 02 prunes the plan.** A block answered with "illegal data address" is
  split in two and both halves re-read at once; a single register that still answers
  02 is dropped from the plan and reported — never retried forever.

Time is injected (``clock``: monotonic seconds, ``wall``: epoch seconds, ``sleep``) so
tests drive the scheduler in virtual time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rackctl.modbus_client import MAX_READ, ModbusLink
from rackproto.errors import CrcError, DeviceTimeout, FrameError, ModbusException

log = logging.getLogger(__name__)

ONLINE = "online"
DORMANT = "dormant"


@dataclass(eq=False)
class ReadBlock:
    """One planned read request: ``count`` words (or bits) from ``start`` every ``interval`` s."""

    table: str
    start: int
    count: int
    interval: float
    registers: tuple[Any, ...]  # rackproto Register objects covered by the read
    next_due: float = 0.0

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.registers]


def _block_for(table: str, interval: float, regs: Sequence[Any]) -> ReadBlock:
    start = regs[0].address
    end = max(r.address + r.count for r in regs)
    return ReadBlock(table, start, end - start, interval, tuple(regs))


def plan_reads(
    registers: Iterable[Any],
    intervals: Mapping[str, float],
    max_gap: int = 4,
    max_bridge: int = 24,
) -> list[ReadBlock]:
    """Merge the polled registers into block reads.

    ``registers`` is the whole map (it tells which addresses exist); ``intervals``
    maps register name -> poll interval in seconds, and registers not in it are not
    polled. A block holds the registers of one table and one interval, spans at most
    the Modbus read limit, and bridges a gap between two of them when the gap has at
    most ``max_gap`` unmapped addresses and at most ``max_bridge`` words in all
    (mapped registers polled at another rate are safe to read along; a few extra
    words cost less than another request's overhead and turnaround).
    """
    registers = list(registers)
    mapped: dict[str, set[int]] = {}
    for reg in registers:
        mapped.setdefault(reg.table, set()).update(range(reg.address, reg.address + reg.count))
    groups: dict[tuple[str, float], list[Any]] = {}
    for reg in registers:
        interval = intervals.get(reg.name)
        if interval:
            groups.setdefault((reg.table, interval), []).append(reg)
    blocks: list[ReadBlock] = []
    for (table, interval), regs in sorted(groups.items()):
        regs.sort(key=lambda r: r.address)
        limit = MAX_READ[table]
        run: list[Any] = []
        end = 0
        for reg in regs:
            if run:
                gap = reg.address - end
                unmapped = sum(1 for a in range(end, reg.address) if a not in mapped[table])
                too_far = gap > max(max_bridge, max_gap) or unmapped > max_gap
                if too_far or reg.address + reg.count - run[0].address > limit:
                    blocks.append(_block_for(table, interval, run))
                    run = []
            end = max(end, reg.address + reg.count) if run else reg.address + reg.count
            run.append(reg)
        if run:
            blocks.append(_block_for(table, interval, run))
    return blocks


def poll_intervals(regmap: Any, overrides: Mapping[str, float] | None = None) -> dict[str, float]:
    """Register name -> poll interval: the map's defaults, then overrides by block, then by name.

    An override of 0 or less removes the register (or the whole block) from the plan.
    Unknown override names raise KeyError so a config typo does not go unnoticed.
    """
    result: dict[str, float] = {}
    block_regs: dict[str, list[str]] = {}
    for reg in regmap.registers:
        block_regs.setdefault(reg.block, []).append(reg.name)
        poll = reg.poll
        if poll is None and reg.block:
            blk = next((b for b in getattr(regmap, "blocks", ()) if b.name == reg.block), None)
            poll = getattr(blk, "poll", None)
        if poll:
            result[reg.name] = float(poll)
    names = {r.name for r in regmap.registers}
    for key, interval in (overrides or {}).items():
        targets = block_regs.get(key) if key not in names else [key]
        if not targets:
            raise KeyError(key)
        for name in targets:
            if interval > 0:
                result[name] = float(interval)
            else:
                result.pop(name, None)
    return result


@dataclass(eq=False)
class DevicePoller:
    """The scheduler's view of one device: its plan, health and what it dropped."""

    name: str
    unit: int
    map_name: str
    regmap: Any
    blocks: list[ReadBlock]
    state: str = ONLINE
    failures: int = 0  # consecutive failed polls
    next_probe: float = 0.0
    last_seen: float | None = None  # wall-clock time of the last good answer
    dropped: dict[str, str] = field(default_factory=dict)  # register -> reason


ValuesHook = Callable[[DevicePoller, list[Any], float], Awaitable[None] | None]
StateHook = Callable[[DevicePoller, str, float], Awaitable[None] | None]
DroppedHook = Callable[[DevicePoller, str, str], Awaitable[None] | None]


async def _call(hook: Callable[..., Any] | None, *args: Any) -> None:
    if hook is None:
        return
    result = hook(*args)
    if asyncio.iscoroutine(result):
        await result


class BusScheduler:
    """Polls every device on one bus according to its plan (see module docstring)."""

    def __init__(
        self,
        link: ModbusLink,
        devices: Iterable[DevicePoller],
        *,
        dormant_after: int = 3,
        reprobe: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        on_values: ValuesHook | None = None,
        on_state: StateHook | None = None,
        on_dropped: DroppedHook | None = None,
    ):
        self.link = link
        self.devices = list(devices)
        self.dormant_after = dormant_after
        self.reprobe = reprobe
        self.clock = clock
        self.wall = wall
        self.sleep = sleep
        self.on_values = on_values
        self.on_state = on_state
        self.on_dropped = on_dropped
        self.cycles = 0  # requests issued by the poll loop
        self._stopping = False
        self._wake = asyncio.Event()

    # -- the loop ---------------------------------------------------------------------
    def next_due(self) -> float:
        """Monotonic time of the next scheduled request (inf when nothing is planned)."""
        times = [
            d.next_probe if d.state == DORMANT else min((b.next_due for b in d.blocks), default=float("inf"))
            for d in self.devices
        ]
        return min(times, default=float("inf"))

    async def step(self) -> float:
        """Do the single most overdue request, if any; return seconds until the next one."""
        now = self.clock()
        job = self._most_overdue(now)
        if job is not None:
            device, block = job
            self.cycles += 1
            if device.state == DORMANT:
                await self._probe(device, now)
            else:
                assert block is not None
                await self._poll(device, block, now)
        return max(0.0, self.next_due() - self.clock())

    async def run(self) -> None:
        """Poll until :meth:`stop`; hooks that raise are logged, never fatal to the bus."""
        self._stopping = False
        while not self._stopping:
            try:
                delay = await self.step()
            except Exception:  # a hook bug must not stop the polling of a whole bus
                log.exception("bus scheduler step failed")
                delay = 0.1
            if delay > 0 and not self._stopping:
                self._wake.clear()
                sleeper = asyncio.ensure_future(self.sleep(min(delay, 1.0)))
                waker = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
                sleeper.cancel()
                waker.cancel()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    # -- work -------------------------------------------------------------------------
    def _most_overdue(self, now: float) -> tuple[DevicePoller, ReadBlock | None] | None:
        best: tuple[float, DevicePoller, ReadBlock | None] | None = None
        for device in self.devices:
            if device.state == DORMANT:
                if device.next_probe <= now and (best is None or device.next_probe < best[0]):
                    best = (device.next_probe, device, None)
                continue
            for block in device.blocks:
                if block.next_due <= now and (best is None or block.next_due < best[0]):
                    best = (block.next_due, device, block)
        return None if best is None else (best[1], best[2])

    async def _poll(self, device: DevicePoller, block: ReadBlock, now: float) -> None:
        try:
            words = await self.link.read(device.unit, block.table, block.start, block.count)
        except (DeviceTimeout, CrcError, FrameError) as exc:
            block.next_due = self.clock() + block.interval
            await self._failed(device, exc)
            return
        except ModbusException as exc:
            device.failures = 0
            if exc.code == 2:
                await self._prune(device, block)
            else:
                log.warning("%s: %s reading %s", device.name, exc, block.names)
                block.next_due = self.clock() + block.interval
            return
        block.next_due += block.interval
        if block.next_due <= self.clock():  # fell behind: skip, don't burst
            block.next_due = self.clock() + block.interval
        device.failures = 0
        device.last_seen = ts = self.wall()
        values = device.regmap.decode(block.table, block.start, words)
        wanted = set(block.names)
        values = [v for v in values if v.register.name in wanted]
        await _call(self.on_values, device, values, ts)

    async def _failed(self, device: DevicePoller, exc: Exception) -> None:
        device.failures += 1
        log.debug("%s: poll failed (%d in a row): %s", device.name, device.failures, exc)
        if device.failures >= self.dormant_after:
            device.state = DORMANT
            device.next_probe = self.clock() + self.reprobe
            log.warning("%s (unit %d) dormant after %d failures: %s",
                        device.name, device.unit, device.failures, exc)
            await _call(self.on_state, device, DORMANT, self.wall())

    async def _probe(self, device: DevicePoller, now: float) -> None:
        """One small read; success brings the device back with its whole plan due now."""
        target = min(device.blocks, key=lambda b: (b.table != "input", b.start), default=None)
        table, start = (target.table, target.start) if target else ("input", 0)
        try:
            await self.link.read(device.unit, table, start, 1)
        except (DeviceTimeout, CrcError, FrameError):
            device.next_probe = self.clock() + self.reprobe
            return
        except ModbusException:
            pass  # it answered: alive, whatever it thinks of the address
        device.state = ONLINE
        device.failures = 0
        device.last_seen = self.wall()
        due = self.clock()
        for block in device.blocks:
            block.next_due = due
        log.info("%s (unit %d) is back", device.name, device.unit)
        await _call(self.on_state, device, ONLINE, device.last_seen)

    async def _prune(self, device: DevicePoller, block: ReadBlock) -> None:
        """Exception 02: split the block to find the bad registers, drop them when alone."""
        device.blocks.remove(block)
        regs = block.registers
        if len(regs) == 1:
            reg = regs[0]
            device.dropped[reg.name] = "exception 02 (illegal data address)"
            log.warning("%s: dropping %s (%s %d): illegal data address",
                        device.name, reg.name, block.table, reg.address)
            await _call(self.on_dropped, device, reg.name, device.dropped[reg.name])
            return
        half = len(regs) // 2
        due = self.clock()
        for part in (regs[:half], regs[half:]):
            sub = _block_for(block.table, block.interval, part)
            sub.next_due = due
            device.blocks.append(sub)


# ------------------------------------------------------------------------- discovery


@dataclass(frozen=True)
class ScanResult:
    """A device found by :func:`scan`: its id, board type, map name and identity fields."""

    unit: int
    board_type: str | None
    map_name: str | None
    identity: dict[str, Any]


async def scan(
    link: ModbusLink,
    ids: Iterable[int] = range(1, 248),
    *,
    identity_map: Any = None,
    known_maps: Sequence[str] = ("power_shelf", "cdu"),
) -> list[ScanResult]:
    """Probe ``ids`` on one bus and identify each board that answers.

    The identity block (input registers from 0 through ``board_type``) is read and
    decoded with the common map; a board that refuses it (exception 01/02) is asked
    for FC 2B/0E basic identification instead. Silent ids are skipped after the
    link's timeout and retries — give the link a short timeout for scanning.
    """
    if identity_map is None:
        from rackproto import regmap as _regmap

        identity_map = _regmap.load("common")
    ident = sorted(
        (r for r in identity_map.registers if r.table == "input"), key=lambda r: r.address
    )
    board_reg = next(r for r in ident if r.name == "board_type")
    span = board_reg.address + board_reg.count
    found: list[ScanResult] = []
    for unit in ids:
        try:
            words = await link.read(unit, "input", 0, span)
        except (DeviceTimeout, CrcError, FrameError):
            continue
        except ModbusException as exc:
            if exc.code not in (1, 2):
                found.append(ScanResult(unit, None, None, {"error": str(exc)}))
                continue
            found.append(await _scan_mei(link, unit, known_maps))
            continue
        fields = {v.register.name: v.value for v in identity_map.decode("input", 0, words)}
        board = fields.get("board_type")
        board_name = board if isinstance(board, str) else None
        map_name = board_name if board_name in known_maps else None
        found.append(ScanResult(unit, board_name, map_name, fields))
    return found


async def _scan_mei(link: ModbusLink, unit: int, known_maps: Sequence[str]) -> ScanResult:
    try:
        objects = await link.read_identification(unit)
    except (ModbusException, DeviceTimeout, FrameError) as exc:
        return ScanResult(unit, None, None, {"error": str(exc)})
    names = {0: "vendor", 1: "model", 2: "fw_version"}
    fields = {names.get(k, f"object_{k}"): v.decode("ascii", "replace") for k, v in objects.items()}
    model = fields.get("model", "")
    map_name = next((m for m in known_maps if m in model.lower()), None)
    return ScanResult(unit, map_name, map_name, fields)
