"""The rackctl firmware image (``.rfw``): a small archive of firmware files with a header.

Why a format of our own rather than a tar or zip: the board (or its boot loader)
has to check and unpack the staged image in MicroPython with a few hundred bytes
of RAM, so the layout is fixed-width little-endian fields that ``struct.unpack_from``
reads in place, and nothing needs decompressing. The host refuses a bad image
*before* a single chunk goes on the bus, with a message that says what is wrong.

Layout (all integers little-endian)::

    header (HEADER_SIZE = 56 bytes)
      0  4s   magic  b"RFWI"
      4  u16  format version (FORMAT_VERSION)
      6  u16  header size (56 in format 1)
      8  u16  board type (the common map's ``board_type`` enum: 1 power_shelf, 2 cdu)
     10  u8   firmware major
     11  u8   firmware minor
     12  u16  file count
     14  u16  flags (0; reserved)
     16  u32  payload size (octets after the header)
     20  32s  SHA-256 of the payload
     52  u16  CRC-16/MODBUS of bytes 0..51 (catches a damaged header before the hash)
     54  u16  0 (padding to a 4-byte boundary; must be 0)
    payload: file count records, each
      u16 path length, path (UTF-8, relative, '/'-separated), u32 data length, data

The image as a whole is what the update mailbox carries; the board checks each
chunk's CRC-16 and the whole image's CRC-16 at commit, and whoever installs it
checks the SHA-256 here.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rackproto.crc import crc16
from rackproto.errors import FrameError

MAGIC = b"RFWI"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<4sHHHBBHHI32sHH")
HEADER_SIZE = _HEADER.size  # 56
_CRC_SPAN = 52  # header bytes covered by the header CRC
MAX_PATH = 255
MAX_FILES = 0xFFFF
MAX_PAYLOAD = 0xFFFFFFFF

#: board type codes, as the common register map's ``board_type`` enum numbers them
BOARD_TYPES: dict[str, int] = {"power_shelf": 1, "cdu": 2}


class ImageError(FrameError):
    """Bytes that are not a valid rackctl firmware image (the message says why)."""


class ImageDigestError(ImageError):
    """The payload does not match the SHA-256 in the header (damaged or truncated)."""


@dataclass(frozen=True)
class FirmwareFile:
    path: str
    data: bytes


@dataclass(frozen=True)
class FirmwareImage:
    """A parsed image; ``files`` keep the order they were built in."""

    board_type: str
    version: tuple[int, int]
    files: tuple[FirmwareFile, ...]
    sha256: bytes
    size: int  # whole image, header included
    format_version: int = FORMAT_VERSION

    @property
    def version_text(self) -> str:
        return f"{self.version[0]}.{self.version[1]}"

    @property
    def board_code(self) -> int:
        return BOARD_TYPES[self.board_type]

    @property
    def payload_size(self) -> int:
        return self.size - HEADER_SIZE

    def paths(self) -> list[str]:
        return [f.path for f in self.files]

    def file(self, path: str) -> bytes:
        for f in self.files:
            if f.path == path:
                return f.data
        raise KeyError(path)


def board_code(board_type: str | int) -> int:
    """The numeric board type for a name (or a code, checked)."""
    if isinstance(board_type, int):
        if board_type not in BOARD_TYPES.values():
            raise ImageError(f"unknown board type code {board_type}; known: {_known()}")
        return board_type
    try:
        return BOARD_TYPES[board_type]
    except KeyError:
        raise ImageError(f"unknown board type {board_type!r}; known: {_known()}") from None


def board_name(code: int) -> str:
    for name, value in BOARD_TYPES.items():
        if value == code:
            return name
    raise ImageError(f"unknown board type code {code} in image header; known: {_known()}")


def _known() -> str:
    return ", ".join(f"{n} ({c})" for n, c in BOARD_TYPES.items())


def check_path(path: str) -> bytes:
    """A file path as stored: relative, '/'-separated, no '..' or empty parts, ≤ 255 octets."""
    if not isinstance(path, str) or not path:
        raise ImageError(f"file path {path!r} must be a non-empty string")
    if path.startswith("/") or "\\" in path or "\x00" in path:
        raise ImageError(f"file path {path!r} must be relative and use '/' separators")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ImageError(f"file path {path!r} has an empty, '.' or '..' component")
    raw = path.encode("utf-8")
    if len(raw) > MAX_PATH:
        raise ImageError(f"file path {path[:40]!r}… is {len(raw)} octets; the limit is {MAX_PATH}")
    return raw


def _check_version(version: tuple[int, int] | str) -> tuple[int, int]:
    if isinstance(version, str):
        major_s, sep, minor_s = version.partition(".")
        if not sep or not major_s.isdigit() or not minor_s.isdigit():
            raise ImageError(f"firmware version {version!r} must look like 'major.minor'")
        version = (int(major_s), int(minor_s))
    major, minor = version
    if not (0 <= major <= 255 and 0 <= minor <= 255):
        raise ImageError(f"firmware version {major}.{minor}: each part must be 0..255")
    return major, minor


def build(
    files: Mapping[str, bytes] | Iterable[tuple[str, bytes]],
    board_type: str | int,
    version: tuple[int, int] | str,
) -> bytes:
    """The image bytes for ``files`` (path -> contents) for one board type and version."""
    items = list(files.items()) if isinstance(files, Mapping) else list(files)
    code = board_code(board_type)
    major, minor = _check_version(version)
    if len(items) > MAX_FILES:
        raise ImageError(f"{len(items)} files; an image holds at most {MAX_FILES}")
    seen: set[str] = set()
    payload = bytearray()
    for path, data in items:
        raw = check_path(path)
        if path in seen:
            raise ImageError(f"file path {path!r} appears twice")
        seen.add(path)
        data = bytes(data)
        payload += struct.pack("<H", len(raw)) + raw + struct.pack("<I", len(data)) + data
    if len(payload) > MAX_PAYLOAD:
        raise ImageError(f"payload of {len(payload)} octets does not fit a u32 size")
    digest = hashlib.sha256(payload).digest()
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, HEADER_SIZE, code, major, minor, len(items), 0,
                        len(payload), digest, 0, 0)
    head = head[:_CRC_SPAN] + struct.pack("<HH", crc16(head[:_CRC_SPAN]), 0)
    return head + bytes(payload)


def parse_header(image: bytes) -> tuple[int, int, int, int, int, int, int, bytes]:
    """Check the fixed header; returns (format, header size, board code, major, minor,
    file count, payload size, sha256). Raises :class:`ImageError` naming the problem."""
    if len(image) < HEADER_SIZE:
        raise ImageError(f"image is {len(image)} octets, shorter than its {HEADER_SIZE}-octet header")
    magic, fmt, hsize, code, major, minor, count, _flags, psize, digest, hcrc, pad = (
        _HEADER.unpack_from(image, 0))
    if magic != MAGIC:
        raise ImageError(f"not a rackctl firmware image (magic {magic!r}, expected {MAGIC!r})")
    if crc16(bytes(image[:_CRC_SPAN])) != hcrc:
        raise ImageError("image header is damaged (header CRC mismatch)")
    if fmt != FORMAT_VERSION:
        raise ImageError(f"image format version {fmt} is not supported (this rackctl reads "
                         f"{FORMAT_VERSION}); use a matching rackctl or rebuild the image")
    if hsize != HEADER_SIZE:  # format 1 has exactly this header; octets past it are unchecked
        raise ImageError(f"header size {hsize} is not {HEADER_SIZE} (format {FORMAT_VERSION})")
    if pad != 0:
        raise ImageError("image header padding (octets 54..55) is not zero")
    return fmt, hsize, code, major, minor, count, psize, digest


def parse(image: bytes | bytearray | memoryview) -> FirmwareImage:
    """Check and unpack an image; raises :class:`ImageError` (a ``FrameError``) when bad."""
    image = bytes(image)
    fmt, hsize, code, major, minor, count, psize, digest = parse_header(image)
    board = board_name(code)
    if len(image) != hsize + psize:
        raise ImageError(f"image is {len(image)} octets but its header says {hsize + psize} "
                         "(truncated or with trailing data)")
    payload = memoryview(image)[hsize:]
    if hashlib.sha256(payload).digest() != digest:
        raise ImageDigestError("image payload does not match its SHA-256 (damaged in transit "
                               "or on disk); rebuild or download it again")
    files: list[FirmwareFile] = []
    seen: set[str] = set()
    pos = 0
    for i in range(count):
        if pos + 2 > psize:
            raise ImageError(f"file record {i + 1} of {count} runs past the payload")
        (plen,) = struct.unpack_from("<H", payload, pos)
        pos += 2
        if pos + plen + 4 > psize:
            raise ImageError(f"file record {i + 1} of {count} runs past the payload")
        try:
            path = bytes(payload[pos : pos + plen]).decode("utf-8")
        except UnicodeDecodeError:
            raise ImageError(f"file record {i + 1}: path is not UTF-8") from None
        check_path(path)
        if path in seen:
            raise ImageError(f"file path {path!r} appears twice")
        seen.add(path)
        pos += plen
        (dlen,) = struct.unpack_from("<I", payload, pos)
        pos += 4
        if pos + dlen > psize:
            raise ImageError(f"file {path!r} ({dlen} octets) runs past the payload")
        files.append(FirmwareFile(path, bytes(payload[pos : pos + dlen])))
        pos += dlen
    if pos != psize:
        raise ImageError(f"{psize - pos} octets after the last file record")
    return FirmwareImage(board, (major, minor), tuple(files), digest, len(image), fmt)


STAGING_BASE = 0x6000  # rackfw.board.UPDATE_BASE: where the update mailbox stages an image
RECORD_SIZE = 16  # the boot loader's install marker slot, and the commit record after it
COMMIT_MAGIC = b"RFWC"
_COMMIT = struct.Struct(">4sIH4sH")


class ImageUncommittedError(ImageError):
    """A staged image without a valid commit record: the host never said ``commit``."""


def marker_offset(size: int) -> int:
    """Where (from the staging base) the install marker of a ``size``-octet image goes."""
    return (size + RECORD_SIZE - 1) & ~(RECORD_SIZE - 1)


def commit_offset(size: int) -> int:
    """Where the commit record goes: right after the install marker slot."""
    return marker_offset(size) + RECORD_SIZE


def staged_extent(size: int) -> int:
    """Staging octets a ``size``-octet image needs: image, install marker, commit record
    (what the board's ``begin`` checks against its staging area and erases)."""
    return marker_offset(size) + 2 * RECORD_SIZE


def commit_record(size: int, image_crc: int) -> bytes:
    """The 16-octet record ``rackfw.update`` programs on a successful ``commit``:
    ``RFWC``, u32 image size, u16 CRC-16/MODBUS of the image, 4 zero octets, u16
    CRC-16/MODBUS of octets 0..13 (big-endian). The zero padding and the record's own
    CRC make a torn write (trailing erased octets) fail the check."""
    head = _COMMIT.pack(COMMIT_MAGIC, size, image_crc, bytes(4), 0)[:14]
    return head + crc16(head).to_bytes(2, "big")


def is_commit_record(record: bytes | bytearray | memoryview, size: int) -> bool:
    """True when ``record`` is a whole commit record for an image of ``size`` octets --
    the same rule as the boot loader's (it does not recompute the image CRC: the
    mailbox checked it against the staged flash before programming the record)."""
    rec = bytes(record)
    if len(rec) != RECORD_SIZE:
        return False
    magic, rsize, _crc, pad, rcrc = _COMMIT.unpack(rec)
    return (magic == COMMIT_MAGIC and rsize == size and pad == bytes(4)
            and crc16(rec[:14]) == rcrc)


def read_staged(flash: bytes | bytearray | memoryview, base: int = STAGING_BASE, *,
                require_commit: bool = True) -> FirmwareImage | None:
    """The image staged in a board's flash (a dump of the flash HAL), or None.

    For whoever applies an update (a boot loader, the software rack's power-cycle), by
    the boot loader's rules: None when the staging area holds no image (erased, or
    never written); :class:`ImageUncommittedError` when no whole commit record follows
    the image (``require_commit=False`` skips that check, e.g. to inspect a transfer
    that is still running); an :class:`ImageError` when the image is incomplete or
    damaged, which the SHA-256 catches -- so only a fully received, committed image is
    ever installed.
    """
    head = bytes(flash[base : base + HEADER_SIZE])
    if head[:4] != MAGIC:
        return None
    _fmt, hsize, _code, _maj, _min, _count, psize, _digest = parse_header(head)
    size = hsize + psize
    if require_commit:
        if base + staged_extent(size) > len(flash):
            raise ImageError(f"a {size}-octet image and its install records do not fit the "
                             f"{len(flash) - base}-octet staging area")
        at = base + commit_offset(size)
        if not is_commit_record(flash[at : at + RECORD_SIZE], size):
            raise ImageUncommittedError(
                "the staged image has no commit record: its transfer was never committed "
                "(or is incomplete); flash it again")
    return parse(bytes(flash[base : base + size]))
