"""What every plant model shares: seeded noise, sub-stepping, sensor-fault hooks."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from typing import Protocol


class SensorFault(Protocol):
    """Turns the true reading of one channel into what the ADC reports."""

    def apply(self, value: int, t_s: float, rng: random.Random) -> int: ...


class Plant:
    """Base class: subclasses implement ``_integrate(dt_s, outputs)`` and ``_readings()``."""

    OUTPUT_DEFAULTS: Mapping[int, int] = {}
    #: Largest integration step: ``step(dt)`` with a larger dt is split so the
    #: integration stays accurate (each plant sets it from its fastest dynamics).
    MAX_SUBSTEP_S = 0.1

    def __init__(self, *, seed: int = 0, noise: float = 1.0) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.noise = noise  # multiplier on each channel's noise (0 = exact readings)
        self.t_s = 0.0
        self.outputs: dict[int, int] = dict(self.OUTPUT_DEFAULTS)
        self.sensor_faults: dict[int, SensorFault] = {}

    def step(self, dt_s: float, outputs: Mapping[int, int] | None = None) -> None:
        """Advance the physics by ``dt_s`` holding ``outputs`` (missing channels keep
        their previous value; before the firmware writes one, its factory default)."""
        if dt_s < 0:
            raise ValueError("dt_s must be >= 0")
        if outputs:
            self.outputs.update(outputs)
        n = max(1, math.ceil(dt_s / self.MAX_SUBSTEP_S - 1e-9))
        h = dt_s / n
        for _ in range(n):
            self._integrate(h, self.outputs)
            self.t_s += h

    def true_sensors(self) -> dict[int, int]:
        """The readings with neither noise nor injected sensor faults."""
        return {ch: round(v) for ch, (v, _) in self._readings().items()}

    def sensors(self) -> dict[int, int]:
        """What the board's sensors HAL reads: true value + noise, then sensor faults."""
        out = {}
        for ch, (value, sigma) in self._readings().items():
            if sigma and self.noise:
                reading = value + self.rng.gauss(0.0, sigma * self.noise)
                # a transmitter of a non-negative quantity (flow, rpm, level) bottoms out
                # at zero; without this, noise around 0 wraps in the board's u16 registers
                value = max(reading, 0.0) if value >= 0 else reading
            out[ch] = round(value)
        for ch, fault in self.sensor_faults.items():
            if ch in out:
                out[ch] = fault.apply(out[ch], self.t_s, self.rng)
        return out

    def inject_sensor_fault(self, ch: int, fault: SensorFault) -> None:
        self.sensor_faults[ch] = fault

    def clear_sensor_fault(self, ch: int | None = None) -> None:
        if ch is None:
            self.sensor_faults.clear()
        else:
            self.sensor_faults.pop(ch, None)

    # ---- subclass hooks ------------------------------------------------------
    def _integrate(self, dt_s: float, outputs: Mapping[int, int]) -> None:
        raise NotImplementedError

    def _readings(self) -> dict[int, tuple[float, float]]:
        """``{channel: (value in the channel's scaled units, noise sigma in the same units)}``."""
        raise NotImplementedError


def first_order(value: float, target: float, tau_s: float, dt_s: float) -> float:
    """One exact step of ``tau * dx/dt = target - x`` (stable for any dt)."""
    if tau_s <= 0:
        return target
    return target + (value - target) * math.exp(-dt_s / tau_s)


def clamp(value: float, lo: float, hi: float) -> float:
    return lo if value < lo else hi if value > hi else value


def noisy(value: float, sigma: float) -> tuple[float, float]:
    """A reading with noise ``sigma``, except an exact zero: an idle channel reads a clean 0."""
    return (value, sigma if value else 0.0)
