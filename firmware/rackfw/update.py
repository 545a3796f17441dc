"""Firmware-update mailbox: receive an image over Modbus into a flash staging area.

Protocol (registers in the common map's ``update`` / ``update_status`` blocks):
  begin        update_session, update_image_size  -> state receiving, staging erased
  write_chunk  update_offset (must equal update_next_offset), update_length (<= 128),
               update_chunk_crc (CRC-16/MODBUS of the octets), update_chunk window
  commit       update_image_crc (CRC-16/MODBUS of the whole image) -> state ready,
               commit record programmed
  abort        -> state idle
Every command must carry the session id given at begin; the outcome of each is in
``update_result``. ``update_command`` is protected (unlock first) and reads 0.
``update_command`` is the *last* register of the block, right after the chunk
window: a multiple write runs its registers in order, so one FC 16 from
``update_session`` to ``update_command`` stores a chunk and runs ``write_chunk`` on
it -- one transaction per chunk (docs/flashing.md).

Staging layout (offsets from ``base``; ``align16(n)`` rounds up to 16)::

    0                 the image (``size`` octets)
    align16(size)     16 octets: the boot loader's install marker (``rackfw.boot``)
    align16(size)+16  16 octets: the commit record, programmed by a successful commit:
                      b"RFWC", u32 size, u16 image CRC-16, 4 zero octets,
                      u16 CRC-16/MODBUS of octets 0..13 (all big-endian)

``begin`` erases every sector those three touch (and refuses a size whose three do
not fit), so the marker and the record are programmed into erased flash even when
the image ends on a sector boundary. The boot loader installs only an image whose
commit record is there: an image that was fully transferred but never committed
(the host died before ``commit``) is never installed.

Why a busy state: erasing and programming flash stalls an RP2040 for tens of
milliseconds per sector, so the work is done from the board's housekeeping,
one sector (or one chunk) per poll, while the bus is idle. Until it is done
every write is refused with exception 06 (server busy) and the host retries --
the Modbus way of saying "not now" without blocking the bus.

Applying a ready image (copying it over the running firmware's files) is the
board file's job (``Board(..., reset=...)`` / a boot loader); the core stages and
verifies it, logs ``EV_UPDATE`` and reports ``ready``.
"""

from micropython import const

from rackfw.crc import crc16
from rackfw.events import EV_UPDATE

SECTOR = const(4096)
CHUNK_MAX = const(128)
RECORD_SIZE = const(16)  # the install marker slot and the commit record, each

CMD_BEGIN = const(1)
CMD_WRITE_CHUNK = const(2)
CMD_COMMIT = const(3)
CMD_ABORT = const(4)

ST_IDLE = const(0)
ST_RECEIVING = const(1)
ST_VERIFYING = const(2)
ST_READY = const(3)
ST_FAILED = const(4)

RES_OK = const(0)
RES_BAD_SESSION = const(1)
RES_BAD_OFFSET = const(2)
RES_CHUNK_CRC = const(3)
RES_IMAGE_CRC = const(4)
RES_FLASH_ERROR = const(5)
RES_TOO_LARGE = const(6)

_NONE = const(0)
_ERASE = const(1)
_PROGRAM = const(2)
_VERIFY = const(3)

_COMMIT_MAGIC = b"RFWC"


def marker_offset(size):
    """Offset (from the staging base) of the install marker after a ``size``-octet image."""
    return (size + RECORD_SIZE - 1) & ~(RECORD_SIZE - 1)


def commit_offset(size):
    """Offset of the commit record: right after the install marker slot."""
    return marker_offset(size) + RECORD_SIZE


def staged_extent(size):
    """Octets of staging flash an image of ``size`` needs: image, marker, commit record."""
    return marker_offset(size) + 2 * RECORD_SIZE


def commit_record(buf, size, image_crc):
    """Fill ``buf[0:16]`` with the commit record for an image (see the module doc)."""
    for i in range(4):
        buf[i] = _COMMIT_MAGIC[i]
    buf[4] = (size >> 24) & 0xFF
    buf[5] = (size >> 16) & 0xFF
    buf[6] = (size >> 8) & 0xFF
    buf[7] = size & 0xFF
    buf[8] = (image_crc >> 8) & 0xFF
    buf[9] = image_crc & 0xFF
    for i in range(10, 14):
        buf[i] = 0
    c = crc16(buf, 0, 14)
    buf[14] = c >> 8
    buf[15] = c & 0xFF


class UpdateMailbox:
    def __init__(self, bank, regs, flash, base, capacity, events):
        self.bank = bank
        self.r = regs
        self.flash = flash
        self.base = base
        self.capacity = capacity
        self.events = events
        self.state = ST_IDLE
        self.session = 0
        self.size = 0
        self.next_offset = 0
        self._op = _NONE
        self._pos = 0  # progress of the pending operation (bytes)
        self._erase_end = 0  # an erase covers [0, _erase_end) of the staging area
        self._crc = 0xFFFF
        self._buf = bytearray(CHUNK_MAX)
        self._rec = bytearray(RECORD_SIZE)
        self._len = 0
        self._publish(RES_OK)

    def busy(self):
        return self._op != _NONE

    def _publish(self, result):
        r = self.r
        ir = self.bank.ir
        ir[r.UPDATE_STATE] = self.state
        ir[r.UPDATE_RESULT] = result
        ir[r.UPDATE_NEXT_OFFSET] = (self.next_offset >> 16) & 0xFFFF
        ir[r.UPDATE_NEXT_OFFSET + 1] = self.next_offset & 0xFFFF
        if self.bank.di_size > r.UPDATE_ACTIVE:
            self.bank.di[r.UPDATE_ACTIVE] = 1 if self.state != ST_IDLE else 0

    def command(self, cmd):
        """Run an (already range/unlock-checked) update command; the result goes to registers."""
        r = self.r
        hr = self.bank.hr
        if cmd == CMD_BEGIN:
            size = (hr[r.UPDATE_IMAGE_SIZE] << 16) | hr[r.UPDATE_IMAGE_SIZE + 1]
            if size == 0 or staged_extent(size) > self.capacity:
                self.state = ST_FAILED
                self._publish(RES_TOO_LARGE)
                return
            self.session = hr[r.UPDATE_SESSION]
            self.size = size
            self.next_offset = 0
            self.state = ST_RECEIVING
            self._op = _ERASE
            self._pos = 0
            # every sector the image, its install marker and its commit record touch
            self._erase_end = staged_extent(size)
            self.events.log(EV_UPDATE, CMD_BEGIN, self.session)
            self._publish(RES_OK)
            return
        if cmd == CMD_ABORT:
            if self.state != ST_IDLE:
                self.events.log(EV_UPDATE, CMD_ABORT, self.session)
            self.state = ST_IDLE
            self.next_offset = 0
            # erase the sector holding the image header: an aborted image must not stay
            # readable (nor its commit record, if it was committed before the abort)
            if self.capacity >= SECTOR:  # (a board without a staging area has none)
                self._erase_end = SECTOR
                self._pos = 0
                self._op = _ERASE
            self._publish(RES_OK)
            return
        if self.state == ST_IDLE or hr[r.UPDATE_SESSION] != self.session:
            self._publish(RES_BAD_SESSION)
            return
        if cmd == CMD_WRITE_CHUNK:
            self._write_chunk(hr)
        elif cmd == CMD_COMMIT:
            if self.state != ST_RECEIVING or self.next_offset != self.size:
                self._publish(RES_BAD_OFFSET)
                return
            self.state = ST_VERIFYING
            self._op = _VERIFY
            self._pos = 0
            self._crc = 0xFFFF
            self._publish(RES_OK)

    def _write_chunk(self, hr):
        r = self.r
        if self.state != ST_RECEIVING:
            self._publish(RES_BAD_SESSION)
            return
        off = (hr[r.UPDATE_OFFSET] << 16) | hr[r.UPDATE_OFFSET + 1]
        n = hr[r.UPDATE_LENGTH]
        if off != self.next_offset or n == 0 or n > CHUNK_MAX:
            self._publish(RES_BAD_OFFSET)
            return
        if off + n > self.size:
            self._publish(RES_TOO_LARGE)
            return
        buf = self._buf
        w = r.UPDATE_CHUNK
        for i in range(n):
            v = hr[w + (i >> 1)]
            buf[i] = (v >> 8) if (i & 1) == 0 else (v & 0xFF)
        if crc16(buf, 0, n) != hr[r.UPDATE_CHUNK_CRC]:
            self._publish(RES_CHUNK_CRC)
            return
        self._len = n
        self._op = _PROGRAM
        self._publish(RES_OK)

    def service(self):
        """One slice of pending flash work (from housekeeping); True while more remains."""
        op = self._op
        if op == _ERASE:
            self.flash.erase(self.base + self._pos, SECTOR)
            self._pos += SECTOR
            if self._pos >= self._erase_end:
                self._op = _NONE
        elif op == _PROGRAM:
            self.flash.write(self.base + self.next_offset, self._buf, self._len)
            self.next_offset += self._len
            self._op = _NONE
            self._publish(RES_OK)
        elif op == _VERIFY:
            n = self.size - self._pos
            if n > CHUNK_MAX:
                n = CHUNK_MAX
            self.flash.read(self.base + self._pos, self._buf, n)
            self._crc = crc16(self._buf, 0, n, self._crc)
            self._pos += n
            if self._pos >= self.size:
                self._op = _NONE
                if self._crc != self.bank.hr[self.r.UPDATE_IMAGE_CRC]:
                    self.state = ST_FAILED
                    self._publish(RES_IMAGE_CRC)
                elif not self._write_record():
                    self.state = ST_FAILED
                    self._publish(RES_FLASH_ERROR)
                else:
                    self.state = ST_READY
                    self.events.log(EV_UPDATE, CMD_COMMIT, self.session)
                    self._publish(RES_OK)
        return self._op != _NONE

    def _write_record(self):
        """Program the commit record (the boot loader's "the host said go") and read it
        back: NOR flash that did not take it (worn, or not erased) fails the commit."""
        rec = self._rec
        commit_record(rec, self.size, self._crc)
        at = self.base + commit_offset(self.size)
        self.flash.write(at, rec, RECORD_SIZE)
        buf = self._buf
        self.flash.read(at, buf, RECORD_SIZE)
        for i in range(RECORD_SIZE):
            if buf[i] != rec[i]:
                return False
        return True
