"""The file-system pieces every cache shares: an exclusive ``flock``, the digest index kept apart from the
entries, and sha256 helpers. Used by the build cache (``pipeline/cache.py``), the run cache and the input
blocks (``emulate/``), which do not import each other.
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


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(digest + "\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def matches(self, kind: str, key: str, digest: str) -> bool:
        """True when the index holds ``digest`` for the entry (a missing or unreadable index entry: False)."""
        path = self._path(kind, key)
        if path is None:
            return False
        try:
            with path.open("rb") as f:
                kept = f.read(200).decode("ascii", "replace").strip()
        except OSError:
            return False
        return kept == digest


def entry_digest(files: Mapping[str, bytes]) -> str:
    """sha256 over the names and contents of an entry's files."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + sha256_bytes(files[name]).encode() + b"\0")
    return h.hexdigest()


__all__ = ["DigestIndex", "entry_digest", "file_lock", "sha256_bytes"]
