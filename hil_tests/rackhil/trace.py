"""Signals over virtual time, and the PNG plot every scenario leaves behind.

A scenario's assertions say *whether* the rack behaved; the trace shows *how*: the
bus voltage dipping when a feed drops, the lag pump spinning up, the supply
temperature settling.  :class:`Trace` keeps ``(t_s, value)`` samples per named
signal (grouped into panels by the part of the name before the first ``.``, or by an
explicit ``panel``) plus labelled marks (fault injections), and renders them with
matplotlib's Agg backend (no display needed).

Probes (``trace.probe(name, fn)``) are sampled by the rack at each plant step, so the
plot shows the plant's ground truth even where the firmware's view (read by the
master and recorded with ``trace.record``) lags or is lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Signal:
    name: str
    panel: str
    unit: str = ""
    t: list[float] = field(default_factory=list)
    v: list[float] = field(default_factory=list)

    def add(self, t_s: float, value: float) -> None:
        self.t.append(t_s)
        self.v.append(value)

    def last(self) -> float:
        return self.v[-1] if self.v else math.nan

    def between(self, t0: float, t1: float = math.inf) -> list[float]:
        """Values sampled in ``[t0, t1)``."""
        return [v for t, v in zip(self.t, self.v, strict=True) if t0 <= t < t1]


class Trace:
    """Named signals over virtual time; ``plot(path)`` writes a PNG."""

    def __init__(self, title: str = "") -> None:
        self.title = title
        self.signals: dict[str, Signal] = {}
        self.marks: list[tuple[float, str]] = []
        self._probes: list[tuple[str, Callable[[], float]]] = []

    def signal(self, name: str, *, panel: str | None = None, unit: str = "") -> Signal:
        if name not in self.signals:
            self.signals[name] = Signal(name, panel or name.split(".", 1)[0], unit)
        return self.signals[name]

    def record(self, t_s: float, name: str, value: float | bool | None, *, panel: str | None = None, unit: str = "") -> None:
        """Add one sample (``None`` records a gap: a failed read)."""
        self.signal(name, panel=panel, unit=unit).add(t_s, math.nan if value is None else float(value))

    def probe(self, name: str, fn: Callable[[], float], *, panel: str | None = None, unit: str = "") -> None:
        """Sample ``fn()`` every time :meth:`sample` runs (the rack calls it per plant step)."""
        self.signal(name, panel=panel, unit=unit)
        self._probes.append((name, fn))

    def sample(self, t_s: float) -> None:
        for name, fn in self._probes:
            self.signals[name].add(t_s, float(fn()))

    def mark(self, t_s: float, label: str) -> None:
        """A labelled vertical line (a fault injected, a command sent)."""
        self.marks.append((t_s, label))

    def __getitem__(self, name: str) -> Signal:
        return self.signals[name]

    def __contains__(self, name: str) -> bool:
        return name in self.signals

    # ---- output -----------------------------------------------------------------------
    def to_csv(self) -> str:
        """Long format ``signal,t_s,value`` (easy to load in anything)."""
        lines = ["signal,t_s,value"]
        for s in self.signals.values():
            lines.extend(f"{s.name},{t:.3f},{v:.6g}" for t, v in zip(s.t, s.v, strict=True))
        return "\n".join(lines) + "\n"

    def plot(self, path: str | Path) -> Path:
        """Render every panel (shared time axis) with the marks; returns the PNG path."""
        import matplotlib

        matplotlib.use("Agg", force=True)
        from matplotlib.figure import Figure

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        panels: dict[str, list[Signal]] = {}
        for s in self.signals.values():
            if s.t:
                panels.setdefault(s.panel, []).append(s)
        n = max(1, len(panels))
        fig = Figure(figsize=(10, 1.0 + 1.9 * n), layout="constrained")
        axes = fig.subplots(n, 1, sharex=True, squeeze=False)[:, 0]
        for ax, (panel, sigs) in zip(axes, panels.items(), strict=False):
            for s in sigs:
                label = s.name if not s.unit else f"{s.name} [{s.unit}]"
                ax.plot(s.t, s.v, label=label, linewidth=1.0, drawstyle="steps-post")
            ax.set_ylabel(panel)
            ax.grid(True, alpha=0.3)
            ax.legend(loc="best", fontsize="x-small")
            for t, _ in self.marks:
                ax.axvline(t, color="red", linestyle="--", linewidth=0.8, alpha=0.7)
        if not panels:
            axes[0].text(0.5, 0.5, "no samples", ha="center", va="center", transform=axes[0].transAxes)
        top = axes[0]
        for t, label in self.marks:
            top.annotate(label, (t, 1.0), xycoords=("data", "axes fraction"), fontsize="x-small",
                         rotation=30, ha="left", va="bottom", color="red")
        axes[-1].set_xlabel("virtual time [s]")
        if self.title:
            fig.suptitle(self.title)
        fig.savefig(path, dpi=80)
        return path
