"""Firmware-update mailbox over Modbus: staging, CRC checks, sessions, busy (06)."""

from __future__ import annotations

import os

import modbus_client as mb
import pytest
from conftest import UNIT, cpython_bus
from fwsim import FakeFlash

from rackfw import regs_power_shelf as R
from rackfw.board import UPDATE_BASE
from rackfw.unlock import KEY, KEY_COMPLEMENT
from rackproto import fwimage
from rackproto.crc import crc16

SESSION = 0x4242


def ok(reply, fc=None):
    assert reply is not None
    pdu = mb.body(reply)
    assert not pdu[0] & 0x80, f"exception {pdu[1]}"
    return pdu


def status(bus):
    st, res, hi, lo = mb.words(bus.transact(mb.read_req(UNIT, 4, R.UPDATE_STATE, 4)))
    return st, res, (hi << 16) | lo


def command(bus, cmd, session=SESSION):
    ok(bus.transact(mb.write_single(UNIT, 6, R.UPDATE_SESSION, session)))
    for _ in range(100):  # retry while the board answers 06 (busy)
        r = bus.transact(mb.write_single(UNIT, 6, R.UPDATE_COMMAND, cmd))
        if mb.exception_code(r, 6) != 6:
            ok(r)
            return
        bus.idle(2000)
    raise AssertionError("board stayed busy")


def wait_idle(bus):
    for _ in range(1000):
        st, res, nxt = status(bus)
        if st != 2:  # verifying
            return st, res, nxt
        bus.idle(5000)
    raise AssertionError("verify never finished")


def _words(data):
    return [int.from_bytes(data[i : i + 2].ljust(2, b"\0"), "big") for i in range(0, len(data), 2)]


def chunk(bus, offset, data, crc=None):
    """The explicit way: header, window, then ``write_chunk`` on its own."""
    hdr = [SESSION, offset >> 16, offset & 0xFFFF, len(data), crc16(data) if crc is None else crc]
    ok(bus.transact(mb.write_regs_req(UNIT, R.UPDATE_SESSION, hdr)))
    ok(bus.transact(mb.write_regs_req(UNIT, R.UPDATE_CHUNK, _words(data))))
    command(bus, 2)


def frame(offset, data, crc=None, cmd=2, session=SESSION):
    """One chunk as one FC 16: update_session .. update_command (window zero-padded)."""
    window = _words(data) + [0] * (R.UPDATE_CHUNK_WORDS - (len(data) + 1) // 2)
    return [session, offset >> 16, offset & 0xFFFF, len(data),
            crc16(data) if crc is None else crc, *window, cmd]


def one_write(bus, offset, data, **kw):
    """Send a chunk frame, retrying while the board answers 06 (still programming)."""
    for _ in range(100):
        r = bus.transact(mb.write_regs_req(UNIT, R.UPDATE_SESSION, frame(offset, data, **kw)))
        if mb.exception_code(r, 16) != 6:
            return r
        bus.idle(1000)
    raise AssertionError("board stayed busy")


def commit(bus, image):
    ok(bus.transact(mb.write_single(UNIT, 6, R.UPDATE_IMAGE_CRC, crc16(image))))
    command(bus, 3)
    return wait_idle(bus)


@pytest.fixture
def bus():
    b = cpython_bus(flash=FakeFlash(64 * 1024))
    b.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY))
    ok(b.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY_COMPLEMENT)))
    return b


def begin(bus, size):
    ok(bus.transact(mb.write_regs_req(UNIT, R.UPDATE_IMAGE_SIZE, [size >> 16, size & 0xFFFF])))
    command(bus, 1)


def test_idle_at_boot_and_command_needs_unlock():
    b = cpython_bus()
    assert status(b) == (0, 0, 0)
    assert mb.exception_code(b.transact(mb.write_single(UNIT, 6, R.UPDATE_COMMAND, 1)), 6) == 4


def test_full_update_stages_and_verifies_image(bus):
    image = os.urandom(1000)
    begin(bus, len(image))
    assert status(bus)[0] == 1
    for off in range(0, len(image), 128):
        chunk(bus, off, image[off : off + 128])
        assert status(bus)[1:] == (0, min(off + 128, len(image)))
    ok(bus.transact(mb.write_single(UNIT, 6, R.UPDATE_IMAGE_CRC, crc16(image))))
    command(bus, 3)
    assert wait_idle(bus)[:2] == (3, 0)  # ready, ok
    flash = bus.sim.flash
    assert bytes(flash.mem[UPDATE_BASE : UPDATE_BASE + len(image)]) == image
    di = mb.bits(bus.transact(mb.read_req(UNIT, 2, 0, 3)), 3)
    assert di[2] == 1  # update_active


def test_chunk_errors_are_reported_not_applied(bus):
    image = bytes(range(256)) * 2
    begin(bus, len(image))
    chunk(bus, 0, image[:128], crc=0x1234)
    assert status(bus)[1:] == (3, 0)  # chunk_crc, nothing taken
    chunk(bus, 128, image[128:256])
    assert status(bus)[1:] == (2, 0)  # bad_offset
    chunk(bus, 0, image[:128])
    assert status(bus)[1:] == (0, 128)
    command(bus, 2, session=SESSION + 1)
    assert status(bus)[1] == 1  # bad_session
    command(bus, 3)  # commit before the image is complete
    assert status(bus)[1] == 2


def test_bad_image_crc_fails(bus):
    image = b"\x01\x02\x03\x04"
    begin(bus, len(image))
    chunk(bus, 0, image)
    ok(bus.transact(mb.write_single(UNIT, 6, R.UPDATE_IMAGE_CRC, crc16(image) ^ 1)))
    command(bus, 3)
    assert wait_idle(bus)[:2] == (4, 4)  # failed, image_crc
    command(bus, 4)  # abort
    assert status(bus) == (0, 0, 0)


def test_image_larger_than_staging_is_refused(bus):
    begin(bus, 64 * 1024)
    assert status(bus)[:2] == (4, 6)  # failed, too_large


def test_writes_get_busy_06_while_staging_is_erased():
    bus = cpython_bus(flash=FakeFlash(256 * 1024))
    bus.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY))
    ok(bus.transact(mb.write_single(UNIT, 6, R.UNLOCK_KEY, KEY_COMPLEMENT)))
    size = 200 * 1024  # 50 sectors, one erased per 1 ms housekeeping slice
    ok(bus.transact(mb.write_regs_req(UNIT, R.UPDATE_IMAGE_SIZE, [size >> 16, size & 0xFFFF])))
    ok(bus.transact(mb.write_single(UNIT, 6, R.UPDATE_SESSION, SESSION)))
    ok(bus.transact(mb.write_single(UNIT, 6, R.UPDATE_COMMAND, 1)))
    r = bus.transact(mb.write_single(UNIT, 6, R.VOUT_SETPOINT, R.HR_MIN[R.VOUT_SETPOINT]))
    assert mb.exception_code(r, 6) == 6
    assert mb.words(bus.transact(mb.read_req(UNIT, 4, R.UPDATE_STATE, 1))) == [1]  # reads work
    bus.idle(100_000)
    r = bus.transact(mb.write_single(UNIT, 6, R.VOUT_SETPOINT, R.HR_MIN[R.VOUT_SETPOINT]))
    assert mb.exception_code(r, 6) is None


def test_abort_erases_the_staged_header_so_the_boot_loader_cannot_install_it(bus):
    """Every chunk received, then abort: the image must not survive to the next boot."""
    image = os.urandom(600)
    begin(bus, len(image))
    for off in range(0, len(image), 128):
        chunk(bus, off, image[off : off + 128])
    flash = bus.sim.flash
    assert bytes(flash.mem[UPDATE_BASE : UPDATE_BASE + len(image)]) == image
    command(bus, 4)  # abort (retried while the header sector is being erased)
    bus.idle(10_000)
    assert status(bus) == (0, 0, 0)
    assert bytes(flash.mem[UPDATE_BASE : UPDATE_BASE + len(image)]) == b"\xff" * len(image)


# ---------------------------------------------------------------- v2: one write per chunk
def test_chunk_frame_is_contiguous_in_the_map():
    """session, offset, length, chunk CRC, window, command: one FC 16 (<= 123 registers)."""
    assert R.UPDATE_OFFSET == R.UPDATE_SESSION + 1
    assert R.UPDATE_LENGTH == R.UPDATE_SESSION + 3
    assert R.UPDATE_CHUNK_CRC == R.UPDATE_SESSION + 4
    assert R.UPDATE_CHUNK == R.UPDATE_SESSION + 5
    assert R.UPDATE_COMMAND == R.UPDATE_CHUNK + R.UPDATE_CHUNK_WORDS
    assert len(frame(0, b"x")) == R.UPDATE_COMMAND - R.UPDATE_SESSION + 1 <= 123


def test_one_write_per_chunk_stages_and_commits(bus):
    image = os.urandom(1000)
    begin(bus, len(image))
    for off in range(0, len(image), 128):
        ok(one_write(bus, off, image[off : off + 128]))
    bus.idle(2000)
    assert status(bus) == (1, 0, len(image))
    assert commit(bus, image)[:2] == (3, 0)  # ready, ok
    mem = bus.sim.flash.mem
    assert bytes(mem[UPDATE_BASE : UPDATE_BASE + len(image)]) == image
    at = UPDATE_BASE + fwimage.commit_offset(len(image))
    assert bytes(mem[at : at + 16]) == fwimage.commit_record(len(image), crc16(image))
    assert fwimage.is_commit_record(mem[at : at + 16], len(image))


def test_one_write_chunk_is_checked_like_an_explicit_one(bus):
    image = bytes(range(256))
    begin(bus, len(image))
    ok(one_write(bus, 0, image[:128], crc=0x1234))
    assert status(bus)[1:] == (3, 0)  # chunk_crc, nothing taken
    ok(one_write(bus, 128, image[128:]))
    assert status(bus)[1:] == (2, 0)  # bad_offset: chunks land in order only
    ok(one_write(bus, 0, image[:128]))
    ok(one_write(bus, 0, image[:128]))  # a link retry of an executed frame
    bus.idle(2000)
    assert status(bus)[1:] == (2, 128)  # refused, and next_offset did not move
    ok(one_write(bus, 128, image[128:], session=SESSION + 1))
    assert status(bus)[1:] == (1, 128)  # bad_session
    chunk(bus, 128, image[128:])  # the explicit command still works, mixed in
    assert status(bus)[1:] == (0, 256)


def test_one_write_chunk_needs_the_unlock_as_a_whole():
    b = cpython_bus(flash=FakeFlash(64 * 1024))
    r = b.transact(mb.write_regs_req(UNIT, R.UPDATE_SESSION, frame(0, b"abc")))
    assert mb.exception_code(r, 16) == 4  # the command register is protected
    words = mb.words(b.transact(mb.read_req(UNIT, 3, R.UPDATE_SESSION, 5)))
    assert words == [0] * 5  # all or nothing: the header was not stored either


def test_begin_erases_the_sectors_of_marker_and_commit_record(bus):
    """An image of exactly one sector: its marker and commit record open the next
    sector, which begin must erase too (NOR: the record is only programmed)."""
    mem = bus.sim.flash.mem
    mem[UPDATE_BASE : UPDATE_BASE + 3 * 4096] = b"\x00" * (3 * 4096)  # an older image
    image = os.urandom(4096)
    begin(bus, len(image))
    bus.idle(10_000)
    assert bytes(mem[UPDATE_BASE : UPDATE_BASE + 2 * 4096]) == b"\xff" * (2 * 4096)
    assert bytes(mem[UPDATE_BASE + 2 * 4096 : UPDATE_BASE + 3 * 4096]) == b"\x00" * 4096
    for off in range(0, len(image), 128):
        ok(one_write(bus, off, image[off : off + 128]))
    assert commit(bus, image)[:2] == (3, 0)
    assert bytes(mem[UPDATE_BASE + 4096 : UPDATE_BASE + 4112]) == b"\xff" * 16  # marker slot
    assert bytes(mem[UPDATE_BASE + 4112 : UPDATE_BASE + 4128]) == fwimage.commit_record(
        4096, crc16(image))


def test_no_commit_record_without_a_good_commit(bus):
    image = os.urandom(300)
    begin(bus, len(image))
    for off in range(0, len(image), 128):
        ok(one_write(bus, off, image[off : off + 128]))
    at = UPDATE_BASE + fwimage.commit_offset(len(image))
    mem = bus.sim.flash.mem
    assert bytes(mem[at : at + 16]) == b"\xff" * 16  # all chunks in: still uncommitted
    ok(bus.transact(mb.write_single(UNIT, 6, R.UPDATE_IMAGE_CRC, crc16(image) ^ 1)))
    command(bus, 3)
    assert wait_idle(bus)[:2] == (4, 4)  # failed, image_crc
    assert bytes(mem[at : at + 16]) == b"\xff" * 16


def test_a_record_the_flash_does_not_take_fails_the_commit(bus):
    image = os.urandom(200)
    begin(bus, len(image))
    for off in range(0, len(image), 128):
        ok(one_write(bus, off, image[off : off + 128]))
    at = UPDATE_BASE + fwimage.commit_offset(len(image))
    bus.sim.flash.mem[at] = 0x00  # a stuck cell where the record goes (magic "R")
    assert commit(bus, image)[:2] == (4, 5)  # failed, flash_error


def test_staging_capacity_counts_marker_and_commit_record(bus):
    capacity = 64 * 1024 - UPDATE_BASE
    begin(bus, capacity - 31)  # its marker and record would not fit
    assert status(bus)[:2] == (4, 6)  # failed, too_large
    begin(bus, capacity - 32)
    assert status(bus)[:2] == (1, 0)  # receiving


def test_abort_after_commit_erases_the_header(bus):
    image = os.urandom(256)
    begin(bus, len(image))
    for off in range(0, len(image), 128):
        ok(one_write(bus, off, image[off : off + 128]))
    assert commit(bus, image)[:2] == (3, 0)
    command(bus, 4)
    bus.idle(10_000)
    mem = bus.sim.flash.mem
    assert bytes(mem[UPDATE_BASE : UPDATE_BASE + 4096]) == b"\xff" * 4096  # image and record
    assert fwimage.read_staged(bytes(mem)) is None
