"""Alarms: typed, persistent raise/clear/ack events.

Three sources feed one table:

* **flag bits** — the fault/alarm/warning bits of the maps' ``flags16`` input
  registers (see :func:`flag_alarms`); each set bit is its own alarm, keyed
  ``<register>.<bit name>``. Faults are *critical and latched*; warnings clear by
  themselves;
* **threshold rules** from the config (``value op limit``, with hysteresis so a value
  hovering at the limit does not flap);
* **device health** — a device going dormant raises ``comm.dormant`` (critical);
  coming back clears it.

An alarm row is *active* from ``raised_at`` until ``cleared_at``. A latched alarm stays
*open* (listed, counted) after it clears until someone acknowledges it — the operator
must see that a fault happened even if it lasted one poll. Open alarms are reloaded
at start-up, so a restart neither forgets nor re-raises them.
"""

from __future__ import annotations

import builtins
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rackctl.config import AlarmRule
from rackctl.store import Store

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS alarm (
    id INTEGER PRIMARY KEY,
    device INTEGER,                 -- Modbus id of the device
    device_name TEXT NOT NULL,
    key TEXT NOT NULL,              -- stable identity: 'psu_fault.ov', 'rule:<name>', 'comm.dormant'
    name TEXT NOT NULL,
    kind TEXT NOT NULL,             -- 'flag' | 'threshold' | 'comm'
    severity TEXT NOT NULL,
    latched INTEGER NOT NULL,
    message TEXT NOT NULL,
    value REAL,
    raised_at REAL NOT NULL,
    cleared_at REAL,
    acked_at REAL
);
CREATE INDEX IF NOT EXISTS alarm_by_time ON alarm(raised_at);
"""

_WHOLE = re.compile(r"fault|alarm|leak")
_CRITICAL = re.compile(r"fault|fail|leak|trip|^ov$|^oc$|^ot$|overcurrent|overload")
_WARNING = re.compile(r"warn|alarm|low|high|degraded|battery|derat|limit|comms|no_tach|isolat")
_STATE = re.compile(r"^(present|on|running|lead|power_good)$|_ok$|_present$|_in_range$")
DORMANT_KEY = "comm.dormant"


@dataclass
class Alarm:
    """One alarm occurrence (a row of the ``alarm`` table)."""

    id: int
    device: int | None
    device_name: str
    key: str
    name: str
    kind: str
    severity: str
    latched: bool
    message: str
    value: float | None
    raised_at: float
    cleared_at: float | None = None
    acked_at: float | None = None

    @property
    def active(self) -> bool:
        """The condition is present now."""
        return self.cleared_at is None

    @property
    def acked(self) -> bool:
        return self.acked_at is not None

    @property
    def open(self) -> bool:
        """Still listed: active, or latched and not yet acknowledged."""
        return self.active or (self.latched and not self.acked)

    @property
    def state(self) -> str:
        if self.active:
            return "active"
        return "latched" if self.open else "cleared"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "device": self.device, "device_name": self.device_name,
            "key": self.key, "name": self.name, "kind": self.kind, "severity": self.severity,
            "latched": self.latched, "message": self.message, "value": self.value,
            "raised_at": self.raised_at, "cleared_at": self.cleared_at,
            "acked_at": self.acked_at, "active": self.active, "acked": self.acked,
            "state": self.state,
        }  # fmt: skip


_COLUMNS = ("id, device, device_name, key, name, kind, severity, latched, message, value, "
            "raised_at, cleared_at, acked_at")


def _row(row: tuple[Any, ...]) -> Alarm:
    a = Alarm(*row)
    a.latched = bool(a.latched)
    return a


def flag_alarms(reg: Any) -> dict[str, tuple[int, str, bool]]:
    """Which bits of a flags16 register are alarms: bit name -> (bit, severity, latched).

    The maps mix states and faults in one word (``psu_status``: present, on,
    power_good, ov, oc, ot, ...), so bits are classified by name: fault-like bits
    are critical and latched, warning-like bits are warnings, state bits (present,
    on, running, ``*_ok``) and the shelf's ``any_*`` summaries are not alarms. A
    register whose own name says it holds faults/alarms/leaks (``alarms``,
    ``sensor_faults``, ``leak_zones``) makes every bit an alarm. Only input-table
    registers count: holding flags are configuration masks.
    """
    if getattr(reg, "type", None) != "flags16" or getattr(reg, "table", "input") != "input":
        return {}
    whole = _WHOLE.search(reg.name)
    out: dict[str, tuple[int, str, bool]] = {}
    for bit_name, bit in (reg.bits or {}).items():
        if bit_name.startswith("any_") or _STATE.search(bit_name):
            continue
        if _CRITICAL.search(bit_name) or (whole and "leak" in reg.name):
            out[bit_name] = (bit, "critical", True)
        elif _WARNING.search(bit_name) or whole:
            out[bit_name] = (bit, "warning", False)
    return out


def _over(op: str, value: float, limit: float) -> bool:
    return {">": value > limit, ">=": value >= limit, "<": value < limit, "<=": value <= limit}[op]


def _back(rule: AlarmRule, value: float) -> bool:
    """Past the hysteresis band on the good side (with no hysteresis: simply not over)."""
    if rule.op in (">", ">="):
        return value <= rule.limit - rule.hysteresis and not _over(rule.op, value, rule.limit)
    return value >= rule.limit + rule.hysteresis and not _over(rule.op, value, rule.limit)


Listener = Callable[[Alarm, str], None]


class AlarmManager:
    """Raises, clears and acknowledges alarms; persists them in the store's database."""

    def __init__(
        self,
        store: Store,
        rules: Iterable[AlarmRule] = (),
        clock: Callable[[], float] = time.time,
    ):
        self.store = store
        self.rules = tuple(rules)
        self.clock = clock
        self.listeners: list[Listener] = []
        with store.lock:
            store.conn.executescript(SCHEMA)
            rows = store.conn.execute(
                f"SELECT {_COLUMNS} FROM alarm WHERE cleared_at IS NULL "
                "OR (latched AND acked_at IS NULL)"
            ).fetchall()
        self._open: dict[tuple[str, str], Alarm] = {}
        for row in rows:
            alarm = _row(row)
            self._open[(alarm.device_name, alarm.key)] = alarm

    # -- queries -----------------------------------------------------------------------
    def list(self) -> list[Alarm]:
        """Open alarms (active, or latched and unacknowledged), newest first."""
        return sorted(self._open.values(), key=lambda a: (-a.raised_at, -a.id))

    def active(self) -> builtins.list[Alarm]:
        return [a for a in self.list() if a.active]

    def get(self, alarm_id: int) -> Alarm:
        for alarm in self._open.values():
            if alarm.id == alarm_id:
                return alarm
        with self.store.lock:
            row = self.store.conn.execute(
                f"SELECT {_COLUMNS} FROM alarm WHERE id = ?", (alarm_id,)).fetchone()
        if row is None:
            raise KeyError(f"no alarm {alarm_id}")
        return _row(row)

    def history(self, since: float = 0.0, limit: int = 1000) -> builtins.list[Alarm]:
        """Every alarm raised since ``since`` (epoch s), newest first."""
        with self.store.lock:
            rows = self.store.conn.execute(
                f"SELECT {_COLUMNS} FROM alarm WHERE raised_at >= ? "
                "ORDER BY raised_at DESC, id DESC LIMIT ?",
                (since, limit),
            ).fetchall()
        return [_row(r) for r in rows]

    # -- transitions -------------------------------------------------------------------
    def raise_alarm(
        self, device_name: str, device: int | None, key: str, *, name: str, kind: str,
        severity: str, latched: bool, message: str, value: float | None = None,
        ts: float | None = None,
    ) -> Alarm | None:
        """Raise ``key`` on a device; None when it is already active (no duplicate rows)."""
        ts = self.clock() if ts is None else ts
        current = self._open.get((device_name, key))
        if current is not None and current.active:
            return None
        with self.store.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO alarm(device, device_name, key, name, kind, severity, latched, "
                "message, value, raised_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (device, device_name, key, name, kind, severity, int(latched), message, value, ts),
            )
        alarm = Alarm(int(cur.lastrowid or 0), device, device_name, key, name, kind, severity,
                      latched, message, value, ts)
        self._open[(device_name, key)] = alarm  # a re-raise replaces a cleared latched one
        log.warning("alarm raised: %s %s: %s", device_name, name, message)
        self._notify(alarm, "raised")
        return alarm

    def clear(self, device_name: str, key: str, ts: float | None = None) -> Alarm | None:
        """Clear an active alarm; a latched one stays open until acknowledged."""
        alarm = self._open.get((device_name, key))
        if alarm is None or not alarm.active:
            return None
        alarm.cleared_at = self.clock() if ts is None else ts
        with self.store.transaction() as conn:
            conn.execute("UPDATE alarm SET cleared_at = ? WHERE id = ?", (alarm.cleared_at, alarm.id))
        if not alarm.open:
            del self._open[(device_name, key)]
        log.info("alarm cleared: %s %s", device_name, alarm.name)
        self._notify(alarm, "cleared")
        return alarm

    def ack(self, alarm_id: int, ts: float | None = None) -> Alarm:
        """Acknowledge an alarm (KeyError when unknown); idempotent."""
        alarm = self.get(alarm_id)
        if alarm.acked_at is None:
            alarm.acked_at = self.clock() if ts is None else ts
            with self.store.transaction() as conn:
                conn.execute("UPDATE alarm SET acked_at = ? WHERE id = ?", (alarm.acked_at, alarm.id))
            self._notify(alarm, "acked")
        if not alarm.open:
            self._open.pop((alarm.device_name, alarm.key), None)
        return alarm

    # -- sources -----------------------------------------------------------------------
    def evaluate(self, device_name: str, device: int | None, values: Iterable[Any],
                 ts: float | None = None) -> None:
        """Check one poll's decoded values (rackproto ``Value``) against flags and rules."""
        ts = self.clock() if ts is None else ts
        for v in values:
            reg = v.register
            bits = flag_alarms(reg)
            if bits:
                self._flags(device_name, device, reg, int(v.raw), bits, ts)
            for rule in self.rules:
                if rule.register == reg.name and rule.device in (None, device_name):
                    self._rule(device_name, device, rule, v.value, reg.unit, ts)

    def _flags(self, device_name: str, device: int | None, reg: Any, raw: int,
               bits: dict[str, tuple[int, str, bool]], ts: float) -> None:
        for bit_name, (bit, severity, latched) in bits.items():
            key = f"{reg.name}.{bit_name}"
            if raw >> bit & 1:
                self.raise_alarm(
                    device_name, device, key, name=key, kind="flag", severity=severity,
                    latched=latched, message=f"{reg.name}: {bit_name} set", value=float(raw), ts=ts,
                )
            else:
                self.clear(device_name, key, ts)

    def _rule(self, device_name: str, device: int | None, rule: AlarmRule, value: Any,
              unit: str, ts: float) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return
        key = f"rule:{rule.name}"
        if _over(rule.op, value, rule.limit):
            self.raise_alarm(
                device_name, device, key, name=rule.name, kind="threshold",
                severity=rule.severity, latched=rule.latched, value=float(value), ts=ts,
                message=f"{rule.register} = {value}{unit} {rule.op} {rule.limit}{unit}",
            )
        elif _back(rule, value):
            self.clear(device_name, key, ts)

    def device_state(self, device_name: str, device: int | None, state: str,
                     ts: float | None = None) -> None:
        """Dormant raises a communication alarm; online clears it."""
        if state == "dormant":
            self.raise_alarm(
                device_name, device, DORMANT_KEY, name="device dormant", kind="comm",
                severity="critical", latched=False, ts=ts,
                message=f"{device_name} (id {device}) stopped answering; re-probing",
            )
        else:
            self.clear(device_name, DORMANT_KEY, ts)

    def _notify(self, alarm: Alarm, event: str) -> None:
        for listener in list(self.listeners):
            try:
                listener(alarm, event)
            except Exception:  # a broken listener must not lose the alarm
                log.exception("alarm listener failed")
