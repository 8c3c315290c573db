"""File primitives every cache shares: sha256 helpers, an exclusive ``flock``, atomic publication and the
digest index kept apart from the entries it vouches for.

Used by the build cache (:mod:`pytest_tinyml.pipeline.cache`), the emulator's run cache and input blocks,
the downloads and the TFLM source cache, so none of them needs to import another's package.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's contents (``algorithm``: any ``hashlib`` name, e.g. sha256 or md5)."""
    h = hashlib.new(algorithm)
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: Path) -> str:
    return file_digest(path, "sha256")


def sha256_tree(path: Path) -> str:
    """Hash of a file, or of every file (relative name + content) under a directory."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


def entry_digest(files: Mapping[str, bytes]) -> str:
    """sha256 over the names and contents of an entry's files."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + sha256_bytes(files[name]).encode() + b"\0")
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
    """An exclusive ``fcntl.flock`` on ``path`` (created if needed); blocks until it is free.

    Yields True when another process held the lock and this one waited for it (``on_wait`` is called
    once before waiting)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    waited = False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            waited = True
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield waited
    finally:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


@contextlib.contextmanager
def staged_file(path: Path, prefix: str = ".tmp-", suffix: str = "") -> Iterator[tuple[BinaryIO, Path]]:
    """A temporary file next to ``path``, open for writing: ``(file, temporary path)``.

    Nothing is published by this context: the caller checks what it wrote and calls :func:`publish`
    (inside the block); whatever is left of the temporary file when the block ends is removed, so an
    error or a refused check never leaves a partial file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f, tmp
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def publish(tmp: Path, final: Path) -> None:
    """Move a finished temporary file (or directory) into place in one step (``os.replace``)."""
    os.replace(tmp, final)


def atomic_write(path: Path, data: bytes | Callable[[BinaryIO], object], prefix: str = ".tmp-",
                 suffix: str = "") -> None:
    """Write ``data`` (bytes, or a function writing into the open file) to ``path`` through a temporary
    file in the same directory: readers see the old file or the whole new one, never half of it."""
    with staged_file(path, prefix, suffix) as (f, tmp):
        if isinstance(data, bytes):
            f.write(data)
        else:
            data(f)
        f.close()
        publish(tmp, path)


_INDEX_KEY = re.compile(r"[0-9A-Za-z][0-9A-Za-z_.-]{0,127}")


class DigestIndex:
    """``<root>/index/<kind>/<key>``: the sha256 of a cache entry, kept apart from the entry itself."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "index"

    def _path(self, kind: str, key: str) -> Path | None:
        if not _INDEX_KEY.fullmatch(kind) or not _INDEX_KEY.fullmatch(key):
            return None
        return self.root / kind / key

    def put(self, kind: str, key: str, digest: str) -> None:
        path = self._path(kind, key)
        if path is None:
            return
        atomic_write(path, (digest + "\n").encode(), prefix=f".{key[:16]}-")

    def get(self, kind: str, key: str) -> str | None:
        """The digest the index holds for the entry (None: missing or unreadable)."""
        path = self._path(kind, key)
        if path is None:
            return None
        try:
            with path.open("rb") as f:
                return f.read(200).decode("ascii", "replace").strip()
        except OSError:
            return None

    def matches(self, kind: str, key: str, digest: str) -> bool:
        """True when the index holds ``digest`` for the entry (a missing or unreadable index entry: False)."""
        return self.get(kind, key) == digest


__all__ = [
    "DigestIndex",
    "atomic_write",
    "entry_digest",
    "file_digest",
    "file_lock",
    "publish",
    "sha256_bytes",
    "sha256_file",
    "sha256_tree",
    "staged_file",
]
