"""Boot loader: install the firmware image staged in flash, before the firmware is imported.

``rackfw.update`` receives an image (``.rfw``, see ``rackproto.fwimage``) over Modbus
into the flash staging area and says ``ready`` -- but that state is RAM and gone at
the reset that should put the image to use. So the board file calls
:func:`apply_staged` first thing at boot, *before* importing ``rackfw.board`` or an
application (a module already imported cannot be replaced in a running VM; this
module imports only builtins for that reason). It trusts nothing but the flash:

1. header: magic, CRC-16, format, board type, and room for the install marker and
   the commit record;
2. commit record (``rackfw.update``): programmed by the mailbox only after the host's
   ``commit`` and the image CRC-16 over the staged flash passed -- "the host said go".
   Without it nothing is installed, even a complete image whose SHA-256 matches (the
   host may have died between the last chunk and ``commit``);
3. payload: streamed through SHA-256 in ``_CHUNK``-octet reads (no big buffer: an
   RP2040 has 264 KiB of RAM, the image may be 200 KiB), compared with the header;
4. file records: every path and length checked before a single file is touched;
5. install: each file whose size or contents differ from what is on the filesystem
   is written (``<path>.new``, then renamed over the old one); an unchanged file is
   not rewritten -- mpremote's "copy only what changed", with a chunked compare
   instead of a hash because both sides are local (a hash reads the same octets
   and does more work);
6. marker: a 16-octet record ``RFWA`` + the first 12 octets of the SHA-256, written
   after the image (16-aligned) once every file is in place.

A corrupt, incomplete or uncommitted image (flipped bit, torn transfer, wrong board,
no commit) stops at 1-4 with nothing written, so the board boots what it had and
reports why. The loader never erases flash: ``begin`` erased the marker slot along
with the image (the mailbox erases every sector the image, marker and commit record
touch), so the marker is only ever programmed.

Why the image is kept after installing (A/B-like semantics): the staging area stays
the *active slot*. On the RP2040 the filesystem persists, so later boots find the
marker, re-verify the image and write nothing (``S_ACTIVE``). In the software rack
the VM's filesystem is reloaded from the factory files at every boot (slot A, like a
ROM), so every boot re-applies the active slot (slot B) -- the changed files only --
and reports ``S_ACTIVE``; only the first boot after a transfer reports
``S_INSTALLED`` (reset cause ``update``). A power loss in the middle of an install
leaves no marker, so the next boot simply installs again (files already written are
skipped). A new transfer erases the slot (``begin``), which in the VM means the
factory firmware until the new image is complete.

Status codes are ints (``S_*``): 0 no image, 1 installed now, 2 active (installed
earlier), >= 3 refused (:func:`failed`); :func:`report` puts the outcome in the event
log and the update status registers once the Board exists.
"""

import hashlib
import os
import struct

from micropython import const

STAGING_BASE = const(0x6000)  # rackfw.board.UPDATE_BASE
SECTOR = const(4096)
HEADER_SIZE = const(56)
FORMAT_VERSION = const(1)
MARKER_SIZE = const(16)  # the install marker; the commit record follows it (same size)
RESET_UPDATE = const(5)  # the common map's reset_cause enum: update

S_NONE = const(0)  # staging area erased: nothing staged
S_INSTALLED = const(1)  # verified and installed at this boot (first boot after a transfer)
S_ACTIVE = const(2)  # installed at an earlier boot; re-verified, changed files re-applied
S_BAD_HEADER = const(3)  # header damaged (magic, CRC, format) or torn first chunk
S_WRONG_BOARD = const(4)  # image built for another board type
S_TOO_LARGE = const(5)  # image (plus its install marker) does not fit the flash
S_BAD_DIGEST = const(6)  # payload does not match its SHA-256: incomplete or damaged
S_BAD_LAYOUT = const(7)  # file records malformed (bad path, lengths past the payload)
S_WRITE_FAILED = const(8)  # filesystem error while installing (retried at the next boot)
S_UNCOMMITTED = const(9)  # no valid commit record: transferred (maybe) but never committed

# EV_UPDATE codes added by the boot loader (rackfw.update uses 1 begin, 3 commit, 4 abort)
EVU_INSTALLED = const(5)  # value: installed firmware version (major << 8 | minor)
EVU_REFUSED = const(6)  # value: the S_* status

# update_state / update_result enum values (common map) for a refused image
_ST_FAILED = const(4)
_RES_IMAGE_CRC = const(4)
_RES_FLASH_ERROR = const(5)
_RES_TOO_LARGE = const(6)

_CHUNK = const(256)
_CRC_SPAN = const(52)
_MAX_PATH = const(255)
_HEADER = "<4sHHHBBHHI32sHH"
_MAGIC = b"RFWI"
_MARK = b"RFWA"
_COMMIT = b"RFWC"


def failed(status):
    """True when ``status`` means the staged image was refused."""
    return status >= S_BAD_HEADER


def _crc16(buf, n):
    """CRC-16/MODBUS, bitwise (runs once per boot over 52 octets: no table needed)."""
    crc = 0xFFFF
    for i in range(n):
        crc ^= buf[i]
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _digest(flash, off, n, buf):
    h = hashlib.sha256()
    mv = memoryview(buf)
    while n > 0:
        k = n if n < _CHUNK else _CHUNK
        flash.read(off, buf, k)
        h.update(buf if k == _CHUNK else mv[:k])
        off += k
        n -= k
    return h.digest()


def _path_ok(p):
    if not p or p[0] == "/" or "\\" in p or "\x00" in p:
        return False
    for part in p.split("/"):
        if part == "" or part == "." or part == "..":
            return False
    return True


def _records(flash, off, size, count, buf):
    """Yield (path, data offset, data length) per file record; None marks bad layout."""
    end = off + size
    for _ in range(count):
        if off + 2 > end:
            yield None
            return
        flash.read(off, buf, 2)
        plen = buf[0] | (buf[1] << 8)
        off += 2
        if plen == 0 or plen > _MAX_PATH or off + plen + 4 > end:
            yield None
            return
        flash.read(off, buf, plen)
        try:
            path = str(buf[:plen], "utf-8")
        except UnicodeError:
            yield None
            return
        off += plen
        flash.read(off, buf, 4)
        dlen = struct.unpack_from("<I", buf, 0)[0]
        off += 4
        if off + dlen > end or not _path_ok(path):
            yield None
            return
        yield path, off, dlen
        off += dlen
    if off != end:
        yield None


def _layout_ok(flash, off, size, count, root, buf):
    """Every record well formed, and no two files for one module on the board (``x.py``
    and ``lib/x.py`` under root ``/lib``; ``x.py`` and ``x.mpy``): such an image would
    install differently depending on its order, so it is refused as a whole."""
    seen = set()
    for rec in _records(flash, off, size, count, buf):
        if rec is None:
            return False
        key = dest_path(rec[0], root)
        if key.endswith(".mpy"):
            key = key[:-4] + ".py"
        if key in seen:
            return False
        seen.add(key)
    return True


def dest_path(path, root):
    """Where an image path lives on the board: ``lib/...`` at ``/lib/...``, the board
    directory's files (``main.py``, its HAL) under ``root``."""
    if path.startswith("lib/"):
        return "/" + path
    return root.rstrip("/") + "/" + path


def _size(path):
    try:
        return os.stat(path)[6]
    except OSError:
        return -1


def _same(flash, off, n, path, buf, fbuf):
    """True when the file at ``path`` holds exactly the ``n`` flash octets at ``off``."""
    if _size(path) != n:
        return False
    with open(path, "rb") as f:
        while n > 0:
            k = n if n < _CHUNK else _CHUNK
            flash.read(off, buf, k)
            if f.readinto(fbuf) != k:
                return False
            if k == _CHUNK:
                if buf != fbuf:
                    return False
            else:
                for i in range(k):
                    if buf[i] != fbuf[i]:
                        return False
            off += k
            n -= k
    return True


def _makedirs(path):
    i = path.find("/", 1)
    while i > 0:
        try:
            os.mkdir(path[:i])
        except OSError:
            pass  # exists (or cannot be made: the open below reports it)
        i = path.find("/", i + 1)


def _write(flash, off, n, path, buf):
    tmp = path + ".new"
    mv = memoryview(buf)
    try:
        f = open(tmp, "wb")
    except OSError:  # a new directory (mkdir only then: a failed mkdir costs an exception)
        _makedirs(path)
        f = open(tmp, "wb")
    with f:
        while n > 0:
            k = n if n < _CHUNK else _CHUNK
            flash.read(off, buf, k)
            f.write(buf if k == _CHUNK else mv[:k])
            off += k
            n -= k
    try:
        os.rename(tmp, path)
    except OSError:  # a filesystem whose rename does not replace
        os.remove(path)
        os.rename(tmp, path)


def _drop_shadow(path):
    """MicroPython imports ``x.py`` before ``x.mpy``: installing one removes the other."""
    if path.endswith(".mpy"):
        other = path[:-4] + ".py"
    elif path.endswith(".py"):
        other = path[:-3] + ".mpy"
    else:
        return
    if _size(other) >= 0:
        os.remove(other)


def _install(flash, off, size, count, root, buf):
    fbuf = bytearray(_CHUNK)
    written = 0
    for path, doff, dlen in _records(flash, off, size, count, buf):
        dest = dest_path(path, root)
        if not _same(flash, doff, dlen, dest, buf, fbuf):
            _write(flash, doff, dlen, dest, buf)
            _drop_shadow(dest)  # an unchanged file had its twin removed when written
            written += 1
    return written


def _marker_state(flash, at, digest, buf):
    """1: our marker is there; 0: programmable to it; -1: holds other data."""
    flash.read(at, buf, MARKER_SIZE)
    ok = True
    for i in range(MARKER_SIZE):
        want = _MARK[i] if i < 4 else digest[i - 4]
        if buf[i] != want:
            ok = False
            if buf[i] & want != want:  # NOR flash can only clear bits
                return -1
    return 1 if ok else 0


def _mark(flash, at, digest, buf):
    """Program the install marker; False when its slot holds other data (not erased by
    ``begin``: staged by an older mailbox, or failing flash). The loader does not erase
    -- the slot's sector holds the commit record -- so such an image stays unmarked and
    is installed (skipping unchanged files) again at the next boot."""
    if _marker_state(flash, at, digest, buf) < 0:
        return False
    for i in range(MARKER_SIZE):
        buf[i] = _MARK[i] if i < 4 else digest[i - 4]
    flash.write(at, buf, MARKER_SIZE)
    return True


def _committed(flash, at, image_size, buf):
    """True when the commit record at ``at`` is whole and names an image of
    ``image_size`` octets: magic, size, zero padding and its own CRC-16 (a torn record
    write leaves erased octets that fail one of them). ``begin`` erased the record's
    place, so a record left by an earlier image is never found here."""
    flash.read(at, buf, MARKER_SIZE)
    if (buf[0] != _COMMIT[0] or buf[1] != _COMMIT[1] or buf[2] != _COMMIT[2]
            or buf[3] != _COMMIT[3]):
        return False
    if (buf[4] << 24 | buf[5] << 16 | buf[6] << 8 | buf[7]) != image_size:
        return False
    if buf[10] | buf[11] | buf[12] | buf[13]:
        return False
    return _crc16(buf, 14) == (buf[14] << 8 | buf[15])


def apply_staged(flash, board_type, root="/lib", base=STAGING_BASE, stats=None, resync=True):
    """Install the image staged at ``base`` in ``flash`` (the flash HAL); an ``S_*`` status.

    ``board_type``: the common map's code (1 power_shelf, 2 cdu); an image for another
    board is refused. ``root``: where the board directory's files go (``/lib`` on the
    emulated board, ``/`` on a Pico). ``stats``, a list of 2, receives (files
    written, files in the image) for diagnostics and measurements. ``resync=False``
    (a board whose filesystem persists) returns ``S_ACTIVE`` at once when the image is
    marked installed, skipping the SHA-256 and the file compare; the emulated board
    keeps the default, since its filesystem is the factory one at every boot.
    """
    buf = bytearray(_CHUNK)
    end = flash.size()
    if base + HEADER_SIZE > end:
        return S_NONE
    flash.read(base, buf, HEADER_SIZE)
    if buf[0] == 0xFF and buf[1] == 0xFF and buf[2] == 0xFF and buf[3] == 0xFF:
        return S_NONE
    (magic, fmt, hsize, code, _major, _minor, count, _flags, psize, digest, hcrc,
     pad) = struct.unpack_from(_HEADER, buf, 0)
    if (magic != _MAGIC or _crc16(buf, _CRC_SPAN) != hcrc or fmt != FORMAT_VERSION
            or hsize != HEADER_SIZE or pad != 0):
        return S_BAD_HEADER
    if code != board_type:
        return S_WRONG_BOARD
    body = base + HEADER_SIZE
    at = base + ((HEADER_SIZE + psize + MARKER_SIZE - 1) & ~(MARKER_SIZE - 1))
    if psize > end or at + 2 * MARKER_SIZE > end:
        return S_TOO_LARGE
    if not resync and _marker_state(flash, at, digest, buf) == 1:
        return S_ACTIVE
    if not _committed(flash, at + MARKER_SIZE, HEADER_SIZE + psize, buf):
        return S_UNCOMMITTED
    if _digest(flash, body, psize, buf) != digest:
        return S_BAD_DIGEST
    if not _layout_ok(flash, body, psize, count, root, buf):
        return S_BAD_LAYOUT
    installed = _marker_state(flash, at, digest, buf) == 1
    try:
        written = _install(flash, body, psize, count, root, buf)
    except OSError:
        return S_WRITE_FAILED
    if stats is not None:
        stats[0] = written
        stats[1] = count
    if installed:
        return S_ACTIVE
    _mark(flash, at, digest, buf)
    return S_INSTALLED


def report(board, status):
    """Tell the host what the boot loader did, once the Board (event log, registers) exists.

    Installed: ``EV_UPDATE(EVU_INSTALLED, firmware version)`` (the board also reports
    reset cause ``update``, passed by the board file). Refused: ``EV_UPDATE(EVU_REFUSED,
    status)`` and ``update_state = failed`` with ``update_result`` image_crc (damaged,
    incomplete, uncommitted, wrong board), too_large or flash_error, until the next
    mailbox command.
    """
    from rackfw.events import EV_UPDATE  # imported after the install, like the Board

    if status == S_INSTALLED:
        from rackfw.version import FW_VERSION

        board.events.log(EV_UPDATE, EVU_INSTALLED, FW_VERSION)
    elif failed(status):
        board.events.log(EV_UPDATE, EVU_REFUSED, status)
        if status == S_TOO_LARGE:
            result = _RES_TOO_LARGE
        elif status == S_WRITE_FAILED:
            result = _RES_FLASH_ERROR
        else:
            result = _RES_IMAGE_CRC
        r = board.regs
        board.update.state = _ST_FAILED
        board.bank.ir[r.UPDATE_STATE] = _ST_FAILED
        board.bank.ir[r.UPDATE_RESULT] = result
