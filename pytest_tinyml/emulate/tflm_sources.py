"""Where the real TFLM sources come from: ``TFLM_ROOT``, a verified source cache, or a pinned download.

The project ships no TFLM, CMSIS or third-party code, only the pins in ``tflm_pins.json``: for each project
the GitHub owner/repo, the commit, and a digest of the file tree at that commit. Resolution order:

1. ``$TFLM_ROOT``: a tflite-micro checkout whose ``tensorflow/lite/micro/tools/make/downloads`` holds what
   TFLM's own download scripts fetch (``flatbuffers``, ``gemmlowp``, ``ruy``, ``cmsis_nn``, ``cmsis``,
   ``cmsis/Cortex_DFP``). Used as it is: it is the user's tree, not ours to judge.
2. The source cache (ini ``tinyml_tflm_sources``, default ``<cache>/tflm-sources``): one directory per
   project, ``<name>-<commit>``, accepted only when it holds nothing but regular files and directories
   and its tree digest matches the pin (checked once per process). The build compiles only the files of
   that verified manifest (:func:`tree_files`), never what a directory holds when it is compiled.
3. A download of ``<mirror>/<owner>/<repo>/archive/<commit>.tar.gz`` (mirror default
   ``https://github.com``; ``$TINYML_TFLM_MIRROR`` or ini ``tinyml_tflm_mirror`` to change it; plain
   ``http`` only to a loopback host), bounded in size, unpacked member by member into the cache (regular
   files only, no absolute path, no ``..``, links, devices and FIFOs never created, at most
   :data:`~.tflm_fetch.MAX_MEMBERS` members of any kind, :data:`~.tflm_fetch.MAX_FILES` files,
   :data:`~.tflm_fetch.MAX_UNPACKED` bytes, header records refused above :data:`~.tflm_fetch.MAX_HEADER`
   bytes before they are read), verified against the pin, then patched the way
   TFLM's download script patches it (flatbuffers: ``tensorflow/lite/micro/tools/make/flatbuffers.patch``).
   ``offline=True`` (``--tinyml-offline``, ini ``tinyml_offline``) forbids this step.

Tree digest (format ``tinyml-tree-1``), defined so that it can be computed from any copy of the commit (a
GitHub archive, ``git archive``, a checkout without ``.git``): take every *regular file* under the
project's top directory (symbolic links and other non-regular entries are ignored, directories contribute
nothing by themselves; a cache entry holding a non-regular entry is refused before its digest is taken), name it by its path relative to the top directory with ``/`` separators, encoded
as UTF-8, and sort by those bytes. The digest is the SHA-256 of the concatenation, for each file, of
``path + b"\\0" + str(size).encode() + b"\\0" + contents``. None of the pinned commits has export-ignore
rules, so GitHub's archive and ``git archive`` of the commit hold the same files. ``sha256`` in the pins is
the unpacked archive's digest; for a patched project ``patched_sha256`` is the digest after the patch,
which is what the cache holds.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from pytest_tinyml._util.download import is_loopback
from pytest_tinyml.emulate.tflm_fetch import DOWNLOAD_DEADLINE, fetch_project
from pytest_tinyml.emulate.tflm_pins import Pin, SourcesUnavailable, cache_entry_ok, check_entry, pins
from pytest_tinyml.kinds import KernelSet
from pytest_tinyml.options import MIRROR_ENV, TFLM_ROOT_ENV

DEFAULT_MIRROR = "https://github.com"
DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")

BASE_PROJECTS = ("tflite-micro", "flatbuffers", "gemmlowp", "ruy")
CMSIS_PROJECTS = ("cmsis_nn", "cmsis", "cortex_dfp")

Progress = Callable[[str], None]

__all__ = ["Pin", "SourceSet", "SourcesUnavailable", "cache_entry_ok", "fetch_project", "locate_sources",
           "mirror_url", "pins", "projects_for", "tree_files", "tree_has"]


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
    # pinned sources: every regular file of the verified trees (the manifest); None: a user's TFLM_ROOT
    files: frozenset[Path] | None = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        where = f"{self.origin} {self.tflm}"
        return f"TFLM {self.commit[:7]} from {where}" if self.commit else f"TFLM from {where}"


def tree_files(src: SourceSet, directory: Path, suffixes: tuple[str, ...], *, recursive: bool) -> list[Path]:
    """The files directly in ``directory`` (or anywhere below it when ``recursive``) whose suffix is one of
    ``suffixes``, sorted. For pinned sources only files of the verified manifest: a file that appears in
    the cache after verification is never compiled. For a user's TFLM_ROOT, what is on disk."""
    if src.files is None:
        found = directory.rglob("*") if recursive else directory.glob("*")
        return sorted(p for p in found if p.suffix in suffixes and p.is_file())
    if recursive:
        return sorted(p for p in src.files if p.suffix in suffixes and p.is_relative_to(directory))
    return sorted(p for p in src.files if p.suffix in suffixes and p.parent == directory)


def tree_has(src: SourceSet, path: Path) -> bool:
    """``path`` is a file of the sources: in the verified manifest for pinned sources, on disk for a
    user's TFLM_ROOT."""
    return path.is_file() if src.files is None else path in src.files


def mirror_url(mirror: str | None = None) -> str:
    """The base URL archives are fetched from (``https``; ``http`` only to a loopback address); ``mirror``
    is the ini's or ``$TINYML_TFLM_MIRROR`` (None: the default, GitHub)."""
    value = (mirror or DEFAULT_MIRROR).rstrip("/")
    try:
        url = urllib.parse.urlsplit(value)
    except ValueError as exc:  # "http://[::1": an unclosed IPv6 bracket
        raise SourcesUnavailable(f"TFLM source mirror {value!r} is not a valid URL ({exc})",
                                 f"set {MIRROR_ENV} / ini tinyml_tflm_mirror to https://github.com or an https mirror",
                                 ) from None
    host = url.hostname or ""
    if url.scheme == "https" and host:
        return value
    if url.scheme == "http" and host and is_loopback(host):
        return value
    raise SourcesUnavailable(
        f"TFLM source mirror {value!r} is not an https URL (plain http is allowed only to a loopback host)",
        f"set {MIRROR_ENV} / ini tinyml_tflm_mirror to https://github.com or an https mirror",
    )


def projects_for(kernels: str) -> tuple[str, ...]:
    return BASE_PROJECTS + (CMSIS_PROJECTS if kernels == KernelSet.CMSIS_NN else ())


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
    if kernels == KernelSet.CMSIS_NN:
        needed["cmsis_nn"] = dl / "cmsis_nn/Include/arm_nnfunctions.h"
        needed["cmsis"] = dl / "cmsis/CMSIS/Core/Include/cmsis_compiler.h"
    missing = [n for n, p in needed.items() if not p.is_file()]
    if missing:
        raise SourcesUnavailable(
            f"{TFLM_ROOT_ENV}: third-party sources missing under {dl}: {', '.join(missing)}",
            "run `make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads` "
            "(with OPTIMIZED_KERNEL_DIR=cmsis_nn for CMSIS-NN) in the checkout, or unset TFLM_ROOT",
        )
    cm = kernels == KernelSet.CMSIS_NN
    return SourceSet(
        TFLM_ROOT_ENV, base, dl / "flatbuffers", dl / "gemmlowp", dl / "ruy",
        dl / "cmsis_nn" if cm else None, dl / "cmsis" if cm else None, dl / "cmsis/Cortex_DFP" if cm else None,
    )


def locate_sources(
    cache_root: Path,
    *,
    kernels: str = KernelSet.REFERENCE,
    offline: bool = False,
    mirror: str | None = None,
    progress: Progress | None = None,
    tflm_root: str | os.PathLike[str] | None = None,
    table: dict[str, Pin] | None = None,
    deadline: float = DOWNLOAD_DEADLINE,
) -> SourceSet:
    """The sources for a ``kernels`` build, by the order in the module doc (``tflm_root``: the user's
    ``$TFLM_ROOT``, None or "" when unset; ``mirror``: see :func:`mirror_url`; ``deadline``: seconds for each
    archive's download); raises SourcesUnavailable
    (a NotEvaluable with a one-line reason and a fix) when none can be had."""
    say = progress or (lambda _msg: None)
    root_value = os.fspath(tflm_root) if tflm_root is not None else ""
    if root_value:
        return _from_tflm_root(Path(root_value).expanduser().resolve(), kernels)
    table = table or pins()
    wanted = [table[n] for n in projects_for(kernels)]
    missing = [p for p in wanted if not cache_entry_ok(cache_root, p)]
    stale = [p for p in missing if os.path.lexists(cache_root / p.dirname)]
    if stale:
        _refuse_entry(cache_root, stale[0], check_entry(cache_root, stale[0]).problem)
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
                patch_path = cache_root / table["tflite-micro"].dirname / pin.patch
                try:
                    patch_text = patch_path.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as exc:
                    raise SourcesUnavailable(f"{pin.name}: cannot read TFLM's patch {patch_path} ({exc})",
                                             "delete the tflite-micro entry of the source cache to download it again") from None
            fetch_project(pin, cache_root, base, say, patch_text, deadline)
    d = {p.name: cache_root / p.dirname for p in wanted}
    files: set[Path] = set()
    for pin in wanted:
        verdict = check_entry(cache_root, pin)
        if verdict.problem:  # changed since it was checked or fetched
            _refuse_entry(cache_root, pin, verdict.problem)
        files.update(d[pin.name] / rel for rel in verdict.files)
    return SourceSet(
        "download" if missing else "source cache",
        d["tflite-micro"], d["flatbuffers"], d["gemmlowp"], d["ruy"],
        d.get("cmsis_nn"), d.get("cmsis"), d.get("cortex_dfp"), commit=table["tflite-micro"].commit,
        files=frozenset(files),
    )


def _refuse_entry(cache_root: Path, pin: Pin, problem: str) -> NoReturn:
    raise SourcesUnavailable(f"source cache entry {cache_root / pin.dirname} {problem}",
                             "delete that directory to download it again, or set TFLM_ROOT")
