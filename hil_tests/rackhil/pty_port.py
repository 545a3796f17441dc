"""Expose the simulated bus on a pseudo-terminal any serial program can open.

``PtyPort`` is a passive bus attachment backed by the master side of a pty; the
slave side (``/dev/pts/N``, optionally symlinked at a friendly path such as
``/tmp/rack/ttyRACK``) is a serial port for pyserial, pymodbus, mbpoll, mpremote.
Bytes the program writes become a transmission on the wire (paced at the line's
byte time, queued if the program writes faster than the baud rate); bytes on the
wire are written to the program as they arrive in virtual time.

A program in wall-clock time needs the bus paced to the wall clock, so run the bus
with :class:`~rackhil.clock.RealTimePacer`; :class:`RealTimeRunner` does that on a
background thread.

Parity: the Linux pty driver rejects PARENB (``tcsetattr`` -> EINVAL; pyserial
``parity='E'`` on a pty raises), and baud/stop bits are ignored by a pty anyway.
Open the pty as **8N1 at any baud**; the simulated wire keeps its own settings
(default 115200 8E1) for timing, parity and fault injection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import tty
from pathlib import Path

from .bus import Bus
from .clock import RealTimePacer

log = logging.getLogger(__name__)

DEFAULT_LINK = Path("/tmp/rack/ttyRACK")
_READ_CHUNK = 4096
MAX_BACKLOG = 65536  # bytes kept for a program that does not read (beyond the pty's own buffer)


class PtyPort:
    """A host attachment whose other end is a pty slave (``path``)."""

    passive = True

    def __init__(self, bus: Bus, name: str = "pty", *, link: str | Path | None = None) -> None:
        self.name = name
        self.bus = bus
        self._master, self._slave = os.openpty()
        # Raw from the start: with the default line discipline the slave would echo
        # what we write back to us as if the program had sent it.
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        self.link: Path | None = None
        self._tx_end_us = 0
        self._out = bytearray()
        self.bytes_in = 0
        self.bytes_out = 0
        self.overruns = 0
        if link is not None:
            self.link = _symlink(Path(link), self.path)
        bus.attach(self, passive=True)
        log.info("bus exposed on %s%s", self.path, f" (link {self.link})" if self.link else "")

    @property
    def port(self) -> str:
        """The path a program should open (the link when there is one)."""
        return str(self.link or self.path)

    def fileno(self) -> int:
        """The pty master: readable once the program on the slave side has written."""
        return self._master

    # ---- node contract -------------------------------------------------------
    def deliver(self, data: bytes, t0_us: int, byte_us: int) -> None:
        self._out += data
        self._flush_out()
        excess = len(self._out) - MAX_BACKLOG
        if excess > 0:  # the program stopped reading: overrun, as a real UART would
            del self._out[:excess]
            self.overruns += excess

    def advance(self, until_us: int) -> list[tuple[int, bytes]]:
        self._flush_out()
        data = self._read_available()
        if not data:
            return []
        start = max(self.bus.now_us, self._tx_end_us)
        self._tx_end_us = start + self.bus.line.duration_us(len(data))
        self.bytes_in += len(data)
        return [(start, data)]

    def _read_available(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(self._master, _READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # EIO: no process holds the slave (cannot happen while we do)
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def _flush_out(self) -> None:
        while self._out:
            try:
                n = os.write(self._master, self._out)
            except BlockingIOError:
                return  # the program is not reading; keep the rest for later
            self.bytes_out += n
            del self._out[:n]

    def close(self) -> None:
        self.bus.detach(self)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.link is not None:
            with contextlib.suppress(FileNotFoundError):
                if self.link.is_symlink():
                    self.link.unlink()

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _symlink(link: Path, target: str) -> Path:
    """Point ``link`` at ``target``, replacing an old symlink but never a real file."""
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} exists and is not a symlink; not replacing it")
    link.symlink_to(target)
    return link


class RealTimeRunner:
    """Step a bus on a background thread, paced to the wall clock.

    ``speed`` > 1 runs faster than real time (for programs with generous timeouts).
    ``lag_s`` reports how far the simulation currently trails the wall clock.
    Only the runner thread may touch the bus and its nodes while it runs.
    """

    def __init__(self, bus: Bus, *, speed: float = 1.0) -> None:
        self.bus = bus
        self.speed = speed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self) -> RealTimeRunner:
        self.bus.set_pacer(RealTimePacer(self.speed))
        self._thread = threading.Thread(target=self._run, name="rackhil-bus", daemon=True)
        self._thread.start()
        return self

    @property
    def lag_s(self) -> float:
        return self.bus.lag_s

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self.bus.step()
        except BaseException as exc:  # surfaced to the owner through .error
            log.exception("bus runner stopped")
            self.error = exc

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> RealTimeRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
