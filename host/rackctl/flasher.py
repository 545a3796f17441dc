"""Flash a firmware image into a board's update staging area over Modbus RTU.

The board side is ``rackfw.update`` (the common map's ``update`` holding block and
``update_status`` input block); this is the host side of that mailbox protocol:

1. unlock (the two-step key: ``update_command`` is protected), renewed before the
   60 s grant runs out and again if the board answers 04 (locked);
2. ``begin``: session id + image size; the board erases the staging area one
   sector per poll and answers every write with exception 06 (busy) meanwhile;
3. per chunk (≤ 128 octets) **one** FC 16: session, offset, length, CRC-16 of the
   chunk, the 64-register chunk window and ``update_command = write_chunk`` -- the
   map keeps them contiguous and the board runs a multiple write's registers in
   order, so the command sees the header and window of the same request;
4. ``commit`` with the CRC-16 of the whole image; the board re-reads its staging
   flash, programs its commit record and reports ``ready`` (or
   ``failed``/``image_crc``). Only a committed image is installed at the next boot.

``update_next_offset`` is the truth, read every ``status_every`` chunks (and after
the first chunk, after any exchange lost on the wire, after a refused chunk and
after the last one): a write reply only says the registers were stored; whether the
chunk passed its CRC and reached flash shows in the status. The board refuses every
chunk whose offset is not the one it expects, so chunks sent after a refused one
are refused too and nothing lands out of order: the host goes back to the board's
``next_offset`` (go-back-N) and counts the refusal against ``max_chunk_retries``.
Reading the status only every N chunks is what makes a chunk one transaction
instead of two: the window costs N chunks of re-sending in the rare case of a
silent refusal (a CRC mismatch behind a good frame CRC, another host, a board
reset), which the status read catches.

Everything that waits goes through the injected ``sleep``/``clock``, so the same
code runs in real time on a serial port and in virtual time on the simulated bus.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rackproto import regmap
from rackproto.crc import crc16
from rackproto.errors import DeviceTimeout, FrameError, ModbusException, RackError
from rackproto.fwimage import staged_extent

log = logging.getLogger(__name__)

CHUNK_MAX = 128  # octets per chunk window (rackfw.update.CHUNK_MAX)
UNLOCK_KEY = 0xC0DE  # rackfw.unlock.KEY; its complement follows
UNLOCK_HOLD_S = 60.0  # the firmware's grant; renewed well before it ends
UNLOCK_RENEW_S = 45.0

CMD_BEGIN, CMD_WRITE_CHUNK, CMD_COMMIT, CMD_ABORT = 1, 2, 3, 4
STATES = ("idle", "receiving", "verifying", "ready", "failed")
RESULTS = ("ok", "bad_session", "bad_offset", "chunk_crc", "image_crc", "flash_error",
           "too_large", "busy")

BUSY = 6  # Modbus exception: server device busy


class FlashError(RackError):
    """Flashing failed; the message says what went wrong and what to do about it."""


class ImageTooLarge(FlashError, ValueError):
    """The image does not fit the board's staging area (nothing was written)."""


class SessionRefused(FlashError):
    """The board refused our session id: another host began an update, or the board reset."""


class BoardBusy(FlashError, TimeoutError):
    """The board kept answering exception 06 (busy) for longer than allowed."""


@dataclass(frozen=True)
class UpdateStatus:
    state: str
    result: str
    next_offset: int


@dataclass
class FlashProgress:
    """Handed to ``progress_cb`` after every step. ``done``: octets sent whose write was
    acknowledged; the board's ``update_next_offset`` confirms them every ``status_every``
    chunks, so after a refused chunk ``done`` steps back to where the board stands."""

    phase: str  # unlock, begin, write, commit, verify, done
    done: int
    total: int
    chunk_retries: int = 0
    busy_retries: int = 0


@dataclass
class FlashReport:
    device_id: int
    size: int
    session: int
    image_crc: int
    chunks: int = 0
    chunk_retries: int = 0  # chunks refused (CRC) or not taken and sent again
    busy_retries: int = 0  # writes answered 06 and repeated
    resyncs: int = 0  # jumps to the board's update_next_offset after a lost reply
    lost_replies: int = 0  # exchanges lost on the wire (no or corrupt reply) and recovered
    unlocks: int = 0
    elapsed_s: float = 0.0
    state: str = "idle"
    timeline: dict[str, float] = field(default_factory=dict)

    @property
    def throughput(self) -> float:
        """Image octets per second, end to end (unlock to ready)."""
        return self.size / self.elapsed_s if self.elapsed_s > 0 else 0.0


def chunk_words(data: bytes) -> list[int]:
    """Octets as the chunk window holds them: two per register, big-endian, zero-padded."""
    if len(data) % 2:
        data = data + b"\x00"
    return [(data[i] << 8) | data[i + 1] for i in range(0, len(data), 2)]


CHUNK_WORDS = CHUNK_MAX // 2


class _Addresses:
    """Register addresses of the update mailbox, from the common map (never typed twice).

    The requests below write runs of registers in one FC 16, so their order is
    checked here: begin (image size, image CRC, session), commit (image CRC,
    session) and the chunk frame (session, offset, length, chunk CRC, window,
    command)."""

    def __init__(self) -> None:
        m = regmap.load("common")
        self.unlock_key = m.get("unlock_key").address
        self.command = m.get("update_command").address
        self.session = m.get("update_session").address
        self.image_size = m.get("update_image_size").address
        self.image_crc = m.get("update_image_crc").address
        self.chunk = m.get("update_chunk").address
        self.status = m.get("update_state").address
        expect = {
            "update_image_crc": self.image_size + 2,
            "update_session": self.image_crc + 1,
            "update_offset": self.session + 1,
            "update_length": self.session + 3,
            "update_chunk_crc": self.session + 4,
            "update_chunk": self.session + 5,
            "update_command": self.chunk + CHUNK_WORDS,
        }
        for name, address in expect.items():
            if m.get(name).address != address:
                raise FlashError(f"common map: {name} is not where the flasher expects it "
                                 f"({address}); the chunk frame must be contiguous")


_ADDR: _Addresses | None = None


def _addresses() -> _Addresses:
    global _ADDR
    if _ADDR is None:
        _ADDR = _Addresses()
    return _ADDR


class Flasher:
    """One update session with one board; :func:`flash` runs the whole sequence.

    ``link`` is a :class:`rackctl.modbus_client.ModbusLink` (``read``,
    ``write_registers``). The methods are usable on their own (abort a stuck
    session, inspect status) and raise :class:`FlashError` subclasses.
    """

    def __init__(
        self,
        link: Any,
        device_id: int,
        *,
        session: int | None = None,
        chunk_size: int = CHUNK_MAX,
        busy_timeout: float = 10.0,
        max_chunk_retries: int = 8,
        lost_retries: int = 3,
        status_every: int = 16,
        one_write: bool = True,
        unlock_key: int = UNLOCK_KEY,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= chunk_size <= CHUNK_MAX:
            raise ValueError(f"chunk_size must be 1..{CHUNK_MAX}")
        if status_every < 1:
            raise ValueError("status_every must be at least 1")
        self.link = link
        self.unit = device_id
        self.session = session if session is not None else secrets.randbelow(0xFFFF) + 1
        self.chunk_size = chunk_size
        self.busy_timeout = busy_timeout
        self.max_chunk_retries = max_chunk_retries
        self.status_every = status_every
        self.one_write = one_write
        self.unlock_key = unlock_key
        self.sleep = sleep
        self.clock = clock
        self.a = _addresses()
        self.lost_retries = lost_retries
        self.busy_retries = 0
        self.lost = 0  # exchanges lost on the wire and repeated
        self.unlocks = 0
        self._unlocked_at: float | None = None

    # ---- low-level ------------------------------------------------------------------
    async def status(self) -> UpdateStatus:
        """``update_status`` (a read; repeated like a write when lost on the wire)."""
        for lost in range(self.lost_retries + 1):
            try:
                st, res, hi, lo = await self.link.read(self.unit, "input", self.a.status, 4)
                break
            except (DeviceTimeout, FrameError):
                self.lost += 1
                if lost == self.lost_retries:
                    raise
        state = STATES[st] if st < len(STATES) else f"state{st}"
        result = RESULTS[res] if res < len(RESULTS) else f"result{res}"
        return UpdateStatus(state, result, (hi << 16) | lo)

    async def _write(self, address: int, values: list[int], *, repeat_lost: bool = True) -> None:
        """A write that waits out exception 06 (busy) with a growing backoff and, when
        ``repeat_lost``, repeats an exchange lost on the wire (timeout, corrupt reply) up
        to ``lost_retries`` times: every flasher write is idempotent or checked through
        ``update_status`` afterwards, and a flash is thousands of exchanges long, so
        one lost frame must not end it whatever the link's own ``--retries`` are."""
        start = self.clock()
        delay = 0.002
        lost = 0
        while True:
            try:
                await self.link.write_registers(self.unit, address, values)
                return
            except ModbusException as exc:
                if exc.code != BUSY:
                    raise
            except (DeviceTimeout, FrameError):
                self.lost += 1
                lost += 1
                if not repeat_lost or lost > self.lost_retries:
                    raise
                log.info("unit %d: write to %d lost; repeating it", self.unit, address)
                continue
            self.busy_retries += 1
            if self.clock() - start > self.busy_timeout:
                raise BoardBusy(
                    f"unit {self.unit} stayed busy (exception 06) for {self.busy_timeout:g} s; "
                    "its flash may be failing — power-cycle it and flash again")
            await self.sleep(delay)
            delay = min(delay * 1.5, 0.05)

    async def unlock(self) -> None:
        """The two-step key. Repeating only the complement after a lost reply would be
        refused (03: the board is already unlocked, so it reads as a bad key), so any
        loss or 03 restarts the pair; 03 three times means the key is wrong."""
        a = self.a
        last: Exception | None = None
        for _attempt in range(self.lost_retries + 1):
            try:
                await self._write(a.unlock_key, [self.unlock_key], repeat_lost=False)
                await self._write(a.unlock_key, [self.unlock_key ^ 0xFFFF], repeat_lost=False)
            except ModbusException as exc:
                if exc.code != 3:
                    raise
                last = exc
                continue
            except (DeviceTimeout, FrameError) as exc:
                last = exc
                continue
            self._unlocked_at = self.clock()
            self.unlocks += 1
            return
        if isinstance(last, ModbusException):
            raise FlashError(
                f"unit {self.unit} refused the unlock key {self.unlock_key:#06x} (exception 03) "
                "— pass the board's key with --unlock-key") from last
        if last is None:  # lost_retries < 0: nothing was tried
            raise FlashError(f"unit {self.unit}: unlock was not attempted (lost_retries < 0)")
        raise last

    async def protected_write(self, address: int, values: list[int]) -> None:
        """A write that includes ``update_command`` (protected): unlock first when the
        grant is (nearly) over, and again if the board says it is locked (exception 04)."""
        if self._unlocked_at is None or self.clock() - self._unlocked_at > UNLOCK_RENEW_S:
            await self.unlock()
        try:
            await self._write(address, values)
        except ModbusException as exc:
            if exc.code != 4:
                raise
            log.info("unit %d: update_command refused as locked; unlocking again", self.unit)
            await self.unlock()
            try:
                await self._write(address, values)
            except ModbusException as exc2:
                if exc2.code == 4:
                    raise FlashError(
                        f"unit {self.unit} refuses update commands even after the unlock key "
                        "(exception 04) — wrong --unlock-key, or the board has no staging "
                        "flash") from exc2
                raise

    async def command(self, cmd: int) -> None:
        """Write ``update_command`` alone (begin, commit, abort; write_chunk the old way)."""
        await self.protected_write(self.a.command, [cmd])

    async def begin(self, size: int, image_crc: int = 0) -> UpdateStatus:
        if not 0 < size <= 0xFFFFFFFF:
            raise ImageTooLarge(f"image size {size} is not 1..{0xFFFFFFFF}")
        # image size (2), image crc, session: one request
        await self._write(self.a.image_size, [size >> 16, size & 0xFFFF, image_crc,
                                              self.session])
        try:
            await self.command(CMD_BEGIN)
        except DeviceTimeout:
            # the reply (or the request) was lost; beginning again is harmless: it only
            # restarts the erase (answered 06 until the first one is done)
            log.info("unit %d: begin unanswered; sending it again", self.unit)
            await self.command(CMD_BEGIN)
        st = await self.status()
        if st.result == "too_large":
            raise ImageTooLarge(
                f"unit {self.unit} has no room for a {size}-octet image (its staging area is "
                "smaller); build a smaller image (--mpy) — nothing was written")
        if st.state != "receiving":
            raise FlashError(f"unit {self.unit} did not start the update (state {st.state}, "
                             f"result {st.result})")
        return st

    def chunk_frame(self, offset: int, data: bytes) -> list[int]:
        """The registers of one chunk, ``update_session`` through ``update_command``:
        header, the window (zero-padded to its 64 registers, so the command register
        follows) and ``write_chunk``."""
        if not 0 < len(data) <= CHUNK_MAX:
            raise ValueError(f"a chunk holds 1..{CHUNK_MAX} octets, not {len(data)}")
        window = chunk_words(data)
        window += [0] * (CHUNK_WORDS - len(window))
        return [self.session, offset >> 16, offset & 0xFFFF, len(data), crc16(data),
                *window, CMD_WRITE_CHUNK]

    async def write_chunk(self, offset: int, data: bytes) -> bool:
        """Send one chunk and trigger it in one request; False when a reply was lost or
        corrupt (the link's and the flasher's repeats used up): the status read that
        follows tells what happened. A repeat of an executed frame is refused by the
        board with ``bad_offset`` (its ``next_offset`` already moved): harmless."""
        try:
            await self.protected_write(self.a.session, self.chunk_frame(offset, data))
        except (DeviceTimeout, FrameError) as exc:
            log.info("unit %d: chunk at %d unconfirmed (%s)", self.unit, offset, exc)
            return False
        return True

    async def write_chunk_split(self, offset: int, data: bytes) -> bool:
        """The v1 way, three requests (header, window, ``write_chunk`` alone)
        (``one_write=False``); the board still takes it. Kept to compare the two and to
        keep the explicit command exercised."""
        a = self.a
        try:
            await self._write(a.session, [self.session, offset >> 16, offset & 0xFFFF,
                                          len(data), crc16(data)])
            await self._write(a.chunk, chunk_words(data))
            await self.command(CMD_WRITE_CHUNK)
        except (DeviceTimeout, FrameError) as exc:
            log.info("unit %d: chunk at %d unconfirmed (%s)", self.unit, offset, exc)
            return False
        return True

    async def commit(self, image_crc: int) -> None:
        await self._write(self.a.image_crc, [image_crc, self.session])
        await self.command(CMD_COMMIT)

    async def abort(self) -> UpdateStatus:
        await self._write(self.a.session, [self.session])
        await self.command(CMD_ABORT)
        return await self.status()

    # ---- the sequence ---------------------------------------------------------------
    async def _settle(self, offset: int, command_sent: bool) -> UpdateStatus:
        """Status after a chunk; waits (briefly) while the board is still programming."""
        for _ in range(50):
            st = await self.status()
            if st.state != "receiving":
                if st.result == "bad_session":
                    raise self._session_refused()
                raise FlashError(
                    f"unit {self.unit} left the update (state {st.state}, result {st.result}) "
                    "— it may have reset or another host aborted; flash again")
            if st.next_offset != offset or st.result != "ok" or not command_sent:
                return st
            await self.sleep(0.001)  # accepted, flash programming still pending
        return st

    def _session_refused(self) -> SessionRefused:
        return SessionRefused(
            f"unit {self.unit} refused session {self.session:#06x} — another host began an "
            "update or the board reset; make sure only one flasher talks to it, then retry")

    async def send(self, image: bytes, report: FlashReport,
                   progress: Callable[[FlashProgress], None]) -> None:
        """Send ``image`` from offset 0, pipelined: one request per chunk, the status
        read every ``status_every`` chunks (and whenever something went wrong)."""
        size = len(image)
        offset = 0  # next octet to send
        confirmed = 0  # where the board stood at the last status read (0 after begin)
        ends: list[int] = []  # end offsets of the chunks sent since that read
        check_now = True  # confirm the first chunk at once: a wrong session shows there
        retries_here = 0  # status reads in a row that found no progress
        while offset < size:
            n = min(self.chunk_size, size - offset)
            lost_before = self.lost
            data = image[offset : offset + n]
            if self.one_write:
                sent = await self.write_chunk(offset, data)
            else:
                sent = await self.write_chunk_split(offset, data)
            start, offset = offset, offset + n
            ends.append(offset)
            if (sent and self.lost == lost_before and not check_now and offset < size
                    and len(ends) < self.status_every):
                progress(FlashProgress("write", offset, size, report.chunk_retries,
                                       self.busy_retries))
                continue
            st = await self._settle(start, sent)
            nxt = st.next_offset
            if st.result == "bad_session":  # whatever the offset says: it is not ours
                raise self._session_refused()
            check_now = False
            if nxt == confirmed or nxt in ends:
                taken = 0 if nxt == confirmed else ends.index(nxt) + 1
                report.chunks += taken
                if taken < len(ends):  # the chunk at nxt was not taken; those after it
                    # were refused as out of order: go back to it
                    report.chunk_retries += 1
                    retries_here = retries_here + 1 if taken == 0 else 1
                    check_now = True
                    log.info("unit %d: chunk at %d not taken (%s); sending from there again",
                             self.unit, nxt, st.result)
                    if retries_here > self.max_chunk_retries:
                        raise FlashError(
                            f"unit {self.unit} refused the chunk at offset {nxt} "
                            f"{retries_here} times (last result {st.result}) — the line is "
                            "too noisy: check termination, --baud and --parity, then flash "
                            "again")
                else:
                    retries_here = 0
            elif nxt <= size and report.resyncs < 4 * self.max_chunk_retries:
                log.warning("unit %d: board expects offset %d, not %d; resuming there",
                            self.unit, nxt, offset)
                report.resyncs += 1
                retries_here = 0
                check_now = True
            else:
                raise FlashError(f"unit {self.unit} reports offset {nxt} (image {size} octets, "
                                 f"{report.resyncs} jumps so far) — abort and flash again")
            confirmed = offset = nxt
            ends = []
            progress(FlashProgress("write", offset, size, report.chunk_retries, self.busy_retries))


async def _verified(fl: Flasher, device_id: int, timeout: float) -> UpdateStatus:
    """Poll while the board re-reads its staging flash to check the image CRC."""
    deadline = fl.clock() + timeout
    while True:
        st = await fl.status()
        if st.state != "verifying":
            return st
        if fl.clock() > deadline:
            raise FlashError(f"unit {device_id} still verifying after {timeout:g} s — "
                             "power-cycle it and flash again")
        await fl.sleep(0.01)


async def flash(
    link: Any,
    device_id: int,
    image: bytes,
    progress_cb: Callable[[FlashProgress], None] | None = None,
    *,
    max_size: int | None = None,
    verify_timeout: float = 30.0,
    **options: Any,
) -> FlashReport:
    """Stage ``image`` in board ``device_id``'s update area and commit it (state ``ready``).

    ``max_size`` (the board's staging capacity, when known) refuses a too-large image
    before anything is sent; otherwise the board refuses it at ``begin``, before any
    chunk. ``options`` go to :class:`Flasher` (session, chunk_size, busy_timeout,
    max_chunk_retries, lost_retries, status_every, one_write, unlock_key, sleep, clock).
    ``status_every=1, one_write=False`` is the v1 exchange (four transactions per chunk).
    Returns a :class:`FlashReport`.
    """
    image = bytes(image)
    if not image:
        raise FlashError("the image is empty; nothing to flash")
    if max_size is not None and staged_extent(len(image)) > max_size:
        raise ImageTooLarge(f"image is {len(image)} octets (+ install marker and commit "
                            f"record: {staged_extent(len(image))}) but unit {device_id} stages "
                            f"at most {max_size}; build a smaller image (--mpy) — nothing "
                            "was sent")
    fl = Flasher(link, device_id, **options)
    image_crc = crc16(image)
    report = FlashReport(device_id, len(image), fl.session, image_crc)
    cb = progress_cb or (lambda _p: None)
    t0 = fl.clock()

    def mark(phase: str, done: int) -> None:
        report.timeline[phase] = fl.clock() - t0
        cb(FlashProgress(phase, done, len(image), report.chunk_retries, fl.busy_retries))

    mark("unlock", 0)
    await fl.unlock()
    mark("begin", 0)
    await fl.begin(len(image), image_crc)
    await fl.send(image, report, cb)
    mark("commit", len(image))
    for _attempt in range(3):
        try:
            await fl.commit(image_crc)
        except DeviceTimeout:
            pass  # counted in fl.lost; the status tells whether it arrived
        st = await _verified(fl, device_id, verify_timeout)
        if st.state != "receiving":
            break
        log.info("unit %d: commit did not arrive; sending it again", device_id)  # still receiving
    report.state = st.state
    report.busy_retries = fl.busy_retries
    report.lost_replies += fl.lost
    report.unlocks = fl.unlocks
    report.elapsed_s = fl.clock() - t0
    if st.state != "ready":
        if st.result == "image_crc":
            raise FlashError(f"unit {device_id} staged an image whose CRC does not match "
                             f"{image_crc:#06x} — flash again (the image was not applied)")
        if st.result == "bad_session":
            raise fl._session_refused()
        raise FlashError(f"unit {device_id} did not accept the image (state {st.state}, "
                         f"result {st.result}) — flash again")
    mark("done", len(image))
    log.info("unit %d: %d octets staged in %.2f s (%.0f B/s), %d chunk retries, %d busy",
             device_id, len(image), report.elapsed_s, report.throughput,
             report.chunk_retries, report.busy_retries)
    return report
