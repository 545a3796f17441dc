"""Real-time runner behind ``rackctl sim``: the software rack on a pty until told to stop.

:func:`serve` builds the rack, exposes its bus on a pty (symlinked at the requested
path), paces it to the wall clock on a background thread and waits.  SIGINT or
SIGTERM (or ``stop``) ends it cleanly: the runner thread stops, the pty and its link
are removed, every VM process is ended (no orphan ``node`` left behind), an optional
capture is written, and the exit status is 0.

Real time must keep up, so the runner watches how far virtual time trails the wall
clock and logs a warning when the rack falls behind (a slow machine, too many VM
boards): a host polling it would then start to see timeouts.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from .rack import Rack
from .rackspec import RackSpec

log = logging.getLogger(__name__)

LAG_WARN_S = 0.25  # behind the wall clock by more than this: hosts may time out


@dataclass(frozen=True)
class SimInfo:
    """What a caller shows the operator once the rack is up."""

    port: str  # the path to open (the symlink)
    device: str  # the pty slave it points at
    spec: RackSpec

    @property
    def wire(self) -> str:
        return self.spec.line.name

    @property
    def host_settings(self) -> str:
        """How a program opens the pty: 8N1 at the wire's baud (a pty has no parity)."""
        return f"{self.spec.line.baud} 8N1"


class SimStop:
    """A stop flag that signal handlers and other threads may set."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str = "stop requested") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)


def serve(
    spec: RackSpec,
    pty_path: str | Path,
    *,
    capture: str | Path | None = None,
    stop: SimStop | None = None,
    on_ready: Callable[[SimInfo], None] | None = None,
    handle_signals: bool = True,
    rack_factory: Callable[[RackSpec], Rack] | None = None,
) -> int:
    """Run the rack in real time on ``pty_path`` until stopped; returns the exit status.

    ``handle_signals`` installs SIGINT/SIGTERM handlers (main thread only) that stop
    the rack; the previous handlers are restored on the way out.
    """
    stop = stop or SimStop()
    previous: dict[signal.Signals, Any] = {}
    if handle_signals and threading.current_thread() is threading.main_thread():

        def _on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set(signal.Signals(signum).name)

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, _on_signal)
    rack: Rack | None = None
    try:
        rack = rack_factory(spec) if rack_factory else Rack(spec, realtime=True)
        port = rack.start_realtime(pty_path, capture=capture is not None)
        info = SimInfo(port=port, device=rack.pty.path, spec=spec)
        log.info("rack %r on %s (%s on the wire)", spec.name, port, info.wire)
        if on_ready is not None:
            on_ready(info)
        _wait(rack, stop)
        log.info("stopping: %s", stop.reason)
        return 0
    finally:
        if rack is not None:
            rack.close()
            if capture is not None and rack.capture is not None:
                rack.capture.write_pcap(capture)
                log.info("capture written to %s", capture)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _wait(rack: Rack, stop: SimStop) -> None:
    behind = False
    while not stop.wait(0.2):
        runner = rack.runner
        if runner.error is not None:
            raise RuntimeError(f"the rack stopped: {runner.error}") from runner.error
        lag = runner.lag_s
        if lag > LAG_WARN_S and not behind:
            log.warning("the rack runs %.2f s behind real time: hosts may see timeouts", lag)
        behind = lag > LAG_WARN_S
