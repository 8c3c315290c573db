"""One pinned project fetched into the source cache: the bounded download of its archive, the safe unpack
(regular files and directories only, bounded in files and bytes), the digest check, TFLM's patch, and the
move into place. Every failure is a one-line :class:`SourcesUnavailable`."""

from __future__ import annotations

import os
import shutil
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from pytest_tinyml._util.download import DownloadError, HTTPStatusError, TooLarge, Truncated, download
from pytest_tinyml.emulate.tflm_patch import PatchError, apply_patch
from pytest_tinyml.emulate.tflm_pins import Pin, SourcesUnavailable, cache_entry_ok, tree_digest

MAX_ARCHIVE = 256 * 1024 * 1024  # bytes of one downloaded .tar.gz
MAX_UNPACKED = 1024 * 1024 * 1024  # bytes of one unpacked tree
MAX_FILES = 50_000  # files of one unpacked tree
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
    except DownloadError as exc:
        raise SourcesUnavailable(f"{name}: cannot download {url}: {exc.reason}", _NET_FIX) from None


_NET_FIX = (
    "allow HTTPS to github.com, set TINYML_TFLM_MIRROR to a mirror, set TFLM_ROOT to a tflite-micro checkout, "
    "or run with --tinyml-offline to use the project's own runtime without trying"
)


def safe_unpack(archive: Path, dest: Path, name: str) -> int:
    """Unpack a GitHub-style ``.tar.gz`` (one top directory) into ``dest``; returns the number of files.

    Only directories and regular files are written, under ``dest``, at most :data:`MAX_FILES` files and
    :data:`MAX_UNPACKED` bytes; links, devices and FIFOs are skipped; an absolute path, a ``..`` component
    or a second top directory rejects the archive."""
    files = 0
    total = 0
    top: str | None = None
    dest.mkdir(parents=True, exist_ok=False)
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                raw = member.name
                parts = PurePosixPath(raw).parts
                if raw.startswith("/") or "\\" in raw or ".." in parts or not parts:
                    raise SourcesUnavailable(
                        f"{name}: archive member {raw[:80]!r} has an unsafe path", "check the mirror"
                    )
                if top is None:
                    top = parts[0]
                if parts[0] != top:
                    raise SourcesUnavailable(
                        f"{name}: archive member {raw[:80]!r} is outside its top directory {top!r}", "check the mirror"
                    )
                rel = parts[1:]
                if not rel:
                    continue
                target = dest.joinpath(*rel)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if not member.isfile():
                    continue  # symlinks, hard links, devices, FIFOs: never created
                files += 1
                total += member.size
                if files > MAX_FILES or total > MAX_UNPACKED:
                    raise SourcesUnavailable(
                        f"{name}: archive unpacks to more than {MAX_FILES:,} files or {_mb(MAX_UNPACKED)}",
                        "check the mirror",
                    )
                target.parent.mkdir(parents=True, exist_ok=True)
                if target.parent.is_symlink() or target.exists():
                    raise SourcesUnavailable(f"{name}: archive member {raw[:80]!r} appears twice", "check the mirror")
                src = tar.extractfile(member)
                if src is None:
                    continue
                with src, target.open("xb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
    except SourcesUnavailable:
        raise
    except MemoryError:
        raise SourcesUnavailable(f"{name}: unpacking {archive.name} needs more memory than this process has",
                                 "check the mirror") from None
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise SourcesUnavailable(
            f"{name}: {archive.name} is truncated or not a tar.gz archive ({type(exc).__name__}: {exc})",
            "retry the download (delete the partial file), or check the mirror",
        ) from None
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
