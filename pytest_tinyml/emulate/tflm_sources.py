"""Where the real TFLM sources come from: ``TFLM_ROOT``, a verified source cache, or a pinned download.

The project ships no TFLM, CMSIS or third-party code, only the pins in ``tflm_pins.json``: for each project
the GitHub owner/repo, the commit, and a digest of the file tree at that commit. Resolution order:

1. ``$TFLM_ROOT``: a tflite-micro checkout whose ``tensorflow/lite/micro/tools/make/downloads`` holds what
   TFLM's own download scripts fetch (``flatbuffers``, ``gemmlowp``, ``ruy``, ``cmsis_nn``, ``cmsis``,
   ``cmsis/Cortex_DFP``). Used as it is: it is the user's tree, not ours to judge.
2. The source cache (ini ``tinyml_tflm_sources``, default ``<cache>/tflm-sources``): one directory per
   project, ``<name>-<commit>``, accepted only when its tree digest matches the pin (checked once per
   process).
3. A download of ``<mirror>/<owner>/<repo>/archive/<commit>.tar.gz`` (mirror default
   ``https://github.com``; ``$TINYML_TFLM_MIRROR`` or ini ``tinyml_tflm_mirror`` to change it; plain
   ``http`` only to a loopback host), bounded in size, unpacked member by member into the cache (regular
   files and directories only, no absolute path, no ``..``, no links or devices, at most
   :data:`MAX_FILES` files and :data:`MAX_UNPACKED` bytes), verified against the pin, then patched the way
   TFLM's download script patches it (flatbuffers: ``tensorflow/lite/micro/tools/make/flatbuffers.patch``).
   ``offline=True`` (``--tinyml-offline``, ini ``tinyml_offline``) forbids this step.

Tree digest (format ``tinyml-tree-1``), defined so that it can be computed from any copy of the commit (a
GitHub archive, ``git archive``, a checkout without ``.git``): take every *regular file* under the
project's top directory (symbolic links and other non-regular entries are ignored, directories contribute
nothing by themselves), name it by its path relative to the top directory with ``/`` separators, encoded
as UTF-8, and sort by those bytes. The digest is the SHA-256 of the concatenation, for each file, of
``path + b"\\0" + str(size).encode() + b"\\0" + contents``. None of the pinned commits has export-ignore
rules, so GitHub's archive and ``git archive`` of the commit hold the same files. ``sha256`` in the pins is
the unpacked archive's digest; for a patched project ``patched_sha256`` is the digest after the patch,
which is what the cache holds.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pytest_tinyml._util.download import (
    DownloadError,
    HTTPStatusError,
    TooLarge,
    Truncated,
    download,
    is_loopback,
)
from pytest_tinyml.errors import NotEvaluable
from pytest_tinyml.options import MIRROR_ENV, TFLM_ROOT_ENV

PINS_FILE = Path(__file__).with_name("tflm_pins.json")
DIGEST_FORMAT = "tinyml-tree-1"
DEFAULT_MIRROR = "https://github.com"
MAX_ARCHIVE = 256 * 1024 * 1024  # bytes of one downloaded .tar.gz
MAX_UNPACKED = 1024 * 1024 * 1024  # bytes of one unpacked tree
MAX_FILES = 50_000  # files of one unpacked tree
DOWNLOAD_TIMEOUT = 60.0  # seconds without progress before a download is abandoned
DOWNLOAD_DEADLINE = 1800.0  # seconds for one archive, however slowly it arrives
DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")

BASE_PROJECTS = ("tflite-micro", "flatbuffers", "gemmlowp", "ruy")
CMSIS_PROJECTS = ("cmsis_nn", "cmsis", "cortex_dfp")
KERNEL_SETS = ("cmsis_nn", "reference")

Progress = Callable[[str], None]


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


@dataclass(frozen=True)
class SourceSet:
    """Directories of one consistent set of sources."""

    origin: str  # "TFLM_ROOT", "source cache" or "download"
    tflm: Path
    flatbuffers: Path
    gemmlowp: Path
    ruy: Path
    cmsis_nn: Path | None = None
    cmsis: Path | None = None
    cortex_dfp: Path | None = None
    commit: str = ""  # the TFLM commit when pinned, else "" (a user's TFLM_ROOT)

    def describe(self) -> str:
        where = f"{self.origin} {self.tflm}"
        return f"TFLM {self.commit[:7]} from {where}" if self.commit else f"TFLM from {where}"


# --- the tree digest -------------------------------------------------------------------------------------
def _regular_files(root: Path) -> list[tuple[bytes, Path]]:
    out: list[tuple[bytes, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        base = Path(dirpath)
        for name in filenames:
            path = base / name
            if path.is_symlink() or not path.is_file():
                continue
            rel = path.relative_to(root).as_posix().encode("utf-8", "surrogateescape")
            out.append((rel, path))
        dirnames[:] = [d for d in dirnames if not (base / d).is_symlink()]
    out.sort(key=lambda item: item[0])
    return out


def tree_digest(root: Path) -> tuple[str, int]:
    """(``tinyml-tree-1`` digest, number of files) of the tree under ``root`` (see the module doc)."""
    h = hashlib.sha256()
    files = _regular_files(root)
    for rel, path in files:
        h.update(rel + b"\0" + str(path.stat().st_size).encode() + b"\0")
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest(), len(files)


@functools.lru_cache(maxsize=64)
def _verified(path: str, mtime_ns: int, expected: str) -> bool:
    return tree_digest(Path(path))[0] == expected


def cache_entry_ok(root: Path, pin: Pin) -> bool:
    """True when ``root`` holds exactly the pinned (and patched) tree; computed once per process."""
    path = root / pin.dirname
    if not path.is_dir() or path.is_symlink():
        return False
    return _verified(str(path), path.stat().st_mtime_ns, pin.cache_sha256)


# --- patches ----------------------------------------------------------------------------------------------
class PatchError(ValueError):
    pass


def _safe_rel(name: str) -> PurePosixPath:
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or any(part in ("..", "") for part in rel.parts) or "\\" in name:
        raise PatchError(f"unsafe path {name!r}")
    return rel


def apply_patch(tree: Path, patch_text: str) -> list[str]:
    """Apply a ``git diff`` style unified patch under ``tree``; every hunk must match exactly (at its line
    number or, failing that, at one unique place). Returns the patched paths."""
    lines = patch_text.splitlines(keepends=True)
    patched: list[str] = []
    i = 0
    while i < len(lines):
        if not (lines[i].startswith("--- ") and i + 1 < len(lines) and lines[i + 1].startswith("+++ ")):
            i += 1
            continue
        target = lines[i + 1][4:].strip().split("\t")[0]
        rel = _safe_rel(target[2:] if target.startswith("b/") else target)
        path = tree / rel
        if path.is_symlink() or not path.is_file():
            raise PatchError(f"patch names {rel}, which is not a file of the tree")
        text = path.read_text(encoding="utf-8").splitlines(keepends=True)
        i += 2
        delta = 0
        while i < len(lines) and lines[i].startswith("@@ "):
            header = lines[i].split()
            old_start, old_len = (int(x) for x in (header[1][1:].split(",") + ["1"])[:2])
            new_len = int((header[2][1:].split(",") + ["1"])[1])
            i += 1
            old: list[str] = []
            new: list[str] = []
            while (len(old) < old_len or len(new) < new_len) and i < len(lines):
                line = lines[i]
                tag, body = line[:1], line[1:]
                if line in ("\n", "\r\n"):
                    tag, body = " ", line
                if tag == " ":
                    old.append(body)
                    new.append(body)
                elif tag == "-":
                    old.append(body)
                elif tag == "+":
                    new.append(body)
                elif tag != "\\":
                    raise PatchError(f"malformed hunk in the patch for {rel}: {line[:40]!r}")
                i += 1
            if len(old) != old_len or len(new) != new_len:
                raise PatchError(f"truncated hunk in the patch for {rel}")
            at = old_start - 1 + delta if old_len else old_start + delta
            if text[at : at + old_len] != old:
                hits = [k for k in range(len(text) - old_len + 1) if text[k : k + old_len] == old]
                if len(hits) != 1:
                    raise PatchError(f"a hunk of the patch does not apply to {rel} (line {old_start})")
                at = hits[0]
            text[at : at + old_len] = new
            delta += new_len - old_len
        path.write_text("".join(text), encoding="utf-8")
        patched.append(str(rel))
    if not patched:
        raise PatchError("the patch changes no file")
    return patched


# --- download + safe unpack -------------------------------------------------------------------------------
def mirror_url(mirror: str | None = None) -> str:
    """The base URL archives are fetched from (``https``; ``http`` only to a loopback address); ``mirror``
    is the ini's or ``$TINYML_TFLM_MIRROR`` (None: the default, GitHub)."""
    value = (mirror or DEFAULT_MIRROR).rstrip("/")
    url = urllib.parse.urlsplit(value)
    host = url.hostname or ""
    if url.scheme == "https" and host:
        return value
    if url.scheme == "http" and host and is_loopback(host):
        return value
    raise SourcesUnavailable(
        f"TFLM source mirror {value!r} is not an https URL (plain http is allowed only to a loopback host)",
        f"set {MIRROR_ENV} / ini tinyml_tflm_mirror to https://github.com or an https mirror",
    )


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
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise SourcesUnavailable(
            f"{name}: {archive.name} is truncated or not a tar.gz archive ({type(exc).__name__}: {exc})",
            "retry the download (delete the partial file), or check the mirror",
        ) from None
    return files


def fetch_project(pin: Pin, root: Path, mirror: str, progress: Progress, patch_text: str | None = None) -> Path:
    """Download, unpack, verify and (for a patched project) patch ``pin`` into ``root/<name>-<commit>``."""
    final = root / pin.dirname
    root.mkdir(parents=True, exist_ok=True)
    url = f"{mirror}/{pin.owner}/{pin.repo}/archive/{pin.commit}.tar.gz"
    tag = f"{os.getpid()}"
    archive = root / f".{pin.dirname}.{tag}.tar.gz"
    work = root / f".{pin.dirname}.{tag}.unpack"
    progress(f"tinyml: downloading {pin.name} {pin.commit[:7]} from {url}")
    try:
        size = _download(url, archive, pin.name, progress)
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
        except OSError:
            if not cache_entry_ok(root, pin):  # another process may have won the race with the same tree
                raise
        progress(f"tinyml: {pin.name} {pin.commit[:7]} verified ({files:,} files) in {final}")
    finally:
        archive.unlink(missing_ok=True)
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final


def projects_for(kernels: str) -> tuple[str, ...]:
    return BASE_PROJECTS + (CMSIS_PROJECTS if kernels == "cmsis_nn" else ())


def _from_tflm_root(base: Path, kernels: str) -> SourceSet:
    if not (base / "tensorflow/lite/micro/micro_interpreter.h").is_file():
        raise SourcesUnavailable(
            f"{TFLM_ROOT_ENV}={base} is not a tflite-micro checkout (tensorflow/lite/micro/micro_interpreter.h missing)",
            f"unset {TFLM_ROOT_ENV} to use the pinned sources, or point it at a tflite-micro checkout",
        )
    dl = base / DOWNLOADS
    needed = {
        "flatbuffers": dl / "flatbuffers/include/flatbuffers/flatbuffers.h",
        "gemmlowp": dl / "gemmlowp/fixedpoint/fixedpoint.h",
        "ruy": dl / "ruy/ruy/profiler/instrumentation.h",
    }
    if kernels == "cmsis_nn":
        needed["cmsis_nn"] = dl / "cmsis_nn/Include/arm_nnfunctions.h"
        needed["cmsis"] = dl / "cmsis/CMSIS/Core/Include/cmsis_compiler.h"
    missing = [n for n, p in needed.items() if not p.is_file()]
    if missing:
        raise SourcesUnavailable(
            f"{TFLM_ROOT_ENV}: third-party sources missing under {dl}: {', '.join(missing)}",
            "run `make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads` "
            "(with OPTIMIZED_KERNEL_DIR=cmsis_nn for CMSIS-NN) in the checkout, or unset TFLM_ROOT",
        )
    cm = kernels == "cmsis_nn"
    return SourceSet(
        TFLM_ROOT_ENV, base, dl / "flatbuffers", dl / "gemmlowp", dl / "ruy",
        dl / "cmsis_nn" if cm else None, dl / "cmsis" if cm else None, dl / "cmsis/Cortex_DFP" if cm else None,
    )


def locate_sources(
    cache_root: Path,
    *,
    kernels: str = "reference",
    offline: bool = False,
    mirror: str | None = None,
    progress: Progress | None = None,
    tflm_root: str | os.PathLike[str] | None = None,
    table: dict[str, Pin] | None = None,
) -> SourceSet:
    """The sources for a ``kernels`` build, by the order in the module doc (``tflm_root``: the user's
    ``$TFLM_ROOT``, None or "" when unset; ``mirror``: see :func:`mirror_url`); raises SourcesUnavailable
    (a NotEvaluable with a one-line reason and a fix) when none can be had."""
    say = progress or (lambda _msg: None)
    root_value = os.fspath(tflm_root) if tflm_root is not None else ""
    if root_value:
        return _from_tflm_root(Path(root_value).expanduser().resolve(), kernels)
    table = table or pins()
    wanted = [table[n] for n in projects_for(kernels)]
    missing = [p for p in wanted if not cache_entry_ok(cache_root, p)]
    stale = [p for p in missing if (cache_root / p.dirname).exists()]
    if stale:
        p = stale[0]
        raise SourcesUnavailable(
            f"source cache entry {cache_root / p.dirname} does not match the pinned tree digest of {p.name} "
            f"{p.commit[:7]}",
            "delete that directory to download it again, or set TFLM_ROOT",
        )
    if missing and offline:
        names = ", ".join(p.name for p in missing)
        raise SourcesUnavailable(
            f"TFLM sources not in the source cache {cache_root} ({names}) and downloads are off (offline)",
            "run once without --tinyml-offline to download them, set TFLM_ROOT, or fill the cache "
            "(ini tinyml_tflm_sources)",
        )
    if missing:
        base = mirror_url(mirror)
        for pin in sorted(missing, key=lambda p: p.patch is not None):  # tflite-micro before the patched ones
            patch_text = None
            if pin.patch:
                patch_text = (cache_root / table["tflite-micro"].dirname / pin.patch).read_text(encoding="utf-8")
            fetch_project(pin, cache_root, base, say, patch_text)
    d = {p.name: cache_root / p.dirname for p in wanted}
    return SourceSet(
        "download" if missing else "source cache",
        d["tflite-micro"], d["flatbuffers"], d["gemmlowp"], d["ruy"],
        d.get("cmsis_nn"), d.get("cmsis"), d.get("cortex_dfp"), commit=table["tflite-micro"].commit,
    )
