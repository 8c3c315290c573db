"""The user-level tool cache: what does not depend on a user's model, kept once per user.

One folder per user (``RunOptions.user_cache``: ini ``tinyml_user_cache``, else ``$TINYML_USER_CACHE``,
else ``$XDG_CACHE_HOME/pytest-tinyml``, else ``~/.cache/pytest-tinyml``), shared by every project, clone
and CI job on the machine, the way pip's wheel cache or ccache are. Layout::

    <root>/<kind>/<key>/          one entry: files only (no links), written once, never changed
    <root>/<kind>/<key>.used      its last use (mtime), for the size bound
    <root>/index/<kind>/<key>     the entry's digest, kept apart from it (DigestIndex)
    <root>/index/<kind>/<key>.stat  its stat signature when the digest last matched (see _signature)
    <root>/locks/<kind>-<key>     its lock: exclusive while it is built or removed, shared while in use

An entry is content-addressed (``key`` is a digest of everything it was built from), built in a
temporary folder by the caller's function and published with one rename. It is trusted only when its
files match the digest recorded when it was published (hashed again unless their stat signature, ctimes
included, is the one recorded when the digest last matched); anything else (a missing, extra, changed or linked
file) is removed and built again. Concurrent processes wait for one builder; an entry in use is never
removed. After a publication the cache is pruned to its size bound, least recently used entries first.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from pytest_tinyml._util.cachefs import DigestIndex, sha256_file

#: Default size bound of the user-level cache.
DEFAULT_LIMIT_BYTES = 4 << 30
_TREE_FORMAT = b"tinyml-toolcache-1\n"
_STAT = ".stat"  # index name suffix of an entry's stat signature, recorded after its digest matched


class EntryRefused(Exception):
    """An entry's folder holds something no build writes (a link, a device, a FIFO)."""


def entry_tree_digest(folder: Path) -> str:
    """sha256 over every entry of ``folder``: directories by name, files by name and content. Raises
    :class:`EntryRefused` for anything else (symbolic links included)."""
    h = hashlib.sha256(_TREE_FORMAT)
    rows: list[bytes] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        base = Path(top)
        for name in [*dirs, *files]:
            path = base / name
            st = os.lstat(path)
            rel = str(path.relative_to(folder)).encode("utf-8", "surrogateescape")
            if stat.S_ISDIR(st.st_mode):
                rows.append(b"d\0" + rel)
            elif stat.S_ISREG(st.st_mode):
                rows.append(b"f\0" + rel + b"\0" + sha256_file(path).encode())
            else:
                raise EntryRefused(f"{path} is not a regular file or directory")
    for row in sorted(rows):
        h.update(row + b"\n")
    return h.hexdigest()


def _signature(folder: Path) -> str:
    """The stat facts of everything under ``folder``: names, sizes, modes, inodes, mtimes and ctimes. Any
    change to a file (a write, a replacement, a ``touch -d``, a chmod) changes its ctime, which no
    unprivileged process can set back, so an unchanged signature means unchanged contents since the
    signature was taken (the way git's index trusts stat data)."""
    rows = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        for name in [*dirs, *files]:
            st = os.lstat(Path(top) / name)
            rows.append(f"{Path(top, name)}\0{st.st_size}\0{st.st_mode}\0{st.st_dev}\0{st.st_ino}\0"
                        f"{st.st_mtime_ns}\0{st.st_ctime_ns}")
    return hashlib.sha256("\n".join(sorted(rows)).encode("utf-8", "surrogateescape")).hexdigest()


def folder_bytes(folder: Path) -> int:
    total = 0
    for top, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(Path(top) / name).st_size
    return total


@dataclass(frozen=True)
class Entry:
    """A verified entry in use: its folder, and whether it was already there (False: built just now)."""

    path: Path
    cached: bool


class ToolCache:
    """Entries ``(kind, key)`` built once per user, verified on every first use in a process."""

    def __init__(self, root: Path, limit_bytes: int = DEFAULT_LIMIT_BYTES) -> None:
        self.root = Path(root)
        self.limit_bytes = int(limit_bytes)
        self.index = DigestIndex(self.root)
        self._verified: dict[Path, str] = {}

    # --- locations ------------------------------------------------------------------------------------
    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def _lock_path(self, kind: str, key: str) -> Path:
        return self.root / "locks" / f"{kind}-{key}"

    # --- verification ---------------------------------------------------------------------------------
    def _trusted(self, kind: str, key: str) -> bool:
        folder = self.path(kind, key)
        if not folder.is_dir() or folder.is_symlink():
            return False
        try:
            recorded = self.index.get(kind, key)
            if recorded is None:
                return False
            # the stat signature, bound to the digest it was taken under: verified earlier (in this
            # process, or in another one that recorded it right after hashing)
            sig = hashlib.sha256(f"{_signature(folder)}\0{recorded}".encode()).hexdigest()
            if self._verified.get(folder) == sig or self.index.matches(kind, key + _STAT, sig):
                ok = True
            else:
                ok = entry_tree_digest(folder) == recorded
                if ok:
                    self.index.put(kind, key + _STAT, sig)
        except (OSError, EntryRefused):
            ok = False
        if ok:
            self._verified[folder] = sig
        return ok

    def _remove(self, kind: str, key: str) -> None:
        """Take an entry out of the cache (the caller holds its exclusive lock)."""
        folder = self.path(kind, key)
        self._verified.pop(folder, None)
        if folder.is_symlink() or folder.is_file():
            folder.unlink()
        elif folder.exists():
            trash = folder.with_name(f".trash-{key[:24]}-{os.getpid()}-{time.monotonic_ns()}")
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        for leftover in (folder.with_name(key + ".used"), self.root / "index" / kind / key,
                         self.root / "index" / kind / (key + _STAT)):
            with contextlib.suppress(OSError):
                leftover.unlink()

    # --- use ------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def entry(self, kind: str, key: str, make: Callable[[Path], None],
              on_wait: Callable[[], None] | None = None) -> Iterator[Entry]:
        """The verified entry ``(kind, key)``, built by ``make(folder)`` when it is missing or fails its
        digest; held (never pruned) until the block ends. ``on_wait`` is called once when another
        process is building the same entry and this one waits for it."""
        lock = self._lock_path(kind, key)
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            built = False
            for _attempt in range(3):
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError:  # another process is building it right now
                    if on_wait is not None:
                        on_wait()
                        on_wait = None
                    fcntl.flock(fd, fcntl.LOCK_SH)
                if self._trusted(kind, key):
                    break
                # missing or untrusted: build it under the exclusive lock (another process may be doing so)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    if on_wait is not None:
                        on_wait()
                        on_wait = None
                    fcntl.flock(fd, fcntl.LOCK_EX)
                if not self._trusted(kind, key):
                    self._remove(kind, key)
                    self._build(kind, key, make)
                    built = True
                fcntl.flock(fd, fcntl.LOCK_SH)  # a pruner may slip in between: the loop checks again
                if self._trusted(kind, key):
                    break
            else:
                raise OSError(f"the user cache entry {self.path(kind, key)} could not be verified after building it")
            self._touch(kind, key)
            if built:
                self.prune(keep=(kind, key))
            yield Entry(self.path(kind, key), not built)
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _build(self, kind: str, key: str, make: Callable[[Path], None]) -> None:
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{key[:16]}-", dir=final.parent))
        try:
            make(tmp)
            digest = entry_tree_digest(tmp)
            self.index.put(kind, key, digest)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _touch(self, kind: str, key: str) -> None:
        stamp = self.path(kind, key).with_name(key + ".used")
        with contextlib.suppress(OSError):
            stamp.touch()
            os.utime(stamp)

    # --- the size bound -------------------------------------------------------------------------------
    def entries(self) -> list[tuple[str, str, int, float]]:
        """Every published entry: (kind, key, bytes, last use)."""
        out: list[tuple[str, str, int, float]] = []
        if not self.root.is_dir():
            return out
        for kind_dir in sorted(self.root.iterdir()):
            if kind_dir.name in ("index", "locks") or not kind_dir.is_dir() or kind_dir.is_symlink():
                continue
            for folder in sorted(kind_dir.iterdir()):
                if folder.name.startswith(".") or not folder.is_dir() or folder.is_symlink():
                    continue
                try:
                    used = folder.with_name(folder.name + ".used").stat().st_mtime
                except OSError:
                    used = folder.stat().st_mtime
                out.append((kind_dir.name, folder.name, folder_bytes(folder), used))
        return out

    def prune(self, keep: tuple[str, str] | None = None) -> list[tuple[str, str]]:
        """Remove least recently used entries until the cache is within its bound; entries in use (by
        any process) and ``keep`` stay. Returns what was removed."""
        removed: list[tuple[str, str]] = []
        self.root.mkdir(parents=True, exist_ok=True)
        gate = os.open(self.root / "locks" / ".prune", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(gate, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return removed  # another process is pruning
            entries = self.entries()
            total = sum(e[2] for e in entries)
            for kind, key, size, _used in sorted(entries, key=lambda e: e[3]):
                if total <= self.limit_bytes:
                    break
                if (kind, key) == keep:
                    continue
                fd = os.open(self._lock_path(kind, key), os.O_RDWR | os.O_CREAT, 0o644)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    continue  # in use
                try:
                    self._remove(kind, key)
                    total -= size
                    removed.append((kind, key))
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                    os.close(fd)
        finally:
            os.close(gate)
        return removed


__all__ = ["DEFAULT_LIMIT_BYTES", "Entry", "EntryRefused", "ToolCache", "entry_tree_digest", "folder_bytes"]
