"""Firmware image format (rackproto.fwimage) and the image builder (tools/build_image.py)."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rackproto import fwimage
from rackproto.crc import crc16
from rackproto.errors import FrameError, RackError

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tools/ is a repository directory, not an installed package
    sys.path.insert(0, str(ROOT))

from tools import build_image  # noqa: E402

_part = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-.", min_size=1, max_size=12).filter(
    lambda p: p not in (".", ".."))
paths = st.lists(_part, min_size=1, max_size=4).map("/".join)
file_sets = st.dictionaries(paths, st.binary(max_size=300), max_size=8)
boards = st.sampled_from(sorted(fwimage.BOARD_TYPES))
versions = st.tuples(st.integers(0, 255), st.integers(0, 255))


def sample() -> bytes:
    return fwimage.build({"main.py": b"import rackfw\n", "lib/rackfw/a.py": b"A = 1\n"},
                         "power_shelf", (1, 2))


def reheader(image: bytes, **fields: int) -> bytes:
    """The image with header fields changed and the header CRC made valid again."""
    names = ["magic", "fmt", "hsize", "board", "major", "minor", "count", "flags", "psize",
             "sha", "crc", "pad"]
    values = dict(zip(names, struct.unpack_from("<4sHHHBBHHI32sHH", image), strict=True))
    values.update(fields)
    head = struct.pack("<4sHHHBBHHI32sHH", *(values[n] for n in names))
    head = head[:52] + struct.pack("<HH", crc16(head[:52]), 0)
    return head + image[fwimage.HEADER_SIZE:]


# ---------------------------------------------------------------- round trip
@given(files=file_sets, board=boards, version=versions)
def test_build_parse_round_trip(files, board, version):
    image = fwimage.build(files, board, version)
    info = fwimage.parse(image)
    assert info.board_type == board
    assert info.version == version
    assert {f.path: f.data for f in info.files} == files
    assert info.paths() == list(files)  # order kept
    assert info.size == len(image)
    assert info.sha256 == hashlib.sha256(image[fwimage.HEADER_SIZE:]).digest()
    assert fwimage.build(list(files.items()), fwimage.BOARD_TYPES[board], version) == image


@given(files=file_sets, data=st.data())
@settings(max_examples=200)
def test_any_single_byte_change_is_rejected(files, data):
    image = bytearray(fwimage.build(files, "cdu", (1, 0)))
    i = data.draw(st.integers(0, len(image) - 1), label="index")
    image[i] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(fwimage.ImageError):
        fwimage.parse(bytes(image))


@given(st.binary(max_size=200))
def test_random_bytes_raise_only_image_errors(blob):
    with pytest.raises(fwimage.ImageError):
        fwimage.parse(blob)


@given(files=file_sets)
def test_truncation_and_trailing_data_are_rejected(files):
    image = fwimage.build(files, "power_shelf", "1.0")
    for bad in (image[:-1], image + b"\x00", image[: fwimage.HEADER_SIZE - 1]):
        with pytest.raises(fwimage.ImageError):
            fwimage.parse(bad)


def test_header_layout_is_what_the_docstring_says():
    image = sample()
    assert image[:4] == b"RFWI"
    assert fwimage.HEADER_SIZE == 56
    fmt, hsize, board, major, minor, count = struct.unpack_from("<HHHBBH", image, 4)
    assert (fmt, hsize, board, major, minor, count) == (1, 56, 1, 1, 2, 2)
    (psize,) = struct.unpack_from("<I", image, 16)
    assert psize == len(image) - 56
    assert image[20:52] == hashlib.sha256(image[56:]).digest()
    # first record: u16 path length, path, u32 data length, data
    assert image[56:58] == struct.pack("<H", 7) and image[58:65] == b"main.py"


def test_image_properties():
    info = fwimage.parse(sample())
    assert info.version_text == "1.2"
    assert info.board_code == 1
    assert info.file("lib/rackfw/a.py") == b"A = 1\n"
    assert info.payload_size == info.size - fwimage.HEADER_SIZE
    with pytest.raises(KeyError):
        info.file("nope.py")


# ---------------------------------------------------------------- rejections
def test_errors_are_frame_errors():
    assert issubclass(fwimage.ImageError, FrameError)
    assert issubclass(fwimage.ImageDigestError, fwimage.ImageError)
    with pytest.raises(ValueError):
        fwimage.parse(b"")
    with pytest.raises(RackError):
        fwimage.parse(b"")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda im: b"ZIP!" + im[4:], "not a rackctl firmware image"),
        (lambda im: im[:8] + b"\x09" + im[9:], "header is damaged"),
        (lambda im: reheader(im, fmt=2), "format version 2 is not supported"),
        (lambda im: reheader(im, board=9), "unknown board type code 9"),
        (lambda im: reheader(im, hsize=10), "header size 10 is not 56"),
        (lambda im: reheader(im, hsize=60), "header size 60 is not 56"),
        (lambda im: im[:54] + b"\x00\x01" + im[56:], "padding"),
        (lambda im: reheader(im, count=3), "runs past the payload"),
        (lambda im: reheader(im, count=1), "octets after the last file record"),
        (lambda im: im[:-1] + bytes([im[-1] ^ 1]), "does not match its SHA-256"),
        (lambda im: im[:20], "shorter than its 56-octet header"),
    ],
)
def test_bad_images_name_the_problem(mutate, message):
    with pytest.raises(fwimage.ImageError, match=message):
        fwimage.parse(mutate(sample()))


def test_digest_error_type():
    image = bytearray(sample())
    image[-1] ^= 0x40
    with pytest.raises(fwimage.ImageDigestError):
        fwimage.parse(bytes(image))


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x.py", "a/../b.py", "a//b.py", "./a.py", "a\\b.py", "x" * 256]
)
def test_bad_paths_are_refused(path):
    with pytest.raises(fwimage.ImageError, match="path"):
        fwimage.build({path: b""}, "cdu", (1, 0))


def test_duplicate_paths_are_refused():
    with pytest.raises(fwimage.ImageError, match="twice"):
        fwimage.build([("a.py", b"1"), ("a.py", b"2")], "cdu", (1, 0))


@pytest.mark.parametrize("version", ["1", "1.x", "256.0", (1, -1), "a.b"])
def test_bad_versions_are_refused(version):
    with pytest.raises(fwimage.ImageError, match="version"):
        fwimage.build({}, "cdu", version)


def test_unknown_board_is_refused():
    with pytest.raises(fwimage.ImageError, match="unknown board type 'toaster'"):
        fwimage.build({}, "toaster", (1, 0))
    with pytest.raises(fwimage.ImageError, match="code 7"):
        fwimage.build({}, 7, (1, 0))


def test_board_codes_match_the_common_map():
    from rackproto import regmap

    assert regmap.load("common").get("board_type").enum == fwimage.BOARD_TYPES


# ---------------------------------------------------------------- tools/build_image.py
def test_collect_takes_only_this_boards_application():
    ps = build_image.collect("power_shelf")
    assert "main.py" in ps and "hal_js.py" in ps
    assert "lib/rackfw/board.py" in ps and "lib/rackfw/power/app.py" in ps
    assert not any("cooling/" in p or "regs_cdu" in p or "io_cdu" in p for p in ps)
    cdu = build_image.collect("cdu")
    assert "lib/rackfw/cooling/app.py" in cdu and not any("/power/" in p for p in cdu)
    assert ps["lib/rackfw/board.py"] == (ROOT / "firmware/rackfw/board.py").read_bytes()


def test_version_comes_from_the_firmware():
    text = (ROOT / "firmware/rackfw/version.py").read_text()
    major, minor = build_image.firmware_version()
    assert f"FW_MAJOR = const({major})" in text and f"FW_MINOR = const({minor})" in text


def test_main_writes_a_valid_image(tmp_path):
    out = tmp_path / "ps.rfw"
    assert build_image.main(["--board", "power_shelf", "-o", str(out), "--version", "3.4"]) == 0
    info = fwimage.parse(out.read_bytes())
    assert (info.board_type, info.version) == ("power_shelf", (3, 4))
    assert info.file("main.py") == (ROOT / "firmware/boards/emulated/main.py").read_bytes()


def test_mpy_image_compiles_modules_but_keeps_main_source():
    info = fwimage.parse(build_image.build_image("cdu", mpy=True))
    paths = info.paths()
    assert "main.py" in paths and "lib/rackfw/board.mpy" in paths
    assert not any(p.endswith(".py") and p != "main.py" for p in paths)
    assert info.file("lib/rackfw/board.mpy")[:1] == b"M"  # .mpy magic
    assert info.size < len(build_image.build_image("cdu"))


def test_power_shelf_image_files_are_enough_to_import_the_firmware(tmp_path):
    """Unpacked, the image runs the board's application without the rest of the tree."""
    info = fwimage.parse(build_image.build_image("power_shelf"))
    for f in info.files:
        dst = tmp_path / f.path
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(f.data)
    shim = ROOT / "hil_tests/rackhil/shim"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "lib"), str(shim)]))
    code = ("import rackfw, rackfw.board, rackfw.power.app as a; "
            f"assert rackfw.__file__.startswith({str(tmp_path)!r}), rackfw.__file__; "
            "print(a.PowerShelfApp.__name__)")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "PowerShelfApp"


# ---------------------------------------------------------------- staged in flash
def test_read_staged_finds_a_complete_committed_image_only():
    image = sample()
    flash = bytearray(b"\xff" * 0x10000)
    assert fwimage.read_staged(flash) is None  # erased
    flash[0x6000 : 0x6000 + len(image)] = image
    with pytest.raises(fwimage.ImageUncommittedError, match="never committed"):
        fwimage.read_staged(flash)  # every chunk there, but no commit
    assert fwimage.read_staged(flash, require_commit=False) == fwimage.parse(image)
    at = 0x6000 + fwimage.commit_offset(len(image))
    flash[at : at + 16] = fwimage.commit_record(len(image), crc16(image))
    assert fwimage.read_staged(flash) == fwimage.parse(image)
    flash[0x6000 + len(image) - 1] = 0xFF  # the last chunk never arrived (stale record)
    with pytest.raises(fwimage.ImageDigestError):
        fwimage.read_staged(flash)
    assert fwimage.read_staged(bytes(flash[:0x6000])) is None  # no staging area at all


def test_staging_layout_offsets():
    """Image, then the install marker (16-aligned), then the commit record."""
    assert [fwimage.marker_offset(n) for n in (1, 16, 17, 4096)] == [16, 16, 32, 4096]
    assert fwimage.commit_offset(4096) == 4112
    assert fwimage.staged_extent(4096) == 4128
    assert fwimage.staged_extent(4095) == 4128


def test_commit_record_layout():
    rec = fwimage.commit_record(0x01020304, 0xBEEF)
    assert rec[:14] == b"RFWC\x01\x02\x03\x04\xbe\xef\x00\x00\x00\x00"
    assert int.from_bytes(rec[14:], "big") == crc16(rec[:14])
    assert fwimage.is_commit_record(rec, 0x01020304)
    assert not fwimage.is_commit_record(rec, 0x01020305)
    assert not fwimage.is_commit_record(rec[:15], 0x01020304)


@given(st.integers(1, 0xFFFFFFFF), st.integers(0, 0xFFFF), st.integers(0, 127))
def test_property_any_bit_flip_in_a_commit_record_is_seen(size, crc, bit):
    rec = bytearray(fwimage.commit_record(size, crc))
    assert fwimage.is_commit_record(rec, size)
    rec[bit // 8] ^= 1 << (bit % 8)
    assert not fwimage.is_commit_record(rec, size)


@given(st.integers(1, 0xFFFFFFFF), st.integers(0, 0xFFFF), st.integers(0, 15))
def test_property_a_torn_commit_record_is_not_whole(size, crc, programmed):
    rec = fwimage.commit_record(size, crc)
    torn = rec[:programmed] + b"\xff" * (16 - programmed)
    assert fwimage.is_commit_record(torn, size) == (torn == rec)


def test_firmware_and_host_build_the_same_commit_record():
    from rackhil import shim

    shim.install()
    from rackfw import update

    for size, crc in ((1, 0), (4096, 0x1234), (0xFFFFFFFF, 0xFFFF)):
        buf = bytearray(16)
        update.commit_record(buf, size, crc)
        assert bytes(buf) == fwimage.commit_record(size, crc)
        assert update.staged_extent(size) == fwimage.staged_extent(size)
        assert update.commit_offset(size) == fwimage.commit_offset(size)
