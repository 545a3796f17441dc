"""Find Modbus RTU frames in a byte stream by their length, not their timing.

The firmware delimits frames with the 3.5-character silence; a host reading a
USB RS-485 adapter or a pty cannot see that silence reliably, so it works out
each frame's length from its function code (and byte-count or object-list
fields) and checks the CRC. :class:`RtuFramer` does that for one direction:

* ``role="server"`` reads **requests** (what a server hears),
* ``role="client"`` reads **responses**, exception responses included.

API. ``feed(data)`` appends bytes and returns every complete, CRC-valid frame
now in the buffer, as :class:`Frame` objects, in stream order. Bytes that do
not start a valid frame are skipped **one at a time** (so a frame hidden behind
garbage or behind a corrupted frame is still found) and never before they have
been examined; the unfinished tail stays buffered for the next ``feed``. Errors
do not raise: each resynchronisation episode is reported once, as a
:class:`~rackproto.errors.CrcError` (a candidate frame with a bad CRC) or a
:class:`~rackproto.errors.FrameError` (a byte that cannot start a frame), to the
optional ``on_error`` callback and in :attr:`RtuFramer.stats`.

While *in sync* (the previous bytes formed a good frame) an incomplete candidate
waits for more bytes — a long response arriving in pieces must not be cut short
by a frame-like pattern inside its data. While *hunting* (at start-up and after an
error) the framer also looks past an incomplete candidate for a later complete
frame with a valid CRC. ``flush()`` tells the framer the line went idle (t3.5 or
a response timeout): everything buffered is then final, incomplete candidates
are skipped, and the buffer is emptied.

Length rules: requests are fixed-length per function code, or carry a byte count
(0F/10 at offset 6, 17 at offset 10); responses carry a byte count (01-04, 17) or
are fixed (05, 06, 0F, 10); a 2B/0E response is measured by walking its object
list; exception responses (any function code | 0x80) are 5 bytes. FC 08 is 8 bytes
in both directions except sub-function 00 (return query data), whose data field is
"any" length (MAP V1.1b3 6.8.1) and carries no count: its frame ends at the first
length >= 8 whose CRC checks (one running CRC pass; a corrupted one waits for more
bytes, up to 256, or for ``flush``; data that happens to contain a valid CRC of
its own prefix cuts the frame there -- only t3.5 timing could tell). Addresses 248..255 (reserved) and unknown
function codes cannot start a frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from rackproto import adu as adus
from rackproto import pdu as pdus
from rackproto.crc import TABLE, crc16
from rackproto.errors import CrcError, FrameError

log = logging.getLogger(__name__)

MAX_FRAME = 256
MAX_ADDRESS = 247

# Whole-frame lengths (address .. CRC) that depend only on the function code.
# Besides the codes rackproto decodes, 07/0B/0C/11/16 are framed so a server can
# still answer them with exception 01 (illegal function).
REQUEST_FIXED: dict[int, int] = {
    0x01: 8, 0x02: 8, 0x03: 8, 0x04: 8, 0x05: 8, 0x06: 8,
    0x07: 4, 0x0B: 4, 0x0C: 4, 0x11: 4, 0x16: 10,
}  # fmt: skip
# Requests with a byte count: offset of the byte-count field; length = offset + 1 + n + 2.
REQUEST_COUNTED: dict[int, int] = {0x0F: 6, 0x10: 6, 0x17: 10}
RESPONSE_FIXED: dict[int, int] = {0x05: 8, 0x06: 8, 0x0F: 8, 0x10: 8, 0x07: 5, 0x0B: 8, 0x16: 10}
DIAGNOSTICS_LENGTH = 8  # FC 08 with one data word
RESPONSE_COUNTED: dict[int, int] = {0x01: 2, 0x02: 2, 0x03: 2, 0x04: 2, 0x17: 2, 0x0C: 2, 0x11: 2}
EXCEPTION_LENGTH = 5
DEVICE_ID_REQUEST_LENGTH = 7
DEVICE_ID_HEADER = 8  # address fc mei read-code conformity more next count

NEED_MORE = 0
NOT_A_FRAME = -1

FramerRole = Literal["server", "client"]
LengthRule = Callable[[bytearray, int, int], int]


@dataclass(frozen=True)
class Frame:
    """A CRC-checked RTU frame as found in the stream (``raw`` includes the CRC)."""

    raw: bytes
    role: pdus.Role

    @property
    def address(self) -> int:
        return self.raw[0]

    @property
    def function(self) -> int:
        return self.raw[1]

    @property
    def pdu(self) -> bytes:
        """Function code and data, without address and CRC."""
        return self.raw[1:-2]

    def decode(self) -> adus.Adu:
        """Decode the PDU for this framer's role (FrameError/QuantityError if malformed)."""
        return adus.Adu(self.raw[0], pdus.decode(self.raw[1:-2], self.role))


@dataclass
class FramerStats:
    """Counters a bus monitor can export: good frames, errors by kind, skipped bytes."""

    frames: int = 0
    crc_errors: int = 0
    frame_errors: int = 0
    skipped_bytes: int = 0
    errors: list[FrameError] = field(default_factory=list, repr=False)
    keep_errors: int = 16  # the last few errors, for diagnostics


def _device_id_response_length(buf: bytearray, pos: int, avail: int) -> int:
    """Walk the object list of an FC 2B/0E response: id, length, value per object."""
    if avail < DEVICE_ID_HEADER:
        return NEED_MORE
    count = buf[pos + 7]
    size = DEVICE_ID_HEADER
    for _ in range(count):
        if avail < size + 2:
            return NEED_MORE
        size += 2 + buf[pos + size + 1]
        if size + 2 > MAX_FRAME:
            return NOT_A_FRAME
    return size + 2


def _diagnostics_length(buf: bytearray, pos: int, avail: int) -> int:
    """FC 08, request or echo: 8 bytes, or for sub-function 00 the first length >= 8
    at which the running CRC over the frame (CRC included) is zero."""
    if avail < 4:
        return NEED_MORE
    if buf[pos + 2] or buf[pos + 3]:
        return DIAGNOSTICS_LENGTH
    table = TABLE
    crc = 0xFFFF
    for k in range(min(avail, MAX_FRAME)):
        crc = (crc >> 8) ^ table[(crc ^ buf[pos + k]) & 0xFF]
        if crc == 0 and k >= DIAGNOSTICS_LENGTH - 1:
            return k + 1
    return NEED_MORE if avail < MAX_FRAME else NOT_A_FRAME


def request_length(buf: bytearray, pos: int, avail: int) -> int:
    """Length of the request starting at ``buf[pos]``: >0, NEED_MORE or NOT_A_FRAME."""
    fc = buf[pos + 1]
    if fc == pdus.DIAGNOSTICS:
        return _diagnostics_length(buf, pos, avail)
    n = REQUEST_FIXED.get(fc)
    if n is not None:
        return n
    at = REQUEST_COUNTED.get(fc)
    if at is not None:
        return at + 3 + buf[pos + at] if avail > at else NEED_MORE
    if fc == pdus.ENCAPSULATED_INTERFACE:
        if avail < 3:
            return NEED_MORE
        return DEVICE_ID_REQUEST_LENGTH if buf[pos + 2] == pdus.MEI_READ_DEVICE_ID else NOT_A_FRAME
    return NOT_A_FRAME


def response_length(buf: bytearray, pos: int, avail: int) -> int:
    """Length of the response starting at ``buf[pos]``: >0, NEED_MORE or NOT_A_FRAME."""
    fc = buf[pos + 1]
    if fc & 0x80:
        return EXCEPTION_LENGTH
    if fc == pdus.DIAGNOSTICS:
        return _diagnostics_length(buf, pos, avail)
    n = RESPONSE_FIXED.get(fc)
    if n is not None:
        return n
    at = RESPONSE_COUNTED.get(fc)
    if at is not None:
        return at + 3 + buf[pos + at] if avail > at else NEED_MORE
    if fc == pdus.ENCAPSULATED_INTERFACE:
        if avail < 3:
            return NEED_MORE
        if buf[pos + 2] != pdus.MEI_READ_DEVICE_ID:
            return NOT_A_FRAME
        return _device_id_response_length(buf, pos, avail)
    return NOT_A_FRAME


class RtuFramer:
    """Stream-to-frame splitter for one direction of an RTU bus (see module docstring)."""

    def __init__(
        self,
        role: FramerRole = "client",
        on_error: Callable[[FrameError], None] | None = None,
    ) -> None:
        self._length: LengthRule
        if role == "server":
            self._length = request_length
            self._role: pdus.Role = "request"
        elif role == "client":
            self._length = response_length
            self._role = "response"
        else:
            raise ValueError(f"role must be 'server' or 'client', not {role!r}")
        self.role = role
        self.on_error = on_error
        self.stats = FramerStats()
        self._buf = bytearray()
        self._synced = False
        self._hunting = False  # an error of this episode was already reported
        # Look-ahead memo: stream offsets (bytes consumed before the buffer + index)
        # already known not to start a frame, so hunting through a noise burst fed
        # byte by byte checks each position's CRC once, not once per feed.
        self._consumed = 0
        self._dead: set[int] = set()

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet part of a frame."""
        return len(self._buf)

    def reset(self) -> None:
        """Forget buffered bytes and sync state (e.g. after reopening the port)."""
        self._buf.clear()
        self._dead.clear()
        self._synced = False
        self._hunting = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame]:
        """Append ``data``; return the complete frames now found (maybe none)."""
        self._buf += data
        return self._scan(final=False)

    def flush(self) -> list[Frame]:
        """The line went idle: return the frames left in the buffer and empty it."""
        frames = self._scan(final=True)  # consumes the whole buffer
        self._synced = False
        return frames

    # -- internals ---------------------------------------------------------------
    def _candidate(self, pos: int, end: int) -> int:
        """Frame length at ``pos`` (bounded by MAX_FRAME), NEED_MORE or NOT_A_FRAME."""
        buf = self._buf
        avail = end - pos
        if avail < 2:
            return NEED_MORE
        if buf[pos] > MAX_ADDRESS:
            return NOT_A_FRAME
        n = self._length(buf, pos, avail)
        if n > MAX_FRAME:
            return NOT_A_FRAME
        if n > avail:
            return NEED_MORE
        return n

    def _valid_at(self, pos: int, end: int) -> bool:
        """True when a complete CRC-valid frame starts at ``pos`` (memoised misses)."""
        offset = self._consumed + pos
        if offset in self._dead:
            return False
        n = self._candidate(pos, end)
        if n == NEED_MORE:
            return False  # may still become a frame
        if n > 0 and crc16(memoryview(self._buf)[pos : pos + n]) == 0:
            return True
        self._dead.add(offset)
        return False

    def _scan(self, *, final: bool) -> list[Frame]:
        buf = self._buf
        end = len(buf)
        pos = 0
        frames: list[Frame] = []
        while pos < end:
            n = self._candidate(pos, end)
            if n == NEED_MORE:
                if final:
                    pos = self._skip_byte(pos, FrameError("incomplete frame at idle"))
                    continue
                if self._synced:
                    break
                later = self._look_ahead(pos + 1, end)
                if later < 0:
                    break
                pos = self._skip_to(pos, later)
                continue
            if n == NOT_A_FRAME:
                head = bytes(buf[pos : pos + 2]).hex(" ").upper()
                pos = self._skip_byte(pos, FrameError(f"{head} cannot start a {self._role}"))
                continue
            raw = bytes(buf[pos : pos + n])
            crc = crc16(raw[:-2])
            got = raw[-2] | raw[-1] << 8
            if crc != got:
                err = CrcError(f"CRC error in {n}-byte {self._role}", expected=crc, got=got)
                pos = self._skip_byte(pos, err)
                continue
            frames.append(Frame(raw, self._role))
            self.stats.frames += 1
            self._synced = True
            self._hunting = False
            pos += n
        del buf[:pos]
        self._consumed += pos
        if self._dead:
            self._dead = {o for o in self._dead if o >= self._consumed}
        return frames

    def _look_ahead(self, start: int, end: int) -> int:
        """Position of the first complete valid frame in ``buf[start:end]``, or -1."""
        for pos in range(start, end - adus.MIN_FRAME + 1):
            if self._valid_at(pos, end):
                return pos
        return -1

    def _skip_to(self, pos: int, later: int) -> int:
        self._skip(later - pos, FrameError(f"{later - pos} bytes before a valid frame skipped"))
        return later

    def _skip_byte(self, pos: int, err: FrameError) -> int:
        self._skip(1, err)
        return pos + 1

    def _skip(self, count: int, err: FrameError) -> None:
        self.stats.skipped_bytes += count
        self._synced = False
        if self._hunting:
            return
        self._hunting = True
        stats = self.stats
        if isinstance(err, CrcError):
            stats.crc_errors += 1
        else:
            stats.frame_errors += 1
        stats.errors.append(err)
        del stats.errors[: -stats.keep_errors]
        log.debug("RTU %s framer: %s", self.role, err)
        if self.on_error is not None:
            self.on_error(err)
