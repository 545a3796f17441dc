"""Prometheus exposition of the daemon state.

A custom collector reads the daemon at scrape time instead of mirroring every
value into client-library gauges: the daemon already keeps the latest value of
every register, so copying them would only add a second source of truth that can
drift (stale series for devices that went away, units changed by a map edit).

Naming follows the Prometheus conventions (and passes ``promtool check metrics``):

* telemetry: one family per *base unit*, ``rack_register_<unit>`` — values are
  converted to the base unit (mV -> volts, kPa -> pascals, % -> ratio, Wh ->
  joules, L/min -> cubic metres per second). Labels: ``device``, ``board``,
  ``register``. Rotational speed keeps ``_rpm``: Prometheus has no base unit for it.
  Unitless numbers go to ``rack_register_value``; strings, enums and flag sets
  are not numbers and are exported through ``rack_device_info`` / alarms instead.
* bus counters: ``rack_bus_{requests,crc_errors,timeouts,exceptions}_total``
  per device;
* ``rack_alarm_active`` (0/1) per alarm, ``rack_device_up`` (0/1);
* ``rack_poll_duration_seconds`` histogram per bus: one scheduler step — a block
  read (with retries and the t3.5 wait), decode, store and alarm evaluation;
  ``rack_scheduler_requests_total`` per bus.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from rackctl import daemon_view as view

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# unit as written in the register maps -> (metric suffix, factor to the base unit)
UNIT_FAMILIES: dict[str, tuple[str, float]] = {
    "v": ("volts", 1.0),
    "mv": ("volts", 1e-3),
    "kv": ("volts", 1e3),
    "a": ("amperes", 1.0),
    "ma": ("amperes", 1e-3),
    "w": ("watts", 1.0),
    "kw": ("watts", 1e3),
    "va": ("volt_amperes", 1.0),
    "wh": ("joules", 3600.0),
    "kwh": ("joules", 3.6e6),
    "j": ("joules", 1.0),
    "°c": ("celsius", 1.0),
    "degc": ("celsius", 1.0),
    "c": ("celsius", 1.0),
    "celsius": ("celsius", 1.0),
    "rpm": ("rpm", 1.0),
    "%": ("ratio", 0.01),
    "percent": ("ratio", 0.01),
    "ratio": ("ratio", 1.0),
    "hz": ("hertz", 1.0),
    "s": ("seconds", 1.0),
    "ms": ("seconds", 1e-3),
    "min": ("seconds", 60.0),
    "h": ("seconds", 3600.0),
    "pa": ("pascals", 1.0),
    "kpa": ("pascals", 1e3),
    "bar": ("pascals", 1e5),
    "mbar": ("pascals", 1e2),
    "l/min": ("cubic_meters_per_second", 1e-3 / 60.0),
    "lpm": ("cubic_meters_per_second", 1e-3 / 60.0),
    "m3/h": ("cubic_meters_per_second", 1.0 / 3600.0),
    "ah": ("coulombs", 3600.0),
    "b": ("bytes", 1.0),
    "kib": ("bytes", 1024.0),
}

_SANITIZE = re.compile(r"[^a-z0-9_]+")

# blocks that are bookkeeping, not measurements: identity goes to rack_device_info, the
# event-log window and the firmware-update mailbox would only make meaningless series
SKIP_BLOCK_PREFIXES = ("identity", "event", "update", "control")

COUNTER_FIELDS: tuple[tuple[str, str], ...] = (
    ("requests", "Modbus requests sent to the device"),
    ("retries", "extra attempts after a timeout or CRC error"),
    ("crc_errors", "responses from the device rejected for a bad CRC"),
    ("timeouts", "requests the device did not answer in time"),
    ("exceptions", "Modbus exception responses from the device"),
)


def unit_family(unit: str | None) -> tuple[str, float]:
    """Return ``(suffix, factor)`` for a register unit; unknown units are sanitised, factor 1."""
    if not unit:
        return "value", 1.0
    key = unit.strip().lower()
    if key in UNIT_FAMILIES:
        return UNIT_FAMILIES[key]
    suffix = _SANITIZE.sub("_", key).strip("_")
    return (suffix or "value"), 1.0


def _numeric(value: Any) -> float | None:
    """The value as a float when it is a number (bools count), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        f = float(value)
        return None if math.isnan(f) else f
    return None


def _version(v: Any) -> str:
    """fw_version words are major << 8 | minor."""
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v >> 8}.{v & 0xFF}"
    return str(v)


class DaemonCollector(Collector):
    """Collects every metric family from a daemon at scrape time."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    def collect(self) -> Iterator[Any]:
        devices = view.devices(self.daemon)
        boards = {d.id: d.board for d in devices}
        skip = {
            d.id: {r.name for r in d.registers if str(getattr(r, "block", "")).startswith(SKIP_BLOCK_PREFIXES)}
            for d in devices
        }
        yield from self._telemetry(boards, skip)
        yield from self._device_state(devices)
        yield from self._counters(boards)
        yield from self._alarms(boards)
        yield from self._schedulers()

    def _schedulers(self) -> Iterable[CounterMetricFamily]:
        scheds = getattr(self.daemon, "schedulers", None) or {}
        fam = CounterMetricFamily(
            "rack_scheduler_requests", "Requests issued by the bus poll loop", labels=["bus"]
        )
        for bus, sched in sorted(scheds.items()):
            fam.add_metric([str(bus)], float(getattr(sched, "cycles", 0)))
        return [fam]

    def _telemetry(
        self, boards: dict[int, str], skip: dict[int, set[str]]
    ) -> Iterable[GaugeMetricFamily]:
        families: dict[str, GaugeMetricFamily] = {}
        for dev_id, regs in sorted(view.latest(self.daemon).items()):
            board = boards.get(dev_id, "unknown")
            hidden = skip.get(dev_id, set())
            for reg, sample in sorted(regs.items()):
                if reg in hidden:
                    continue
                number = _numeric(sample.value)
                if number is None:
                    continue
                suffix, factor = unit_family(sample.unit)
                fam = families.get(suffix)
                if fam is None:
                    fam = GaugeMetricFamily(
                        f"rack_register_{suffix}",
                        f"Latest polled register value, in {suffix.replace('_', ' ')}",
                        labels=["device", "board", "register"],
                    )
                    families[suffix] = fam
                fam.add_metric([str(dev_id), board, reg], number * factor)
        return [families[k] for k in sorted(families)]

    def _device_state(self, devices: list[view.DeviceView]) -> Iterable[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "rack_device_up", "1 when the device answered its last poll", labels=["device", "board"]
        )
        info = GaugeMetricFamily(
            "rack_device_info",
            "Identity of each device (value is always 1)",
            labels=["device", "board", "name", "model", "serial", "fw_version"],
        )
        seen = GaugeMetricFamily(
            "rack_device_last_seen_timestamp_seconds",
            "Unix time of the last good answer from the device",
            labels=["device", "board"],
        )
        for d in devices:
            up.add_metric([str(d.id), d.board], 1.0 if d.online else 0.0)
            if d.last_seen is not None:
                seen.add_metric([str(d.id), d.board], float(d.last_seen))
            ident = d.identity
            info.add_metric(
                [
                    str(d.id),
                    d.board,
                    d.name,
                    str(ident.get("model", "")),
                    str(ident.get("serial", "")),
                    _version(ident.get("fw_version", "")),
                ],
                1.0,
            )
        return [up, info, seen]

    def _counters(self, boards: dict[int, str]) -> Iterable[CounterMetricFamily]:
        counts = view.counters(self.daemon)
        out = []
        for field, doc in COUNTER_FIELDS:
            fam = CounterMetricFamily(
                f"rack_bus_{field}", f"Number of {doc}", labels=["device", "board"]
            )
            for dev_id in sorted(counts):
                fam.add_metric(
                    [str(dev_id), boards.get(dev_id, "unknown")],
                    float(counts[dev_id].get(field, 0)),
                )
            out.append(fam)
        return out

    def _alarms(self, boards: dict[int, str]) -> Iterable[GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "rack_alarm_active",
            "1 while the alarm is raised (latched alarms stay 1 until cleared)",
            labels=["device", "board", "alarm", "severity"],
        )
        # the alarm history keeps old instances of the same alarm: one series each,
        # raised when any instance is
        state: dict[tuple[int, str, str], bool] = {}
        for a in view.alarms(self.daemon):
            key = (a.device, a.key, a.severity)
            state[key] = state.get(key, False) or a.active
        for (dev, name, severity), is_active in sorted(state.items()):
            active.add_metric(
                [str(dev), boards.get(dev, "unknown"), name, severity],
                1.0 if is_active else 0.0,
            )
        return [active]


class RackMetrics:
    """The registry served on /metrics: the daemon collector plus poll timings."""

    def __init__(self, daemon: Any) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DaemonCollector(daemon))
        self.poll_duration = Histogram(
            "rack_poll_duration_seconds",
            "Time the bus scheduler took for one poll: request (with retries), decode, "
            "store and alarms",
            labelnames=["bus"],
            buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )

    def observe_poll(self, seconds: float, bus: str = "bus0") -> None:
        """Record one scheduler poll (``instrument`` does this for a real daemon)."""
        self.poll_duration.labels(bus=bus).observe(seconds)

    def instrument(self, daemon: Any) -> None:
        """Time every scheduler step that issued a request.

        Wraps each ``BusScheduler.step`` on the instance (the scheduler looks the
        method up on itself every loop), so it works before or after ``start()``
        and needs no change in the scheduler. Idempotent.
        """
        for bus, sched in (getattr(daemon, "schedulers", None) or {}).items():
            if getattr(sched, "_rack_metrics_timed", False):
                continue
            step = sched.step

            async def timed(step: Any = step, sched: Any = sched, bus: str = str(bus)) -> float:
                before = sched.cycles
                t0 = time.perf_counter()
                delay = await step()
                if sched.cycles != before:
                    self.observe_poll(time.perf_counter() - t0, bus)
                return delay

            sched.step = timed
            sched._rack_metrics_timed = True
            self.poll_duration.labels(bus=str(bus))  # the series exists from the start

    def render(self) -> bytes:
        """The text exposition format (version 0.0.4)."""
        return generate_latest(self.registry)
