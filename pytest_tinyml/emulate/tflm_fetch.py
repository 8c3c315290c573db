"""One pinned project fetched into the source cache: the bounded download of its archive, the safe unpack
(regular files only, bounded in members, files, bytes and header records), the digest check, TFLM's patch, and the
move into place. Every failure is a one-line :class:`SourcesUnavailable`."""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

from pytest_tinyml._util.download import (
    DeadlineExceeded,
    DownloadError,
    HTTPStatusError,
    TooLarge,
    Truncated,
    download,
)
from pytest_tinyml.emulate.tflm_patch import PatchError, apply_patch
from pytest_tinyml.emulate.tflm_pins import Pin, SourcesUnavailable, cache_entry_ok, tree_digest

MAX_ARCHIVE = 256 * 1024 * 1024  # bytes of one downloaded .tar.gz
MAX_UNPACKED = 1024 * 1024 * 1024  # bytes of one unpacked tree
MAX_FILES = 50_000  # files of one unpacked tree
MAX_MEMBERS = 50_000  # members of one archive, whatever they are (files, directories, links, devices...)
MAX_HEADER = 64 * 1024  # header bytes before one member (its header block, long name, pax header)
MAX_HEADERS_TOTAL = 64 * 1024 * 1024  # header bytes of one archive
_CHUNK = 64 * 1024  # bytes copied per read of member data
DOWNLOAD_TIMEOUT = 60.0  # seconds without progress before a download is abandoned
DOWNLOAD_DEADLINE = 1800.0  # seconds for one archive, however slowly it arrives

Progress = Callable[[str], None]


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _download(url: str, dest: Path, name: str, progress: Progress, deadline: float = DOWNLOAD_DEADLINE) -> int:
    limit = "check the mirror (TINYML_TFLM_MIRROR) or set TFLM_ROOT to a tflite-micro checkout"
    try:
        return download(url, dest, max_bytes=MAX_ARCHIVE, read_timeout=DOWNLOAD_TIMEOUT, deadline=deadline,
                        progress=progress, label=name)
    except TooLarge as exc:
        if exc.declared is not None:
            raise SourcesUnavailable(
                f"{name}: {url} is {_mb(exc.declared)}, above the {_mb(MAX_ARCHIVE)} limit for a source archive", limit
            ) from None
        raise SourcesUnavailable(f"{name}: {url} sent more than {_mb(MAX_ARCHIVE)}, the limit for a source archive",
                                 limit) from None
    except Truncated as exc:
        raise SourcesUnavailable(
            f"{name}: download of {url} ended after {exc.got:,} of {exc.expected:,} bytes",
            "retry, or use --tinyml-offline and fill the source cache by hand",
        ) from None
    except HTTPStatusError as exc:
        raise SourcesUnavailable(f"{name}: {url} answered HTTP {exc.code}", _NET_FIX) from None
    except DeadlineExceeded as exc:
        raise SourcesUnavailable(
            f"{name}: cannot download {url}: {exc.reason}",
            f"raise ini tinyml_download_deadline (now {exc.seconds:g} s) for a slow link, or {_NET_FIX}",
        ) from None
    except DownloadError as exc:
        raise SourcesUnavailable(f"{name}: cannot download {url}: {exc.reason}", _NET_FIX) from None


_NET_FIX = (
    "allow HTTPS to github.com, set TINYML_TFLM_MIRROR to a mirror, set TFLM_ROOT to a tflite-micro checkout, "
    "or run with --tinyml-offline to use the project's own runtime without trying"
)


class _Refused(Exception):
    """Raised by :class:`_BoundedStream` to stop tarfile before it reads what the archive claims."""


class _BoundedStream(io.RawIOBase):
    """The decompressed archive as tarfile reads it, bounded by what reading costs.

    tarfile reads a header record (GNU long name or link, pax header, sparse map) with one ``read`` of the
    size the record claims; outside member data (``data`` False) a read is refused *before* it happens when
    it would take more than :data:`MAX_HEADER` bytes since the last member, or more than
    :data:`MAX_HEADERS_TOTAL` over the archive; no read or seek goes past :data:`MAX_UNPACKED` plus the
    header bytes; it only moves forward."""

    def __init__(self, raw: BinaryIO) -> None:
        super().__init__()
        self._raw = raw
        self.data = False  # True while member data is copied out
        self.since_member = 0
        self.total_headers = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._raw.tell()

    def _check_end(self, end: int) -> None:
        if end > MAX_UNPACKED + MAX_HEADERS_TOTAL:
            raise _Refused(f"archive unpacks to more than {_mb(MAX_UNPACKED + MAX_HEADERS_TOTAL)}")

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        here = self._raw.tell()
        target = offset if whence == io.SEEK_SET else here + offset if whence == io.SEEK_CUR else -1
        if target < here:  # gzip would decompress again from the start
            raise _Refused("archive reader asked to seek backwards")
        self._check_end(target)
        return self._raw.seek(target)

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise _Refused("archive reader asked to read to the end")
        self._check_end(self._raw.tell() + size)
        if not self.data:
            if self.since_member + size > MAX_HEADER:
                raise _Refused(f"archive header record of {size:,} bytes (long name, pax header or sparse map) "
                               f"is above the {MAX_HEADER:,}-byte bound")
            if self.total_headers + size > MAX_HEADERS_TOTAL:
                raise _Refused(f"archive headers take more than {_mb(MAX_HEADERS_TOTAL)}")
            self.since_member += size
            self.total_headers += size
        return self._raw.read(size)

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _kind(member: tarfile.TarInfo) -> str | None:
    """What a member is when it is not written (links, devices, FIFOs), None for a file or directory;
    raises for a member type a source tree never has."""
    if member.issparse():
        raise _Refused(f"archive member {member.name[:80]!r} is a sparse file")
    if member.isfile() or member.isdir():
        return None
    for test, what in ((member.issym, "symbolic link"), (member.islnk, "hard link"), (member.ischr, "device"),
                       (member.isblk, "device"), (member.isfifo, "FIFO")):
        if test():
            return what
    raise _Refused(f"archive member {member.name[:80]!r} has the unknown tar type {member.type!r}")


def _unsafe(name: str, raw: str, why: str) -> SourcesUnavailable:
    return SourcesUnavailable(f"{name}: archive member {raw[:80]!r} {why}", "check the mirror")


def safe_unpack(archive: Path, dest: Path, name: str) -> int:
    """Unpack a GitHub-style ``.tar.gz`` (one top directory) into ``dest``; returns the number of files.

    Bounded by what the archive costs, not what it claims: every member (file, directory, link, device,
    FIFO) counts against :data:`MAX_MEMBERS`, files against :data:`MAX_FILES` and :data:`MAX_UNPACKED`
    bytes, header records are refused above :data:`MAX_HEADER` bytes before they are read, and tarfile
    keeps no list of members. Only regular files are written (their directories are made for them):
    symbolic and hard links, devices and FIFOs are never created (GitHub's archive of the pinned
    flatbuffers holds nine symbolic links, outside the tree digest, which ignores links); a sparse or
    unknown member, an absolute path, a ``..`` component or a second top directory rejects the archive.
    A rejected archive leaves no ``dest`` behind."""
    files = 0
    members = 0
    total = 0
    top: str | None = None
    dest.mkdir(parents=True, exist_ok=False)
    try:
        with gzip.open(archive, "rb") as raw:
            stream = _BoundedStream(cast(BinaryIO, raw))
            with tarfile.open(fileobj=stream, mode="r:") as tar:
                while (member := tar.next()) is not None:
                    tar.members.clear()  # type: ignore[attr-defined]  # tarfile keeps no list of members
                    stream.since_member = 0
                    members += 1
                    if members > MAX_MEMBERS:
                        raise SourcesUnavailable(
                            f"{name}: archive has more than {MAX_MEMBERS:,} members (files, directories, links "
                            "and other entries)", "check the mirror")
                    raw_name = member.name
                    parts = PurePosixPath(raw_name).parts
                    if raw_name.startswith("/") or "\\" in raw_name or ".." in parts or not parts:
                        raise _unsafe(name, raw_name, "has an unsafe path")
                    if top is None:
                        top = parts[0]
                    if parts[0] != top:
                        raise _unsafe(name, raw_name, f"is outside its top directory {top!r}")
                    if _kind(member) is not None or member.isdir() or len(parts) == 1:
                        continue  # links, devices, FIFOs: never created; directories: made for their files
                    files += 1
                    total += member.size
                    if files > MAX_FILES or total > MAX_UNPACKED:
                        raise SourcesUnavailable(
                            f"{name}: archive unpacks to more than {MAX_FILES:,} files or {_mb(MAX_UNPACKED)}",
                            "check the mirror",
                        )
                    target = dest.joinpath(*parts[1:])
                    try:
                        target.parent.mkdir(parents=True, exist_ok=True)
                    except (FileExistsError, NotADirectoryError):
                        raise _unsafe(name, raw_name, "appears twice") from None  # a file is on its path
                    if target.parent.is_symlink() or target.exists():
                        raise _unsafe(name, raw_name, "appears twice")
                    src = tar.extractfile(member)
                    if src is None:
                        continue
                    stream.data = True
                    with src, target.open("xb") as out:
                        shutil.copyfileobj(src, out, _CHUNK)
                    stream.data = False
    except BaseException as exc:
        shutil.rmtree(dest, ignore_errors=True)
        if isinstance(exc, _Refused):
            raise SourcesUnavailable(f"{name}: {exc}", "check the mirror") from None
        if isinstance(exc, MemoryError):
            raise SourcesUnavailable(f"{name}: unpacking {archive.name} needs more memory than this process has",
                                     "check the mirror") from None
        if isinstance(exc, (tarfile.TarError, EOFError, zlib.error, OSError)):
            raise SourcesUnavailable(
                f"{name}: {archive.name} is truncated or not a tar.gz archive ({type(exc).__name__}: {exc})",
                "retry the download (delete the partial file), or check the mirror",
            ) from None
        raise
    return files


_CACHE_FIX = "point ini tinyml_tflm_sources (or $TINYML_TFLM_SOURCES) at a writable directory, or set TFLM_ROOT"


def _usable_root(root: Path) -> None:
    """``root`` exists as a writable directory afterwards, or a one-line SourcesUnavailable says why not."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "is not a directory" if root.exists() and not root.is_dir() else f"cannot be created ({exc.strerror or exc})"
        raise SourcesUnavailable(f"TFLM source cache {root} {why}", _CACHE_FIX) from None
    if not os.access(root, os.W_OK | os.X_OK):
        raise SourcesUnavailable(f"TFLM source cache {root} is not writable", _CACHE_FIX)


def fetch_project(pin: Pin, root: Path, mirror: str, progress: Progress, patch_text: str | None = None,
                  deadline: float = DOWNLOAD_DEADLINE) -> Path:
    """Download, unpack, verify and (for a patched project) patch ``pin`` into ``root/<name>-<commit>``;
    the download must finish within ``deadline`` seconds."""
    final = root / pin.dirname
    _usable_root(root)
    url = f"{mirror}/{pin.owner}/{pin.repo}/archive/{pin.commit}.tar.gz"
    tag = f"{os.getpid()}"
    archive = root / f".{pin.dirname}.{tag}.tar.gz"
    work = root / f".{pin.dirname}.{tag}.unpack"
    progress(f"tinyml: downloading {pin.name} {pin.commit[:7]} from {url}")
    try:
        size = _download(url, archive, pin.name, progress, deadline)
        progress(f"tinyml: unpacking {pin.name} ({_mb(size)})")
        safe_unpack(archive, work, pin.name)
        digest, files = tree_digest(work)
        if digest != pin.sha256:
            raise SourcesUnavailable(
                f"{pin.name}: checksum mismatch: {url} unpacks to tree digest {digest[:16]}..., "
                f"expected {pin.sha256[:16]}... ({files:,} files) for commit {pin.commit[:7]}",
                "the archive is not the pinned commit: check the mirror, or set TFLM_ROOT",
            )
        if pin.patch:
            if patch_text is None:
                raise SourcesUnavailable(f"{pin.name}: needs {pin.patch} from tflite-micro", "report this")
            try:
                apply_patch(work, patch_text)
            except PatchError as exc:
                raise SourcesUnavailable(f"{pin.name}: TFLM's patch does not apply: {exc}", "report this") from None
            if pin.patched_sha256 and tree_digest(work)[0] != pin.patched_sha256:
                raise SourcesUnavailable(f"{pin.name}: tree after TFLM's patch differs from the pin", "report this")
        try:
            os.replace(work, final)
        except OSError as exc:
            if not cache_entry_ok(root, pin):  # another process may have won the race with the same tree
                raise SourcesUnavailable(f"{pin.name}: cannot move the verified tree to {final} "
                                         f"({exc.strerror or exc})", _CACHE_FIX) from None
        progress(f"tinyml: {pin.name} {pin.commit[:7]} verified ({files:,} files) in {final}")
    finally:
        archive.unlink(missing_ok=True)
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final
