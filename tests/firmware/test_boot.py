"""rackfw.boot: the boot loader that installs a staged firmware image.

Under CPython with the fake NOR flash of ``rackhil.fake_hal`` and a temporary
directory as the board's filesystem (``/lib`` files land under ``<tmp>/lib``: the
tests pass paths through ``dest_path``), plus one run in the MicroPython VM (the
real ``hashlib``/``os``/``struct`` of the port). The property tests hold the
promise that matters: whatever happened to the staged octets, a damaged image is
never installed, and the loader agrees with the host's ``fwimage`` parser.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import tempfile
from pathlib import Path

import fwsim  # noqa: F401  (installs the micropython shim for rackfw under CPython)
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rackfw import boot
from rackhil.fake_hal import FakeFlash
from rackproto import fwimage
from rackproto.crc import crc16

BASE = boot.STAGING_BASE
SHELF = 1
CDU = 2

FILES = {
    "lib/rackfw/version.py": b"FW_MAJOR = 1\nFW_MINOR = 7\n",
    "lib/rackfw/board.py": b"# board\n" * 100,
    "lib/rackfw/power/app.py": bytes(range(256)) * 3,
    "main.py": b"import rackfw\n",
    "hal_js.py": b"",
}


class Fs:
    """A board filesystem rooted in a host directory: ``dest_path`` under ``top``."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.root = str(top / "lib")  # the emulated board's root for board files

    def apply(self, flash: FakeFlash, board_type: int = SHELF, **kw) -> tuple[int, list[int]]:
        stats = [0, 0]
        real = boot.dest_path
        boot.dest_path = lambda p, root: (  # type: ignore[assignment]
            str(self.top / p) if p.startswith("lib/") else real(p, root))
        try:
            return boot.apply_staged(flash, board_type, self.root, stats=stats, **kw), stats
        finally:
            boot.dest_path = real  # type: ignore[assignment]

    def installed(self) -> dict[str, bytes]:
        out = {}
        for p in sorted(self.top.rglob("*")):
            if p.is_file():
                out[p.relative_to(self.top).as_posix()] = p.read_bytes()
        return out


def expected(files: dict[str, bytes]) -> dict[str, bytes]:
    return {(p if p.startswith("lib/") else "lib/" + p): d for p, d in files.items()}


def declared_size(image: bytes) -> int:
    """The image size its header claims (what the mailbox's ``begin`` was told)."""
    return fwimage.HEADER_SIZE + struct.unpack_from("<I", image, 16)[0]


def commit(flash: FakeFlash, image: bytes) -> None:
    """Program the commit record as ``rackfw.update`` does after a good ``commit``."""
    size = declared_size(image)
    at = BASE + fwimage.commit_offset(size)
    rec = fwimage.commit_record(size, crc16(image))
    for i, b in enumerate(rec):
        flash.mem[at + i] &= b


def staged(image: bytes, size: int = 256 * 1024, committed: bool = True) -> FakeFlash:
    """Flash as a transfer leaves it: the image, and (``committed``) its commit record."""
    flash = FakeFlash(size)
    flash.mem[BASE : BASE + len(image)] = image
    if committed:
        commit(flash, image)
    return flash


def marker_at(image: bytes) -> int:
    return BASE + ((len(image) + 15) & ~15)


def commit_at(image: bytes) -> int:
    return marker_at(image) + 16


@pytest.fixture
def fs(tmp_path: Path) -> Fs:
    return Fs(tmp_path)


# ---------------------------------------------------------------- install
def test_fresh_install_writes_every_file_and_marks_the_image(fs: Fs) -> None:
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image)
    status, stats = fs.apply(flash)
    assert status == boot.S_INSTALLED
    assert stats == [len(FILES), len(FILES)]
    assert fs.installed() == expected(FILES)
    at = marker_at(image)
    assert bytes(flash.mem[at : at + 16]) == b"RFWA" + hashlib.sha256(image[56:]).digest()[:12]
    assert bytes(flash.mem[BASE : BASE + len(image)]) == image  # kept: the active slot


def test_next_boot_is_active_and_writes_nothing(fs: Fs) -> None:
    flash = staged(fwimage.build(FILES, "power_shelf", (1, 7)))
    fs.apply(flash)
    mtimes = {p: p.stat().st_mtime_ns for p in fs.top.rglob("*") if p.is_file()}
    status, stats = fs.apply(flash)
    assert (status, stats) == (boot.S_ACTIVE, [0, len(FILES)])
    assert {p: p.stat().st_mtime_ns for p in fs.top.rglob("*") if p.is_file()} == mtimes


def test_without_resync_an_installed_image_is_not_read_again(fs: Fs) -> None:
    """A persistent filesystem (RP2040): once marked, boot costs two small reads."""
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image)
    assert fs.apply(flash, resync=False)[0] == boot.S_INSTALLED  # not marked: full install
    (fs.top / "lib/main.py").unlink()
    flash.mem[BASE + 200] ^= 1  # even a damaged payload goes unnoticed: nothing reads it
    assert fs.apply(flash, resync=False) == (boot.S_ACTIVE, [0, 0])
    assert not (fs.top / "lib/main.py").exists()
    assert fs.apply(flash)[0] == boot.S_BAD_DIGEST  # the default re-verifies


def test_a_fresh_filesystem_gets_the_active_image_again(fs: Fs, tmp_path_factory) -> None:
    """The VM case: factory files at every boot, the slot re-applied, still ``active``."""
    flash = staged(fwimage.build(FILES, "power_shelf", (1, 7)))
    assert fs.apply(flash)[0] == boot.S_INSTALLED
    fresh = Fs(tmp_path_factory.mktemp("fresh"))
    status, stats = fresh.apply(flash)
    assert (status, stats) == (boot.S_ACTIVE, [len(FILES), len(FILES)])
    assert fresh.installed() == expected(FILES)


def test_only_changed_files_are_written(fs: Fs) -> None:
    for path, data in expected(FILES).items():
        (fs.top / path).parent.mkdir(parents=True, exist_ok=True)
        (fs.top / path).write_bytes(data)
    old = dict(FILES, **{"lib/rackfw/version.py": b"FW_MAJOR = 1\nFW_MINOR = 0\n"})
    (fs.top / "lib/rackfw/version.py").write_bytes(old["lib/rackfw/version.py"])
    # same size, one octet different, deep inside the second chunk
    app = bytearray(FILES["lib/rackfw/power/app.py"])
    app[300] ^= 1
    (fs.top / "lib/rackfw/power/app.py").write_bytes(app)
    keep = fs.top / "lib/rackfw/board.py"
    before = keep.stat().st_mtime_ns
    status, stats = fs.apply(staged(fwimage.build(FILES, "power_shelf", (1, 7))))
    assert (status, stats) == (boot.S_INSTALLED, [2, len(FILES)])
    assert fs.installed() == expected(FILES)
    assert keep.stat().st_mtime_ns == before


def test_files_the_image_does_not_carry_are_left_alone(fs: Fs) -> None:
    extra = fs.top / "lib/rackfw/cooling/app.py"
    extra.parent.mkdir(parents=True)
    extra.write_bytes(b"cdu")
    fs.apply(staged(fwimage.build(FILES, "power_shelf", (1, 7))))
    assert extra.read_bytes() == b"cdu"


def test_an_mpy_module_replaces_the_source_it_shadows(fs: Fs) -> None:
    src = fs.top / "lib/rackfw/board.py"
    src.parent.mkdir(parents=True)
    src.write_bytes(b"old source")
    fs.apply(staged(fwimage.build({"lib/rackfw/board.mpy": b"M\x06\x00"}, "power_shelf", "1.7")))
    assert not src.exists()
    assert (fs.top / "lib/rackfw/board.mpy").read_bytes() == b"M\x06\x00"


def test_destination_paths() -> None:
    assert boot.dest_path("lib/rackfw/board.py", "/lib") == "/lib/rackfw/board.py"
    assert boot.dest_path("main.py", "/lib") == "/lib/main.py"
    assert boot.dest_path("main.py", "/") == "/main.py"
    assert boot.dest_path("lib/x.mpy", "/") == "/lib/x.mpy"


# ---------------------------------------------------------------- refusals
def test_erased_staging_area_is_no_image(fs: Fs) -> None:
    assert fs.apply(FakeFlash())[0] == boot.S_NONE
    assert fs.apply(FakeFlash(BASE + 16))[0] == boot.S_NONE  # no staging area at all
    assert fs.installed() == {}


def test_image_for_another_board_is_refused(fs: Fs) -> None:
    flash = staged(fwimage.build(FILES, "cdu", (1, 7)))
    assert fs.apply(flash, SHELF)[0] == boot.S_WRONG_BOARD
    assert fs.installed() == {}
    assert fs.apply(flash, CDU)[0] == boot.S_INSTALLED


def test_incomplete_transfer_is_refused(fs: Fs) -> None:
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image[: len(image) - 128], committed=False)  # the last chunk never arrived
    assert fs.apply(flash)[0] == boot.S_UNCOMMITTED
    assert fs.installed() == {}


def test_committed_image_damaged_afterwards_is_refused(fs: Fs) -> None:
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image)
    flash.mem[BASE + 200] ^= 0x01  # a payload bit damaged after the commit
    assert bytes(flash.mem[BASE : BASE + len(image)]) != image
    assert fs.apply(flash)[0] == boot.S_BAD_DIGEST
    assert fs.installed() == {}


def test_complete_but_uncommitted_image_is_not_installed(fs: Fs) -> None:
    """Every chunk arrived, SHA-256 fine, but the host died before ``commit``."""
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image, committed=False)
    assert fs.apply(flash)[0] == boot.S_UNCOMMITTED
    assert fs.apply(flash, resync=False)[0] == boot.S_UNCOMMITTED
    assert fs.installed() == {}
    assert bytes(flash.mem[marker_at(image) : marker_at(image) + 16]) == b"\xff" * 16
    with pytest.raises(fwimage.ImageUncommittedError):
        fwimage.read_staged(bytes(flash.mem))
    assert fwimage.read_staged(bytes(flash.mem), require_commit=False) == fwimage.parse(image)
    commit(flash, image)  # the host comes back and commits
    assert fs.apply(flash)[0] == boot.S_INSTALLED
    assert fs.installed() == expected(FILES)


@pytest.mark.parametrize("programmed", range(16))
def test_torn_commit_record_is_not_a_commit(fs: Fs, programmed: int) -> None:
    """Power lost while the record was programmed: any prefix short of whole is refused
    (the zero padding and the record's CRC end in octets a torn write left erased)."""
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image, committed=False)
    rec = fwimage.commit_record(len(image), crc16(image))
    at = commit_at(image)
    flash.mem[at : at + programmed] = rec[:programmed]
    expect = boot.S_INSTALLED if rec[programmed:] == b"\xff" * (16 - programmed) else (
        boot.S_UNCOMMITTED)
    assert fs.apply(flash)[0] == expect


@pytest.mark.parametrize("record", [
    fwimage.commit_record(1000, 0),  # another image's size
    b"RFWX" + fwimage.commit_record(0, 0)[4:],  # wrong magic
    b"\x00" * 16,  # zeroed
])
def test_a_record_that_does_not_name_this_image_is_not_a_commit(fs: Fs, record: bytes) -> None:
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image, committed=False)
    flash.mem[commit_at(image) : commit_at(image) + 16] = record
    assert fs.apply(flash)[0] == boot.S_UNCOMMITTED
    with pytest.raises(fwimage.ImageUncommittedError):
        fwimage.read_staged(bytes(flash.mem))


def test_image_without_room_for_its_marker_and_commit_record_is_refused(fs: Fs) -> None:
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    extent = fwimage.staged_extent(len(image))
    assert extent == ((len(image) + 15) & ~15) + 32
    for room in (len(image), extent - 1):
        flash = FakeFlash(BASE + room)
        flash.mem[BASE : BASE + len(image)] = image
        assert fs.apply(flash)[0] == boot.S_TOO_LARGE
        with pytest.raises(fwimage.ImageError):
            fwimage.read_staged(bytes(flash.mem))
    assert fs.installed() == {}
    assert fs.apply(staged(image, size=BASE + extent))[0] == boot.S_INSTALLED


def _raw_image(records: bytes, count: int, board: int = SHELF) -> bytes:
    """An image with a valid header and digest around any payload (a buggy builder)."""
    head = struct.pack("<4sHHHBBHHI32sHH", b"RFWI", 1, 56, board, 1, 7, count, 0,
                       len(records), hashlib.sha256(records).digest(), 0, 0)
    return head[:52] + struct.pack("<HH", crc16(head[:52]), 0) + records


def _rec(path: bytes, data: bytes) -> bytes:
    return struct.pack("<H", len(path)) + path + struct.pack("<I", len(data)) + data


@pytest.mark.parametrize("records,count", [
    (_rec(b"../etc/passwd", b"x"), 1),
    (_rec(b"/abs.py", b"x"), 1),
    (_rec(b"lib//x.py", b"x"), 1),
    (_rec(b"a.py", b"x") + _rec(b"a.py", b"y"), 2),  # repeated path
    (_rec(b"a.py", b"x"), 2),  # fewer records than the count
    (_rec(b"a.py", b"x") + b"\x00", 1),  # trailing octets
    (struct.pack("<H", 4) + b"a.py" + struct.pack("<I", 99) + b"x", 1),  # data past the end
    (_rec(b"\xff\xfe.py", b"x"), 1),  # path not UTF-8
    (_rec(b"lib/ok.py", b"x"), 1),  # the same file as root "ok.py" under root /lib
    (_rec(b"ok.mpy", b"x"), 1),  # two versions of one module
])
def test_malformed_records_are_refused_before_anything_is_written(fs: Fs, records: bytes,
                                                                  count: int) -> None:
    flash = staged(_raw_image(_rec(b"ok.py", b"fine") + records, count + 1))
    assert fs.apply(flash)[0] == boot.S_BAD_LAYOUT
    assert fs.installed() == {}


def test_filesystem_error_is_reported_and_the_next_boot_finishes(fs: Fs) -> None:
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image)

    def flaky_open(path, mode="r"):
        if "w" in mode and path.endswith("app.py.new"):  # the third file: filesystem full
            raise OSError(28, "ENOSPC")
        return open(path, mode)

    boot.open = flaky_open  # type: ignore[attr-defined]
    try:
        assert fs.apply(flash)[0] == boot.S_WRITE_FAILED
    finally:
        del boot.open  # type: ignore[attr-defined]
    at = marker_at(image)
    assert bytes(flash.mem[at : at + 16]) == b"\xff" * 16  # not marked: not installed
    status, stats = fs.apply(flash)
    assert (status, stats) == (boot.S_INSTALLED, [len(FILES) - 2, len(FILES)])
    assert fs.installed() == expected(FILES)


# ---------------------------------------------------------------- the marker
def sector_sized_image() -> bytes:
    filler = 4096 - 56 - (2 + 5 + 4) - (2 + 5 + 4 + 4)
    image = fwimage.build({"f.bin": b"z" * filler, "lib/a": b"q" * 4}, "power_shelf", "1.7")
    assert len(image) == 4096
    return image


def test_sector_sized_image_keeps_marker_and_record_in_the_next_sector(fs: Fs) -> None:
    """An image ending on a sector boundary: marker and commit record open the next
    sector (``begin`` erased it); the loader programs the marker next to the record."""
    image = sector_sized_image()
    flash = staged(image)
    assert fs.apply(flash)[0] == boot.S_INSTALLED
    assert bytes(flash.mem[BASE + 4096 : BASE + 4100]) == b"RFWA"
    assert bytes(flash.mem[BASE + 4112 : BASE + 4128]) == fwimage.commit_record(4096,
                                                                                  crc16(image))
    assert flash.erases == 0  # the loader never erases: the record shares the sector
    assert fs.apply(flash)[0] == boot.S_ACTIVE


def test_marker_slot_holding_old_data_is_left_alone(fs: Fs) -> None:
    """A marker slot ``begin`` did not erase (an older mailbox): the record next to it
    must survive, so the loader does not erase; the image installs unmarked, and the
    next boot installs it again (writing nothing: the files match)."""
    image = sector_sized_image()
    flash = staged(image)
    flash.mem[BASE + 4096 : BASE + 4112] = b"\x00" * 16  # old data in the marker slot
    record = bytes(flash.mem[BASE + 4112 : BASE + 4128])
    assert fs.apply(flash)[0] == boot.S_INSTALLED
    assert fs.installed() == expected({f.path: f.data for f in fwimage.parse(image).files})
    assert bytes(flash.mem[BASE + 4112 : BASE + 4128]) == record
    assert flash.erases == 0
    assert fs.apply(flash) == (boot.S_INSTALLED, [0, 2])


def test_torn_marker_write_is_completed_at_the_next_boot(fs: Fs) -> None:
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image)
    fs.apply(flash)
    at = marker_at(image)
    good = bytes(flash.mem[at : at + 16])
    flash.mem[at + 6 : at + 16] = b"\xff" * 10  # only 6 octets were programmed
    assert fs.apply(flash)[0] == boot.S_INSTALLED
    assert bytes(flash.mem[at : at + 16]) == good


def test_a_new_image_of_the_same_size_is_not_taken_for_installed(fs: Fs) -> None:
    first = fwimage.build(dict(FILES, **{"main.py": b"import rackfw\n"}), "power_shelf", "1.7")
    second = fwimage.build(dict(FILES, **{"main.py": b"import rackfX\n"}), "power_shelf", "1.8")
    assert len(first) == len(second)
    flash = staged(first)
    fs.apply(flash)
    flash.erase(BASE, 4096)  # begin, chunks, commit
    flash.mem[BASE : BASE + len(second)] = second
    commit(flash, second)
    assert fs.apply(flash)[0] == boot.S_INSTALLED


# ---------------------------------------------------------------- properties
paths = st.lists(st.from_regex(r"(lib/)?[a-z]{1,8}(/[a-z]{1,8}){0,2}\.(py|mpy|bin)", fullmatch=True),
                 min_size=1, max_size=6, unique=True)
file_sets = paths.flatmap(lambda ps: st.tuples(
    st.just(ps), st.lists(st.binary(max_size=700), min_size=len(ps), max_size=len(ps))))


def _installable(ps: list[str]) -> bool:
    """One file per module on the board, and no file where another needs a directory."""
    dests = [boot.dest_path(p, "/lib").rsplit(".", 1)[0] for p in ps]
    return len(set(dests)) == len(dests) and not any(
        q.startswith(p + "/") for p in dests for q in dests)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(file_sets)
def test_any_image_installs_exactly_its_files(spec: tuple[list[str], list[bytes]]) -> None:
    ps, datas = spec
    assume(_installable(ps))
    files = dict(zip(ps, datas, strict=True))
    image = fwimage.build(files, "power_shelf", "1.7")
    with tempfile.TemporaryDirectory() as tmp:
        fs = Fs(Path(tmp))
        status, stats = fs.apply(staged(image))
        assert (status, stats) == (boot.S_INSTALLED, [len(files), len(files)])
        assert fs.installed() == expected(files)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_a_damaged_image_is_never_installed(data: st.DataObject) -> None:
    """Any flipped bit, or a transfer cut short, anywhere in the staged octets (image,
    install marker slot, commit record): the loader installs iff the host's parser
    accepts the staged bytes, and then exactly the image's files."""
    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image)
    extent = fwimage.staged_extent(len(image))
    area = flash.mem[BASE : BASE + extent]
    if data.draw(st.booleans(), label="truncate"):  # a transfer (or commit) cut short
        cut = data.draw(st.integers(0, extent - 1), label="cut")
        area[cut:] = b"\xff" * (extent - cut)
    else:
        pos = data.draw(st.integers(0, extent - 1), label="pos")
        area[pos] ^= 1 << data.draw(st.integers(0, 7), label="bit")
    flash.mem[BASE : BASE + extent] = area
    try:
        host_view = fwimage.read_staged(bytes(flash.mem))
    except fwimage.ImageError:
        host_view = None
    with tempfile.TemporaryDirectory() as tmp:
        fs = Fs(Path(tmp))
        status, _ = fs.apply(flash)
        if host_view is None:
            assert status in (boot.S_NONE, boot.S_BAD_HEADER, boot.S_BAD_DIGEST,
                              boot.S_BAD_LAYOUT, boot.S_WRONG_BOARD, boot.S_TOO_LARGE,
                              boot.S_UNCOMMITTED)
            assert fs.installed() == {}
        else:  # a flip the format cannot see (reserved flags, the marker slot)
            assert status == boot.S_INSTALLED
            assert fs.installed() == expected({f.path: f.data for f in host_view.files})


# ---------------------------------------------------------------- report
def _last_event(board) -> tuple[int, int, int]:
    rec = bytearray(16)
    assert board.events.read(board.events.head, rec)
    return rec[10], rec[12] << 8 | rec[13], rec[14] << 8 | rec[15]


@pytest.mark.parametrize("status,result", [
    (boot.S_BAD_DIGEST, 4), (boot.S_BAD_HEADER, 4), (boot.S_WRONG_BOARD, 4),
    (boot.S_BAD_LAYOUT, 4), (boot.S_TOO_LARGE, 6), (boot.S_WRITE_FAILED, 5),
    (boot.S_UNCOMMITTED, 4)])
def test_report_of_a_refusal_logs_it_and_shows_failed(status: int, result: int) -> None:
    from rackfw.events import EV_UPDATE

    board = fwsim.SimBoard(app=None).board
    boot.report(board, status)
    r = board.regs
    assert board.bank.ir[r.UPDATE_STATE] == 4  # failed
    assert board.bank.ir[r.UPDATE_RESULT] == result  # image_crc / flash_error / too_large
    assert board.update.state == 4
    assert _last_event(board) == (EV_UPDATE, boot.EVU_REFUSED, status)


def test_report_of_an_install_logs_the_running_version() -> None:
    from rackfw.events import EV_UPDATE
    from rackfw.version import FW_VERSION

    board = fwsim.SimBoard(app=None).board
    boot.report(board, boot.S_INSTALLED)
    assert _last_event(board) == (EV_UPDATE, boot.EVU_INSTALLED, FW_VERSION)
    assert board.bank.ir[board.regs.UPDATE_STATE] == 0  # idle


@pytest.mark.parametrize("status", [boot.S_NONE, boot.S_ACTIVE])
def test_report_of_nothing_new_logs_nothing(status: int) -> None:
    board = fwsim.SimBoard(app=None).board
    before = board.events.head
    boot.report(board, status)
    assert board.events.head == before


# ---------------------------------------------------------------- in the VM
@pytest.mark.slow
@pytest.mark.vm
@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node >= 20")
def test_micropython_installs_and_refuses(mcu_process) -> None:
    from rackhil.mcu import FIRMWARE_DIR, firmware_files

    image = fwimage.build(FILES, "power_shelf", (1, 7))
    flash = staged(image)
    files = firmware_files("rackfw/boot.py", root=FIRMWARE_DIR, dest="/lib/rackfw")
    files["/lib/rackfw/__init__.py"] = ""
    files.update(firmware_files("hal_js.py", root=FIRMWARE_DIR / "boards" / "emulated"))
    mcu_process.load("boot1", files, main=None, flash=bytes(flash.mem))
    run = ("import hal_js\nfrom rackfw import boot\ns = [0, 0]\n"
           "r = (boot.apply_staged(hal_js.Flash(), 1, '/lib', stats=s), s)\n")
    mcu_process.exec("boot1", run)
    assert mcu_process.eval("boot1", "r") == (boot.S_INSTALLED, [len(FILES), len(FILES)])
    got = mcu_process.eval("boot1", "open('/lib/rackfw/power/app.py', 'rb').read()")
    assert got == FILES["lib/rackfw/power/app.py"]
    mcu_process.exec("boot1", run)
    assert mcu_process.eval("boot1", "r") == (boot.S_ACTIVE, [0, len(FILES)])
    dump = bytearray(mcu_process.read_flash("boot1"))
    dump[BASE + 100] ^= 0x10
    mcu_process.load("boot2", files, main=None, flash=bytes(dump))
    mcu_process.exec("boot2", run)
    assert mcu_process.eval("boot2", "r") == (boot.S_BAD_DIGEST, [0, 0])
    assert not mcu_process.eval("boot2", "'power' in __import__('os').listdir('/lib/rackfw')")
    uncommitted = bytes(staged(image, committed=False).mem)  # complete, never committed
    mcu_process.load("boot3", files, main=None, flash=uncommitted)
    mcu_process.exec("boot3", run)
    assert mcu_process.eval("boot3", "r") == (boot.S_UNCOMMITTED, [0, 0])
    assert not mcu_process.eval("boot3", "'power' in __import__('os').listdir('/lib/rackfw')")
    for name in ("boot1", "boot2", "boot3"):
        mcu_process.unload(name)


def test_module_is_micropython_shaped() -> None:
    """Only builtins the RP2040 port has; no f-strings (the loader runs before rackfw)."""
    src = Path(boot.__file__).read_text()
    imports = {ln.split()[1] for ln in src.splitlines() if ln.startswith(("import ", "from "))}
    assert imports <= {"hashlib", "os", "struct", "micropython"}
    assert 'f"' not in src and "f'" not in src
    assert os.path.basename(boot.__file__) == "boot.py"
