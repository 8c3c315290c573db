"""The pins of the TFLM sources (``tflm_pins.json``) and what makes a source tree the pinned one: the tree
digest (format ``tinyml-tree-1``, defined in :mod:`pytest_tinyml.emulate.tflm_sources`) and the check of a
source-cache entry against it."""

from __future__ import annotations

import functools
import hashlib
import json
import os
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
