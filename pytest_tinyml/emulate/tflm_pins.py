"""The pins of the TFLM sources (``tflm_pins.json``) and what makes a source tree the pinned one: the tree
digest (format ``tinyml-tree-1``, defined in :mod:`pytest_tinyml.emulate.tflm_sources`) and the check of a
source-cache entry against it."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from pytest_tinyml.errors import NotEvaluable

PINS_FILE = Path(__file__).with_name("tflm_pins.json")
DIGEST_FORMAT = "tinyml-tree-1"


class SourcesUnavailable(NotEvaluable):
    """No TFLM source tree can be had (with the one-line reason)."""


@dataclass(frozen=True)
class Pin:
    name: str
    owner: str
    repo: str
    commit: str
    sha256: str
    files: int
    patch: str | None = None  # path of a patch inside the tflite-micro tree, applied after verification
    patched_sha256: str | None = None

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.commit}"

    @property
    def cache_sha256(self) -> str:
        return self.patched_sha256 or self.sha256


@functools.lru_cache(maxsize=1)
def pins() -> dict[str, Pin]:
    data = json.loads(PINS_FILE.read_text())
    if data.get("format") != DIGEST_FORMAT:
        raise ValueError(f"{PINS_FILE}: unknown digest format {data.get('format')!r}")
    return {name: Pin(name=name, **fields) for name, fields in data["projects"].items()}


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISLNK, "symbolic link"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISSOCK, "socket"),
                       (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device")):
        if test(mode):
            return what
    return "special file"


def _entries(root: Path) -> tuple[list[tuple[bytes, Path]], tuple[str, str] | None]:
    """The regular files under ``root`` (relative path as digested, path), sorted, and the first entry that
    is neither a regular file nor a directory (relative path, what it is), or None; links are not followed."""
    out: list[tuple[bytes, Path]] = []
    odd: tuple[str, str] | None = None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in [*filenames, *dirnames]:
            path = base / name
            mode = path.lstat().st_mode
            if stat.S_ISREG(mode):
                rel = path.relative_to(root).as_posix().encode("utf-8", "surrogateescape")
                out.append((rel, path))
            elif not stat.S_ISDIR(mode) and odd is None:
                odd = (path.relative_to(root).as_posix(), _kind(mode))
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    out.sort(key=lambda item: item[0])
    return out, odd


def _regular_files(root: Path) -> list[tuple[bytes, Path]]:
    return _entries(root)[0]


def _digest(files: list[tuple[bytes, Path]]) -> str:
    h = hashlib.sha256()
    for rel, path in files:
        h.update(rel + b"\0" + str(path.stat().st_size).encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def tree_digest(root: Path) -> tuple[str, int]:
    """(``tinyml-tree-1`` digest, number of files) of the tree under ``root`` (see the module doc)."""
    files = _regular_files(root)
    return _digest(files), len(files)


@dataclass(frozen=True)
class Verdict:
    """What a source-cache entry is: the pinned tree (``problem`` empty; ``files`` its regular files, relative
    ``/`` paths, sorted: the manifest the build compiles from) or not (``problem`` says why)."""

    files: tuple[str, ...] = ()
    problem: str = ""


_MISMATCH = "does not match the pinned tree digest"


@functools.lru_cache(maxsize=64)
def _verified(path: str, mtime_ns: int, expected: str) -> Verdict:
    files, odd = _entries(Path(path))
    if odd is not None:
        return Verdict(problem=f"holds {odd[0]}, a {odd[1]}: a verified tree holds only regular files and "
                               "directories")
    if _digest(files) != expected:
        return Verdict(problem=_MISMATCH)
    return Verdict(tuple(rel.decode("utf-8", "surrogateescape") for rel, _path in files))


def check_entry(root: Path, pin: Pin) -> Verdict:
    """Whether ``root`` holds exactly the pinned (and patched) tree, with nothing but regular files and
    directories in it, and its manifest; computed once per process and state of the entry's directory."""
    path = root / pin.dirname
    if not path.is_dir() or path.is_symlink():
        return Verdict(problem="is missing" if not os.path.lexists(path) else "is not a directory")
    try:
        verdict = _verified(str(path), path.stat().st_mtime_ns, pin.cache_sha256)
    except OSError as exc:
        return Verdict(problem=f"cannot be read ({exc.strerror or exc})")
    if verdict.problem == _MISMATCH:
        return Verdict(problem=f"{_MISMATCH} of {pin.name} {pin.commit[:7]}")
    return verdict


def cache_entry_ok(root: Path, pin: Pin) -> bool:
    """True when ``root`` holds exactly the pinned (and patched) tree; computed once per process."""
    return not check_entry(root, pin).problem
