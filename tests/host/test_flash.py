"""rackctl.flasher and ``rackctl flash`` end to end against the real board firmware.

The board is ``rackfw`` on the software rack's RS-485 bus: under CPython
(``rackhil.cpython_node``, fast) for most tests, in the MicroPython VM for one
(slow). The flasher talks to it through ``rackhil.master.Master`` in *virtual* time
(an async adapter below), with ``sleep``/``clock`` advancing the bus, so timings are
deterministic and throughput is measured in bus time. The CLI tests go through the
real ``RtuClient`` (pymodbus) on a pty paced in real time.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rackctl import flasher
from rackctl.cli.main import cli
from rackhil.bus import Bus
from rackhil.cpython_node import CPythonNode
from rackhil.faults import BitErrors
from rackhil.master import Master
from rackhil.transport import HostPort
from rackproto import fwimage, regmap
from rackproto.crc import crc16
from rackproto.errors import DeviceTimeout, ModbusException

pytestmark = pytest.mark.timeout(120)

UNIT = 1
STAGE = 0x6000  # rackfw.board.UPDATE_BASE
_COMMON = regmap.load("common")
SESSION_ADDR = _COMMON.get("update_session").address  # where a chunk frame starts
IMAGE_SIZE_ADDR = _COMMON.get("update_image_size").address
CHUNK_ADDR = _COMMON.get("update_chunk").address
COMMAND_ADDR = _COMMON.get("update_command").address
WINDOW = CHUNK_ADDR - SESSION_ADDR  # index of the window's first word in a frame
BYTE_S = 11 / 115200  # one character at 115200 8E1


def is_frame(address: int, values: list[int]) -> bool:
    """A one-write chunk: update_session .. update_command = write_chunk."""
    return address == SESSION_ADDR and len(values) > WINDOW and values[-1] == flasher.CMD_WRITE_CHUNK


class MasterLink:
    """The ModbusLink methods the flasher uses, over a virtual-time Master."""

    def __init__(self, master: Master) -> None:
        self.m = master
        self.requests: list[tuple[str, int, int]] = []

    async def read(self, unit: int, table: str, address: int, count: int) -> list[int]:
        self.requests.append(("read", address, count))
        return self.m.read_registers(unit, table, address, count)

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        self.requests.append(("write", address, len(values)))
        if len(values) == 1:
            self.m.write_register(unit, address, values[0])
        else:
            self.m.write_registers(unit, address, values)


class Rig:
    """One board on a bus, a master, and virtual sleep/clock for the flasher."""

    def __init__(self, node: Any, bus: Bus) -> None:
        self.bus = bus
        self.node = node
        self.port = HostPort(bus)
        self.master = Master(self.port, {UNIT: "power_shelf"}, timeout=0.1, retries=2)
        self.link = MasterLink(self.master)

    async def sleep(self, seconds: float) -> None:
        self.bus.run_until(self.bus.now_us + max(1, round(seconds * 1e6)))

    def clock(self) -> float:
        return self.bus.now_us / 1e6

    def opts(self, **kw: Any) -> dict[str, Any]:
        return {"sleep": self.sleep, "clock": self.clock, **kw}

    def flash(self, image: bytes, link: Any = None, progress: Any = None, **kw: Any):
        return asyncio.run(flasher.flash(link or self.link, UNIT, image, progress,
                                         **self.opts(**kw)))

    def staged(self, n: int) -> bytes:
        return self.node.read_flash()[STAGE : STAGE + n]

    def update_events(self) -> list[tuple[int, int]]:
        return [(e.code, e.value) for e in self.master.events(UNIT) if e.kind == "update"]


def cpython_rig(flash_size: int = 256 * 1024) -> Rig:
    bus = Bus(seed=7)
    node = bus.attach(CPythonNode("shelf", {"board": "power_shelf", "unit_id": UNIT},
                                  flash_size=flash_size))
    return Rig(node, bus)


@pytest.fixture
def rig() -> Rig:
    return cpython_rig()


def payload(n: int, seed: int = 1) -> bytes:
    return random.Random(seed).randbytes(n)


# ---------------------------------------------------------------- happy path
def test_flash_stages_the_image_and_reports_ready(rig: Rig) -> None:
    image = payload(5000)
    seen: list[flasher.FlashProgress] = []
    report = rig.flash(image, progress=seen.append, session=0x1234)
    assert rig.staged(len(image)) == image
    assert rig.master.read(UNIT, "update_state") == "ready"
    assert rig.master.read(UNIT, "update_result") == "ok"
    assert rig.master.read(UNIT, "update_next_offset") == len(image)
    # begin and commit, both with our session, in the board's event log
    assert rig.update_events() == [(1, 0x1234), (3, 0x1234)]
    assert (report.state, report.size, report.session) == ("ready", 5000, 0x1234)
    assert report.chunks == -(-5000 // 128) and report.chunk_retries == 0
    assert report.image_crc == crc16(image)
    writes = [p.done for p in seen if p.phase == "write"]
    assert writes == sorted(writes) and writes[-1] == len(image)
    assert [p.phase for p in seen][0] == "unlock" and seen[-1].phase == "done"
    # committed: the board programmed its commit record, so the loader will install it
    dump = rig.node.read_flash()
    at = STAGE + fwimage.commit_offset(len(image))
    assert dump[at : at + 16] == fwimage.commit_record(len(image), crc16(image))


def test_one_request_per_chunk_and_a_status_read_every_n(rig: Rig) -> None:
    image = payload(40 * 128)
    report = rig.flash(image, status_every=8)
    frames = [r for r in rig.link.requests if r[:2] == ("write", SESSION_ADDR)]
    assert len(frames) == report.chunks == 40
    assert all(r[2] == COMMAND_ADDR - SESSION_ADDR + 1 for r in frames)
    assert not [r for r in rig.link.requests if r[:2] == ("write", CHUNK_ADDR)]
    reqs = rig.link.requests
    first = reqs.index(frames[0])
    last = len(reqs) - reqs[::-1].index(frames[-1])
    # status reads while sending: after chunk 1, after every 8 more (9, 17, 25, 33),
    # after the last (40)
    assert [r[0] for r in reqs[first : last + 1]].count("read") == 6
    assert rig.staged(len(image)) == image


def test_the_v1_exchange_still_works(rig: Rig) -> None:
    """Header, window and the explicit write_chunk, status after every chunk."""
    image = payload(1000)
    report = rig.flash(image, one_write=False, status_every=1)
    assert rig.staged(len(image)) == image and report.state == "ready"
    assert len([r for r in rig.link.requests if r[:2] == ("write", CHUNK_ADDR)]) == 8
    assert len([r for r in rig.link.requests if r[:2] == ("write", COMMAND_ADDR)]) == 10


def test_a_host_that_dies_before_commit_leaves_an_uncommitted_image(rig: Rig) -> None:
    """Every chunk staged, no commit: the octets are all there, the record is not, so
    the loader (and ``read_staged``) refuse it; commit makes it installable."""
    image = fwimage.build({"main.py": payload(900)}, "power_shelf", "1.1")

    async def run() -> flasher.Flasher:
        fl = flasher.Flasher(rig.link, UNIT, session=0x0D1E, **rig.opts())
        await fl.unlock()
        await fl.begin(len(image), crc16(image))
        await fl.send(image, flasher.FlashReport(UNIT, len(image), fl.session, crc16(image)),
                      lambda p: None)
        return fl

    fl = asyncio.run(run())
    assert rig.staged(len(image)) == image
    with pytest.raises(fwimage.ImageUncommittedError):
        fwimage.read_staged(rig.node.read_flash())

    async def finish() -> flasher.UpdateStatus:
        await fl.commit(crc16(image))
        await rig.sleep(0.05)
        return await fl.status()

    assert asyncio.run(finish()).state == "ready"
    assert fwimage.read_staged(rig.node.read_flash()) == fwimage.parse(image)


@pytest.mark.parametrize("size", [1, 127, 128, 129, 301])
def test_odd_and_edge_sizes(rig: Rig, size: int) -> None:
    image = payload(size, seed=size)
    rig.flash(image)
    assert rig.staged(size) == image
    assert rig.master.read(UNIT, "update_state") == "ready"


def test_chunk_words_are_big_endian_and_padded() -> None:
    assert flasher.chunk_words(b"\x12\x34\x56") == [0x1234, 0x5600]
    assert flasher.chunk_words(b"") == []


def test_a_second_flash_replaces_the_first(rig: Rig) -> None:
    rig.flash(payload(3000, 1))
    image = payload(2000, 2)
    rig.flash(image)
    assert rig.staged(2000) == image
    assert rig.master.read(UNIT, "update_state") == "ready"


# ---------------------------------------------------------------- faults
class CorruptFirstChunk(MasterLink):
    """Flips one bit of the chunk window once (behind a good frame CRC): a chunk whose
    CRC-16 cannot match, refused silently -- the write itself is answered."""

    def __init__(self, master: Master, which: int = 1) -> None:
        super().__init__(master)
        self.chunk_writes = 0
        self.which = which

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        if is_frame(address, values):
            self.chunk_writes += 1
            if self.chunk_writes == self.which:
                values = [*values[:WINDOW], values[WINDOW] ^ 0x0100, *values[WINDOW + 1 :]]
        await super().write_registers(unit, address, values)


@pytest.mark.parametrize("status_every", [1, 4, 16])
def test_corrupted_chunk_is_rejected_and_sent_again(rig: Rig, status_every: int) -> None:
    """Go-back-N: the refused chunk and those sent after it before the next status read
    (refused as out of order) are sent again; nothing lands out of order."""
    image = payload(1000)
    chunks = -(-1000 // 128)
    link = CorruptFirstChunk(rig.master, which=3)
    report = rig.flash(image, link=link, status_every=status_every)
    assert report.chunk_retries == 1
    assert report.chunks == chunks
    # status reads: after chunk 1, after every status_every more, after the last
    reads = {1, chunks, *range(1 + status_every, chunks, status_every)}
    read_after = min(n for n in reads if n >= 3)  # the first to see chunk 3 refused
    assert link.chunk_writes == chunks + (read_after - 3) + 1
    assert rig.staged(1000) == image
    assert rig.master.read(UNIT, "update_state") == "ready"


class AlwaysCorrupt(MasterLink):
    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        if is_frame(address, values):
            values = [v ^ 1 if WINDOW <= i < WINDOW + 64 else v for i, v in enumerate(values)]
        await super().write_registers(unit, address, values)


def test_a_chunk_refused_every_time_gives_up_with_a_clear_error(rig: Rig) -> None:
    with pytest.raises(flasher.FlashError, match="refused the chunk at offset 0 4 times.*chunk_crc"):
        rig.flash(payload(500), link=AlwaysCorrupt(rig.master), max_chunk_retries=3)


class LoseCommandReply(MasterLink):
    """The board executes chunk frame number ``which`` but its reply never arrives
    (``execute=True``), or the request itself is lost (``execute=False``)."""

    def __init__(self, master: Master, which: int, execute: bool) -> None:
        super().__init__(master)
        self.which, self.execute, self.commands = which, execute, 0

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        if is_frame(address, values):
            self.commands += 1
            if self.commands == self.which:
                if self.execute:
                    await super().write_registers(unit, address, values)
                raise DeviceTimeout("unit 1: no response (test)")
        await super().write_registers(unit, address, values)


@pytest.mark.parametrize("execute", [True, False], ids=["reply-lost", "request-lost"])
def test_lost_chunk_frame_resumes_from_the_boards_offset(rig: Rig, execute: bool) -> None:
    image = payload(1500)
    link = LoseCommandReply(rig.master, which=4, execute=execute)
    report = rig.flash(image, link=link)
    assert report.lost_replies == 1
    assert report.chunk_retries == 0  # the command was simply repeated
    assert rig.staged(len(image)) == image
    assert rig.master.read(UNIT, "update_state") == "ready"


class LoseOnce(MasterLink):
    """Loses the ``nth`` write to ``address`` (with ``values`` when given): the request
    (``execute=False``) or only its reply (``execute=True``)."""

    def __init__(self, master: Master, address: int, values: list[int] | None, nth: int,
                 execute: bool) -> None:
        super().__init__(master)
        self.address, self.values, self.nth, self.execute = address, values, nth, execute
        self.seen = 0

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        if address == self.address and self.values in (None, values):
            self.seen += 1
            if self.seen == self.nth:
                if self.execute:
                    await super().write_registers(unit, address, values)
                raise DeviceTimeout("unit 1: no response (test)")
        await super().write_registers(unit, address, values)


@pytest.mark.parametrize(
    ("address", "values", "nth", "execute"),
    [
        (COMMAND_ADDR, [flasher.CMD_BEGIN], 1, False),
        (COMMAND_ADDR, [flasher.CMD_BEGIN], 1, True),
        (COMMAND_ADDR, [flasher.CMD_COMMIT], 1, False),
        (COMMAND_ADDR, [flasher.CMD_COMMIT], 1, True),
        (SESSION_ADDR, None, 2, False),  # a chunk frame
        (SESSION_ADDR, None, 3, True),
        (SESSION_ADDR, None, 8, True),  # the last chunk's
        (IMAGE_SIZE_ADDR, None, 1, False),  # begin's parameters
    ],
    ids=["begin-lost", "begin-reply-lost", "commit-lost", "commit-reply-lost", "frame-lost",
         "frame-reply-lost", "last-frame-reply-lost", "begin-params-lost"],
)
def test_any_lost_exchange_is_recovered(rig: Rig, address: int, values: list[int] | None,
                                        nth: int, execute: bool) -> None:
    image = payload(900)
    link = LoseOnce(rig.master, address, values, nth, execute)
    report = rig.flash(image, link=link, session=0x0C0C)
    assert link.seen >= nth
    assert rig.staged(len(image)) == image
    assert rig.master.read(UNIT, "update_state") == "ready"
    assert report.state == "ready"


class Lossy(MasterLink):
    """Loses the write exchanges numbered in ``lost``: the request when the flag is
    False, only the reply when it is True."""

    def __init__(self, master: Master, lost: dict[int, bool]) -> None:
        super().__init__(master)
        self.lost, self.n = lost, 0

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        self.n += 1
        if self.n in self.lost:
            if self.lost[self.n]:
                await super().write_registers(unit, address, values)
            raise DeviceTimeout("lost (test)")
        await super().write_registers(unit, address, values)


@settings(max_examples=20, deadline=None)
@given(lost=st.dictionaries(st.integers(1, 12), st.booleans(), max_size=3))
def test_property_lost_writes_never_corrupt_or_stall_the_flash(lost: dict[int, bool]) -> None:
    rig = cpython_rig()
    image = payload(500, seed=len(lost))  # 4 chunks: unlock 2 + begin 2 + 4 + commit 2 = 10
    link = Lossy(rig.master, lost)
    report = rig.flash(image, link=link)
    assert rig.staged(len(image)) == image
    assert report.state == "ready"
    assert report.lost_replies == len([i for i in lost if i <= link.n])
    assert rig.master.read(UNIT, "update_state") == "ready"


@given(st.binary(max_size=200))
def test_property_chunk_words_round_trip(data: bytes) -> None:
    words = flasher.chunk_words(data)
    assert len(words) == (len(data) + 1) // 2
    assert b"".join(w.to_bytes(2, "big") for w in words)[: len(data)] == data


class DuplicateCommand(MasterLink):
    """A chunk frame executed twice (a link retry after a lost reply): the second is
    refused with bad_offset, and the flasher must neither stop nor repeat the chunk."""

    async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
        await super().write_registers(unit, address, values)
        if is_frame(address, values):
            for _ in range(20):
                try:
                    await super().write_registers(unit, address, values)
                    return
                except Exception:  # noqa: BLE001 - 06 busy while programming
                    self.m.port.bus.run_until(self.m.port.bus.now_us + 1000)


def test_duplicated_command_is_harmless(rig: Rig) -> None:
    image = payload(700)
    report = rig.flash(image, link=DuplicateCommand(rig.master))
    assert rig.staged(len(image)) == image
    assert report.chunks == -(-700 // 128)
    assert rig.master.read(UNIT, "update_state") == "ready"


def test_busy_board_is_waited_for(rig: Rig) -> None:
    """Erasing 200 KiB of staging takes 50 board polls (~50 ms); writes meanwhile get 06."""

    async def run() -> flasher.Flasher:
        fl = flasher.Flasher(rig.link, UNIT, **rig.opts())
        await fl.unlock()
        await fl.begin(200 * 1024)
        assert await fl.write_chunk(0, payload(128))
        await rig.sleep(0.002)
        assert (await fl.status()).next_offset == 128
        return fl

    fl = asyncio.run(run())
    assert fl.busy_retries > 0
    assert rig.master.counters.exception_codes.get(6, 0) == fl.busy_retries
    assert rig.staged(128) == payload(128)


def test_board_that_stays_busy_gives_up(rig: Rig) -> None:
    class Busy(MasterLink):
        async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
            raise ModbusException(6, 16)

    with pytest.raises(flasher.BoardBusy, match="stayed busy"):
        rig.flash(payload(100), link=Busy(rig.master), busy_timeout=0.5)


def test_relock_mid_session_unlocks_again(rig: Rig) -> None:
    image = payload(1200)

    class Relock(MasterLink):
        commands = 0

        async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
            if is_frame(address, values):
                self.commands += 1
                if self.commands == 3:
                    self.m.write_register(unit, 0, 0)  # unlock_key = 0 locks at once
            await super().write_registers(unit, address, values)

    report = rig.flash(image, link=Relock(rig.master))
    assert report.unlocks == 2
    assert rig.staged(len(image)) == image


def test_unlock_is_renewed_before_the_grant_expires(rig: Rig) -> None:
    """A slow link (a 50 s pause in the middle) must not lose the 60 s grant."""
    image = payload(1000)

    class Slow(MasterLink):
        paused = False

        async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
            if is_frame(address, values) and not self.paused:
                self.paused = True
                rig.bus.run_until(rig.bus.now_us + 50_000_000)
            await super().write_registers(unit, address, values)

    report = rig.flash(image, link=Slow(rig.master))
    assert report.unlocks == 2
    assert rig.master.read(UNIT, "update_state") == "ready"


def test_noisy_line_still_flashes(rig: Rig) -> None:
    """BER 1e-4 (one 137-character chunk frame in ~7 is hit), no link retries: the flasher
    recovers on its own."""
    rig.master.retries = 0
    rig.bus.add_line_fault(BitErrors(1e-4))
    image = payload(6000)
    report = rig.flash(image)
    assert rig.staged(len(image)) == image
    assert report.state == "ready"
    c = rig.master.counters
    assert report.lost_replies > 0
    assert c.crc_errors + c.timeouts + c.frame_errors >= report.lost_replies


# ---------------------------------------------------------------- sessions, abort, size
def test_wrong_session_is_refused(rig: Rig) -> None:
    async def run() -> None:
        ours = flasher.Flasher(rig.link, UNIT, session=0x1111, **rig.opts())
        theirs = flasher.Flasher(rig.link, UNIT, session=0x2222, **rig.opts())
        await ours.unlock()
        await ours.begin(1000)
        await rig.sleep(0.05)  # erase done
        await theirs.write_chunk(0, b"\x00" * 16)
        st = await theirs.status()
        assert (st.result, st.next_offset) == ("bad_session", 0)
        report = flasher.FlashReport(UNIT, 16, theirs.session, 0)
        with pytest.raises(flasher.SessionRefused, match="session 0x2222"):
            await theirs.send(b"\x00" * 16, report, lambda p: None)
        # ours is untouched and carries on
        assert await ours.write_chunk(0, b"\x01" * 16)
        await rig.sleep(0.005)
        assert (await ours.status()).next_offset == 16

    asyncio.run(run())


def test_session_taken_over_mid_flash_stops_with_session_refused(rig: Rig) -> None:
    class Intruder(MasterLink):
        commands = 0

        async def write_registers(self, unit: int, address: int, values: list[int]) -> None:
            if is_frame(address, values):
                self.commands += 1
                if self.commands == 2:  # another host begins its own session
                    self.m.write_registers(unit, IMAGE_SIZE_ADDR, [0, 512, 0, 0x7777])
                    self.m.write_register(unit, COMMAND_ADDR, flasher.CMD_BEGIN)
                    rig.bus.run_until(rig.bus.now_us + 5000)
            await super().write_registers(unit, address, values)

    with pytest.raises(flasher.SessionRefused):
        rig.flash(payload(2000), link=Intruder(rig.master), session=0x1234)


def test_send_resumes_where_the_board_stands(rig: Rig) -> None:
    """A second flasher on the same session (the first one's host crashed after three
    chunks) starts at 0, is told bad_offset with next = 384 and carries on from there."""
    image = payload(1000)

    async def run() -> flasher.FlashReport:
        first = flasher.Flasher(rig.link, UNIT, session=0x5151, **rig.opts())
        await first.unlock()
        await first.begin(len(image), crc16(image))
        for off in (0, 128, 256):
            assert await first.write_chunk(off, image[off : off + 128])
            await rig.sleep(0.005)
        second = flasher.Flasher(rig.link, UNIT, session=0x5151, **rig.opts())
        report = flasher.FlashReport(UNIT, len(image), 0x5151, crc16(image))
        await second.send(image, report, lambda p: None)
        await second.commit(crc16(image))
        await rig.sleep(0.05)
        assert (await second.status()).state == "ready"
        return report

    report = asyncio.run(run())
    assert report.resyncs == 1
    assert report.chunks == -(-1000 // 128) - 3
    assert rig.staged(len(image)) == image


def test_abort_closes_the_session(rig: Rig) -> None:
    async def run() -> flasher.UpdateStatus:
        fl = flasher.Flasher(rig.link, UNIT, session=0x0A0A, **rig.opts())
        await fl.unlock()
        await fl.begin(4096)
        assert rig.master.read(UNIT, "update_active")
        await fl.write_chunk(0, payload(128))
        await rig.sleep(0.05)
        assert (await fl.status()).next_offset == 128
        return await fl.abort()

    st = asyncio.run(run())
    assert (st.state, st.next_offset) == ("idle", 0)
    assert not rig.master.read(UNIT, "update_active")
    assert rig.update_events() == [(1, 0x0A0A), (4, 0x0A0A)]


def test_too_large_image_is_refused_before_anything_is_sent(rig: Rig) -> None:
    with pytest.raises(flasher.ImageTooLarge, match="nothing was sent"):
        rig.flash(payload(2000), max_size=1999)
    assert rig.link.requests == []
    with pytest.raises(flasher.FlashError, match="empty"):
        rig.flash(b"")
    assert rig.link.requests == []


def test_board_refuses_an_image_larger_than_its_staging_area() -> None:
    small = cpython_rig(flash_size=32 * 1024)  # 8 KiB of staging after 24 KiB of config/log
    with pytest.raises(flasher.ImageTooLarge, match="no room for a 9000-octet image"):
        small.flash(payload(9000))
    assert not [r for r in small.link.requests if r[1] == SESSION_ADDR]  # no chunk was sent
    assert small.master.read(UNIT, "update_result") == "too_large"
    with pytest.raises(flasher.ImageTooLarge):  # fits, but its install records do not
        small.flash(payload(8 * 1024 - 31))
    image = payload(8 * 1024 - 32)  # image + marker + commit record exactly fill it
    small.flash(image)
    assert small.staged(len(image)) == image
    with pytest.raises(flasher.ImageTooLarge, match="nothing was sent"):
        small.flash(payload(8 * 1024 - 31), max_size=8 * 1024)


def test_a_wrong_unlock_key_is_reported(rig: Rig) -> None:
    with pytest.raises(flasher.FlashError, match="refused the unlock key 0x1234.*--unlock-key"):
        rig.flash(payload(100), unlock_key=0x1234)
    assert rig.master.read(UNIT, "update_state") == "idle"
    assert not [r for r in rig.link.requests if r[1] == COMMAND_ADDR]


# ---------------------------------------------------------------- throughput
def test_throughput_at_115200_baud(rig: Rig) -> None:
    """Bus-time throughput (deterministic: virtual time). The wire bound is one payload
    octet per character time (10 473 B/s at 115200 8E1); the mailbox protocol costs one
    transaction per 128-octet chunk plus a status read every 16 chunks (v1: four
    transactions per chunk, ~26 %)."""
    image = payload(16 * 1024)
    report = rig.flash(image)
    wire_bound = 1 / BYTE_S
    fraction = report.throughput / wire_bound
    print(f"\nflash 16 KiB @115200 8E1: {report.throughput:.0f} B/s in {report.elapsed_s:.2f} s "
          f"bus time = {fraction:.1%} of the wire bound ({wire_bound:.0f} B/s)")
    assert rig.staged(len(image)) == image
    assert 0.45 < fraction < 0.7  # one 157-character exchange + turnarounds per chunk: ~55 %
    v1 = cpython_rig().flash(image, one_write=False, status_every=1)
    assert report.throughput > 1.8 * v1.throughput


# ---------------------------------------------------------------- the VM
@pytest.mark.slow
@pytest.mark.vm
@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node >= 20")
def test_flash_into_the_micropython_vm() -> None:
    from rackhil.mcu import McuProcess, VmNode

    bus = Bus(seed=3)
    with McuProcess() as mcu:
        node = bus.attach(VmNode.emulated(mcu, "shelf", {"board": "power_shelf", "unit_id": UNIT}))
        rig = Rig(node, bus)
        image = payload(3000)
        report = rig.flash(image, session=0x0BEE)
        assert rig.staged(len(image)) == image
        assert rig.master.read(UNIT, "update_state") == "ready"
        assert rig.update_events() == [(1, 0x0BEE), (3, 0x0BEE)]
        assert report.chunk_retries == 0


# ---------------------------------------------------------------- the CLI over a pty
@pytest.fixture
def pty_board() -> Iterator[tuple[str, CPythonNode]]:
    from rackhil.pty_port import PtyPort, RealTimeRunner

    bus = Bus(seed=5)
    node = bus.attach(CPythonNode("shelf", {"board": "power_shelf", "unit_id": UNIT}))
    pty = PtyPort(bus)
    with RealTimeRunner(bus):
        yield pty.path, node
    pty.close()


def flash_cli(port: str, *args: str, input: str | None = None):
    return CliRunner().invoke(
        cli, ["flash", "--port", port, "--parity", "N", "--timeout", "0.3", "--device", "1", *args],
        input=input, catch_exceptions=False)


def test_cli_flashes_over_a_pty(pty_board: tuple[str, CPythonNode], tmp_path: Path) -> None:
    port, node = pty_board
    image = fwimage.build({"main.py": payload(2500), "lib/x.py": b"X = 1\n"}, "power_shelf", "1.1")
    (tmp_path / "power_shelf.rfw").write_bytes(image)
    r = flash_cli(port, "--yes", str(tmp_path))  # a directory: the board's type picks the file
    assert r.exit_code == 0, r.output
    assert f"unit 1: {len(image)} octets staged and verified (state ready)" in r.output
    assert node.read_flash()[STAGE : STAGE + len(image)] == image


def test_cli_refuses_an_image_for_another_board(pty_board: tuple[str, CPythonNode],
                                                tmp_path: Path) -> None:
    port, node = pty_board
    path = tmp_path / "cdu.rfw"
    path.write_bytes(fwimage.build({"main.py": b"pass\n"}, "cdu", "1.0"))
    r = flash_cli(port, "--yes", str(path))
    assert r.exit_code == 1
    assert "image is for a cdu board but unit 1 is power_shelf" in r.output
    assert node.read_flash()[STAGE : STAGE + 4] == b"\xff" * 4  # nothing written


def test_cli_rejects_a_damaged_image(pty_board: tuple[str, CPythonNode], tmp_path: Path) -> None:
    port, _node = pty_board
    image = bytearray(fwimage.build({"main.py": b"pass\n"}, "power_shelf", "1.0"))
    image[-1] ^= 0xFF
    path = tmp_path / "x.rfw"
    path.write_bytes(bytes(image))
    r = flash_cli(port, "--yes", str(path))
    assert r.exit_code == 1
    assert "bad firmware image" in r.output and "SHA-256" in r.output


def test_cli_confirmation(pty_board: tuple[str, CPythonNode], tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    port, node = pty_board
    path = tmp_path / "p.rfw"
    path.write_bytes(fwimage.build({"main.py": b"pass\n"}, "power_shelf", "1.0"))
    r = flash_cli(port, str(path))  # no terminal, no --yes
    assert r.exit_code == 6 and "--yes" in r.output
    monkeypatch.setattr("rackctl.cli.flash.stdin_is_tty", lambda: True)
    r = flash_cli(port, str(path), input="n\n")
    assert r.exit_code == 6 and "not flashed" in r.output
    assert node.read_flash()[STAGE : STAGE + 4] == b"\xff" * 4


def test_cli_refuses_a_bad_image_file_before_opening_the_port(tmp_path: Path) -> None:
    path = tmp_path / "x.rfw"
    path.write_bytes(b"not an image at all, just text" * 3)
    r = CliRunner().invoke(cli, ["flash", "--port", str(tmp_path / "no-such-tty"), "--device", "1",
                                 "--yes", str(path)])
    assert r.exit_code == 1, r.output
    assert "bad firmware image: not a rackctl firmware image" in r.output


def test_cli_usage_errors(tmp_path: Path) -> None:
    r = CliRunner().invoke(cli, ["flash", "--port", "/dev/null", "--device", "1", "--yes"])
    assert r.exit_code == 2 and "IMAGE_OR_DIR or --build-from" in r.output
    os.makedirs(tmp_path / "fw")
    r = CliRunner().invoke(cli, ["flash", "--port", "/dev/null", "--device", "1", "--yes",
                                 "--build-from", str(tmp_path / "fw"), str(tmp_path)])
    assert r.exit_code == 2


def test_cli_load_image_from_dir_and_tree(tmp_path: Path) -> None:
    from rackctl.cli.common import CliError
    from rackctl.cli.flash import load_image

    with pytest.raises(CliError, match=r"no power_shelf.rfw for this board \(found: none\)"):
        load_image(tmp_path, None, "power_shelf")
    root = Path(__file__).resolve().parents[2]
    data, info = load_image(None, root / "firmware", "cdu")
    assert info.board_type == "cdu" and "lib/rackfw/cooling/app.py" in info.paths()
    assert fwimage.parse(data) == info


def test_cli_aborts_its_session_when_flashing_fails(rig: Rig, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A flash that fails half-way must not leave the board with an open session."""
    from rackctl.cli import common

    class Failing(AlwaysCorrupt):
        async def connect(self) -> None:
            pass

        def close(self) -> None:
            pass

    monkeypatch.setattr(common, "LINK_FACTORY", lambda bus: Failing(rig.master))
    path = tmp_path / "p.rfw"
    path.write_bytes(fwimage.build({"main.py": payload(600)}, "power_shelf", "1.0"))
    r = CliRunner().invoke(cli, ["flash", "--port", "sim", "--device", "1", "--yes", str(path)],
                           catch_exceptions=False)
    assert r.exit_code == 1, r.output
    assert "refused the chunk at offset 0" in r.output
    assert rig.master.read(UNIT, "update_state") == "idle"
    assert not rig.master.read(UNIT, "update_active")
    assert [code for code, _s in rig.update_events()] == [1, 4]  # begin, abort
