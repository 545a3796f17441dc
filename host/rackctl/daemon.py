"""The monitoring daemon: config -> one scheduler per bus -> latest values, history, alarms.

The REST API, the Prometheus collector and the CLI's live views read the daemon's
public attributes (documented on :class:`Daemon`, pinned in docs/contracts.md,
"Host daemon API") and never reach into schedulers or links themselves. Everything
runs on one asyncio loop; the store is synchronous SQLite and its calls are short.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rackctl.alarms import AlarmManager
from rackctl.config import Config, DeviceConfig
from rackctl.modbus_client import Counters, ModbusLink, RtuClient
from rackctl.scheduler import ONLINE, BusScheduler, DevicePoller, plan_reads, poll_intervals
from rackctl.store import Store
from rackproto import regmap as regmaps
from rackproto.errors import ConfigError, RackError

log = logging.getLogger(__name__)

UNLOCK_KEY = 0xC0DE  # firmware rackfw.unlock.KEY: write KEY, then KEY ^ 0xFFFF
IDENTITY_FIELDS = ("vendor", "model", "serial", "hw_rev", "fw_version", "board_type", "map_version")
NON_NUMERIC = ("string", "bytes")


class WriteRefused(RackError, PermissionError):
    """A write to a read-only register, or to a protected one without ``unlock``."""


@dataclass(eq=False)
class DeviceStatus:
    """Live view of one device. Read it; the daemon updates it in place."""

    poller: DevicePoller
    bus: str
    link: ModbusLink | None
    identity: dict[str, Any] = field(default_factory=dict)  # filled from the identity block

    @property
    def id(self) -> int:
        return self.poller.unit

    @property
    def name(self) -> str:
        return self.poller.name

    @property
    def map_name(self) -> str:
        return self.poller.map_name

    board = map_name

    @property
    def regmap(self) -> Any:
        return self.poller.regmap

    @property
    def state(self) -> str:
        """``"online"`` or ``"dormant"``."""
        return self.poller.state

    @property
    def online(self) -> bool:
        return self.poller.state == ONLINE

    @property
    def last_seen(self) -> float | None:
        return self.poller.last_seen

    @property
    def dropped(self) -> dict[str, str]:
        """Registers removed from the plan (exception 02) -> reason."""
        return self.poller.dropped

    @property
    def counters(self) -> Counters:
        return self.link.counters(self.id) if self.link is not None else Counters()


ValuesListener = Callable[[DeviceStatus, list[Any], float], None]
StateListener = Callable[[DeviceStatus, str, float], None]


class Daemon:
    """Polls every configured device and keeps state for the interfaces.

    Public, stable attributes (see docs/contracts.md, "Host daemon API"):

    ``config``
        the validated :class:`rackctl.config.Config`.
    ``devices: dict[int, DeviceStatus]``
        keyed by Modbus id (ids are unique daemon-wide); each has ``id``, ``name``,
        ``bus``, ``map_name`` (alias ``board``), ``regmap``, ``state``
        (``"online"``/``"dormant"``), ``online``, ``last_seen`` (epoch s), ``dropped``
        (register -> reason), ``identity`` (vendor, model, serial, fw_version...),
        ``counters`` (:class:`rackctl.modbus_client.Counters`: requests, ok, retries,
        crc_errors, timeouts, exceptions, mismatched, exception_codes, stale_bytes,
        last_ok).
    ``latest: dict[int, dict[str, tuple[value, unit, ts]]]``
        newest decoded value of every polled register (value scaled; flags16 as a
        list of set bit names, enum as its name, strings as str).
    ``store: rackctl.store.Store``
        history: ``history(device_id_or_name, register, start, end, resolution)``.
    ``alarms: rackctl.alarms.AlarmManager``
        ``list()`` open alarms, ``history()``, ``ack(id)``, ``listeners``.
    ``value_listeners`` / ``state_listeners``
        callables ``(DeviceStatus, values, ts)`` / ``(DeviceStatus, state, ts)``
        called on every poll result / online-dormant transition (must not block).

    Methods: ``counters() -> dict[int, Counters]``, ``device(id_or_name)``,
    ``await read_register(id, name) -> Value``,
    ``await write_register(id, name, value, unlock=False) -> value read back``,
    ``await start()``, ``await run()`` (start, then until ``stop()``), ``await stop()``.
    """

    def __init__(
        self,
        config: Config,
        *,
        links: Mapping[str, ModbusLink] | None = None,
        store: Store | None = None,
        maps: Mapping[str, Any] | None = None,
        flush_interval: float = 1.0,
    ):
        self.config = config
        sc = config.store
        self.store = store or Store(
            sc.path, raw_retention=sc.raw_retention,
            downsample_retention=sc.downsample_retention, heartbeat=sc.heartbeat,
        )
        self.alarms = AlarmManager(self.store, config.alarms)
        self.latest: dict[int, dict[str, tuple[Any, str, float]]] = {}
        self.devices: dict[int, DeviceStatus] = {}
        self.links: dict[str, ModbusLink] = dict(links or {})
        self.schedulers: dict[str, BusScheduler] = {}
        self.value_listeners: list[ValuesListener] = []
        self.state_listeners: list[StateListener] = []
        self.flush_interval = flush_interval
        self._maps: dict[str, Any] = dict(maps or {})
        self._changes_only: dict[int, set[str]] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopped = asyncio.Event()
        self._owned_links: list[RtuClient] = []
        self._maintenance: asyncio.Future[Any] | None = None
        try:
            self._build()
        except Exception:
            if store is None:  # ours: do not leak the connection on a config error
                self.store.close()
            raise

    # -- construction ------------------------------------------------------------------
    def _map(self, name: str) -> Any:
        if name not in self._maps:
            self._maps[name] = regmaps.load(name)
        return self._maps[name]

    def _build(self) -> None:
        cfg = self.config
        for i, dev in enumerate(cfg.devices):
            self._add_device(i, dev)
        for i, rule in enumerate(cfg.alarms):
            devs = [d for d in self.devices.values() if rule.device in (None, d.name)]
            if not any(rule.register in d.regmap for d in devs):
                raise ConfigError(
                    f"alarms[{i}].register: no configured device has a register {rule.register!r}")
        for bus in cfg.buses:
            pollers = [d.poller for d in self.devices.values() if d.bus == bus.name]
            self.schedulers[bus.name] = BusScheduler(
                self.links.get(bus.name),  # type: ignore[arg-type]  # set in start()
                pollers, dormant_after=bus.dormant_after, reprobe=bus.reprobe,
                on_values=self._on_values, on_state=self._on_state, on_dropped=self._on_dropped,
            )

    def _add_device(self, i: int, dev: DeviceConfig) -> None:
        regmap = self._map(dev.map)
        try:
            intervals = poll_intervals(regmap, dev.poll)
        except KeyError as exc:
            raise ConfigError(
                f"devices[{i}].poll.{exc.args[0]}: map {dev.map!r} has no such register or block"
            ) from None
        bus = self.config.bus(dev.bus)
        poller = DevicePoller(dev.name, dev.id, dev.map, regmap,
                              plan_reads(regmap.registers, intervals, bus.max_gap, bus.max_bridge))
        mode, slow = self.config.store.changes_only, self.config.store.slow_poll
        self._changes_only[dev.id] = {
            name for name, every in intervals.items()
            if mode == "all" or (mode == "slow" and every >= slow)
        }
        self.devices[dev.id] = DeviceStatus(poller, dev.bus, self.links.get(dev.bus))
        self.store.device_id(dev.name, dev.id, dev.map)

    # -- queries -----------------------------------------------------------------------
    def device(self, key: int | str) -> DeviceStatus:
        """A device by Modbus id or name (KeyError when unknown)."""
        if isinstance(key, int) and key in self.devices:
            return self.devices[key]
        for dev in self.devices.values():
            if dev.name == key or str(dev.id) == str(key):
                return dev
        raise KeyError(f"no device {key!r}")

    def counters(self) -> dict[int, Counters]:
        return {dev_id: dev.counters for dev_id, dev in self.devices.items()}

    # -- hooks from the schedulers -----------------------------------------------------
    def _on_values(self, poller: DevicePoller, values: list[Any], ts: float) -> None:
        dev = self.devices[poller.unit]
        latest = self.latest.setdefault(poller.unit, {})
        slow = self._changes_only[poller.unit]
        rows: list[tuple[Any, ...]] = []
        for v in values:
            reg = v.register
            latest[reg.name] = (v.value, v.unit, ts)
            if reg.name in IDENTITY_FIELDS:
                dev.identity[reg.name] = v.value
            if reg.type in NON_NUMERIC:
                continue
            if reg.type in ("flags16", "enum", "bool"):
                rows.append((reg.name, v.raw, v.unit, reg.name in slow))
            else:
                rows.append((reg.name, v.value, v.unit, reg.name in slow, float(reg.scale)))
        self.store.add(poller.name, ts, rows)
        self.alarms.evaluate(poller.name, poller.unit, values, ts)
        for listener in list(self.value_listeners):
            listener(dev, values, ts)

    def _on_state(self, poller: DevicePoller, state: str, ts: float) -> None:
        self.alarms.device_state(poller.name, poller.unit, state, ts)
        for listener in list(self.state_listeners):
            listener(self.devices[poller.unit], state, ts)

    def _on_dropped(self, poller: DevicePoller, register: str, reason: str) -> None:
        """A register the device refuses: forget its value and tell the operator once."""
        self.latest.get(poller.unit, {}).pop(register, None)
        self.alarms.raise_alarm(
            poller.name, poller.unit, f"dropped.{register}", name=f"{register} not polled",
            kind="comm", severity="info", latched=True,
            message=f"{poller.name}: {register} answers {reason}; removed from the poll plan",
        )

    # -- reads and writes --------------------------------------------------------------
    def _link_for(self, dev: DeviceStatus) -> ModbusLink:
        link = self.links.get(dev.bus)
        if link is None:
            raise RackError(f"bus {dev.bus!r} is not started")
        return link

    async def read_register(self, device: int | str, name: str) -> Any:
        """Read one register now (through the bus scheduler's link); returns a Value."""
        dev = self.device(device)
        reg = dev.regmap.get(name)
        words = await self._link_for(dev).read(dev.id, reg.table, reg.address, reg.count)
        (value,) = dev.regmap.decode(reg.table, reg.address, words)
        self.latest.setdefault(dev.id, {})[name] = (value.value, value.unit, time.time())
        return value

    async def write_register(self, device: int | str, name: str, value: Any,
                             unlock: bool = False) -> Any:
        """Range-check, write and read back one register; returns the value read back.

        RangeError for a value outside the map's range (nothing is sent), WriteRefused
        for read-only registers or protected ones without ``unlock``; with ``unlock``
        the firmware's two-step unlock key is written first. Bus errors propagate
        (DeviceTimeout, CrcError/FrameError, ModbusException).
        """
        dev = self.device(device)
        reg = dev.regmap.get(name)
        if reg.table not in ("holding", "coil") or reg.access == "ro":
            raise WriteRefused(f"register {name!r} is read-only")
        if reg.access == "protected" and not unlock:
            raise WriteRefused(f"register {name!r} is protected: write it with unlock")
        link = self._link_for(dev)
        if reg.table == "coil":
            await link.write_coil(dev.id, reg.address, bool(value))
        else:
            words = dev.regmap.encode_value(reg, value)  # RangeError before any bus traffic
            if reg.access == "protected":
                key = dev.regmap.get("unlock_key").address
                await link.write_registers(dev.id, key, [UNLOCK_KEY])
                await link.write_registers(dev.id, key, [UNLOCK_KEY ^ 0xFFFF])
            await link.write_registers(dev.id, reg.address, words)
        log.info("wrote %s.%s = %r", dev.name, name, value)
        return (await self.read_register(dev.id, name)).value

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Open the buses and start polling; returns at once."""
        self._stopped.clear()
        for bus in self.config.buses:
            if bus.name not in self.links:
                client = RtuClient(bus.port, baud=bus.baud, parity=bus.parity,
                                   bytesize=bus.bytesize, stopbits=bus.stopbits,
                                   timeout=bus.timeout, retries=bus.retries)
                self.links[bus.name] = client
                self._owned_links.append(client)
                try:
                    await client.connect()
                except RackError as exc:  # keep going: its devices will go dormant
                    log.error("bus %s: %s", bus.name, exc)
            self.schedulers[bus.name].link = self.links[bus.name]
            for dev in self.devices.values():
                if dev.bus == bus.name:
                    dev.link = self.links[bus.name]
        for name, sched in self.schedulers.items():
            self._tasks.append(asyncio.create_task(sched.run(), name=f"bus:{name}"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="store"))
        log.info("daemon started: %d devices on %d buses", len(self.devices), len(self.schedulers))

    async def run(self) -> None:
        """Start, then serve until :meth:`stop` (or cancellation)."""
        await self.start()
        try:
            await self._stopped.wait()
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Stop polling, flush the last cycle, close the ports. Safe to call twice."""
        self._stopped.set()
        for sched in self.schedulers.values():
            sched.stop()
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._maintenance is not None:  # a worker thread cannot be cancelled: let it end
            with contextlib.suppress(Exception):
                await asyncio.shield(self._maintenance)
        self.store.flush()
        for client in self._owned_links:
            client.close()

    async def _housekeeping(self) -> None:
        """Commit each poll cycle's samples; compact/downsample/expire on a slower beat.

        Maintenance runs on a worker thread (it moves a minute of samples, ~0.3 M rows
        at 32 boards x 150 registers); meanwhile flushes that would wait are skipped
        and their rows go with the next cycle.
        """
        next_maintenance = time.monotonic() + self.config.store.maintenance
        while True:
            await asyncio.sleep(self.flush_interval)
            try:
                self.store.flush(wait=False)
                if time.monotonic() >= next_maintenance and self._maintenance is None:
                    next_maintenance = time.monotonic() + self.config.store.maintenance
                    self._maintenance = asyncio.ensure_future(asyncio.to_thread(self.store.maintain))
                    self._maintenance.add_done_callback(self._maintenance_done)
            except Exception:  # a full disk must not stop polling and alarms
                log.exception("store housekeeping failed")

    def _maintenance_done(self, fut: asyncio.Future[Any]) -> None:
        self._maintenance = None
        if not fut.cancelled() and fut.exception() is not None:
            log.error("store maintenance failed: %s", fut.exception())
