"""The one cache of pytest-tinyml: builds, evaluations and deterministic runs. No TensorFlow here.

Layout under the directory the caller passes (pytest's ``.pytest_cache/d/tinyml`` by default)::

    builds/<key>/manifest.json   {"key", "files": {name: sha256}, "meta": {...}}
    builds/<key>/model.keras, <mode>.tflite, float_pred.npy, results.json
    builds/<key>.lock            fcntl lock held while checking or building the entry
    eval/<key>.json              evaluation results keyed by tflite sha256 + dataset checksum + stage
    runs/<key>/result.json, outputs.npz   deterministic runs (firmware under an emulator, host TFLM)
    index/<kind>/<key>           sha256 of each entry above (builds: its manifest; eval: the file; runs:
                                 its files), kept apart from the entry and checked on every read

An entry is written into a temporary directory next to it and renamed into place as a whole, so readers
never see half an entry. A corrupted or truncated entry (a file missing or its sha256 differing from the
manifest) is detected on the next run and rebuilt. Entries that decide verdicts are also checked against
the digest the index keeps for them outside the entry: an entry edited on its own (a result.json claiming
fewer instructions, a manifest rewritten to match an edited model) does not match and is rebuilt. The
index lives in the same writable directory, so it stops accidents and edits of one entry, not someone
who rewrites both: a writable cache is trusted input (see README, "What the cache protects against").
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from pytest_tinyml._util.cachefs import (
    DigestIndex,
    atomic_write,
    file_lock,
    publish,
    sha256_bytes,
    sha256_file,
    staged_file,
)


class Cache:
    """The build and evaluation cache rooted at ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.builds = self.root / "builds"
        self.evals = self.root / "eval"
        self.index = DigestIndex(self.root)

    def entry_dir(self, key: str) -> Path:
        return self.builds / key

    def lock_path(self, key: str) -> Path:
        return self.builds / f"{key}.lock"

    @contextlib.contextmanager
    def locked(self, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[bool]:
        """Hold the entry's lock; yields True when another process held it first (and may have built it)."""
        with file_lock(self.lock_path(key), on_wait) as waited:
            yield waited

    def verify(self, key: str) -> dict[str, Any] | None:
        """The manifest of a complete, intact entry, else None."""
        entry = self.entry_dir(key)
        try:
            raw = (entry / "manifest.json").read_bytes()
            if not self.index.matches("builds", key, sha256_bytes(raw)):
                return None  # edited, or written without this index: rebuild
            manifest = json.loads(raw)
        except (OSError, ValueError):
            return None
        if not isinstance(manifest, dict) or manifest.get("key") != key or not isinstance(manifest.get("files"), dict):
            return None
        for name, digest in manifest["files"].items():
            p = entry / name
            if "/" in name or name.startswith(".") or not p.is_file():
                return None
            try:
                if sha256_file(p) != digest:
                    return None
            except OSError:
                return None
        return manifest

    def new_staging(self, key: str) -> Path:
        self.builds.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".tmp-{key[:16]}-", dir=self.builds))

    def commit(self, key: str, staging: Path, meta: Mapping[str, Any]) -> dict[str, Any]:
        """Write the manifest into ``staging`` and move it into place (replacing a stale entry)."""
        files = {p.name: sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file() and p.name != "manifest.json"}
        manifest = {"key": key, "files": files, "created": time.time(), "meta": dict(meta)}
        text = json.dumps(manifest, indent=1, sort_keys=True, default=str)
        atomic_write(staging / "manifest.json", text.encode(), prefix=".manifest.json.")
        self.index.put("builds", key, sha256_bytes(text.encode()))
        final = self.entry_dir(key)
        if final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".trash-{key[:16]}-", dir=self.builds))
            os.replace(final, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        os.replace(staging, final)
        return manifest

    def discard(self, staging: Path) -> None:
        shutil.rmtree(staging, ignore_errors=True)

    # evaluation results -------------------------------------------------------------------------

    def eval_path(self, key: str) -> Path:
        return self.evals / f"{key}.json"

    def read_eval(self, key: str) -> dict[str, Any] | None:
        try:
            raw = self.eval_path(key).read_bytes()
            if not self.index.matches("eval", key, sha256_bytes(raw)):
                return None
            data = json.loads(raw)
        except (OSError, ValueError):
            return None
        if not isinstance(data, dict) or data.get("key") != key:
            return None
        body = json.dumps(data.get("result"), sort_keys=True)
        if data.get("sha256") != sha256_bytes(body.encode()):
            return None
        result = data.get("result")
        return result if isinstance(result, dict) else None

    def write_eval(self, key: str, result: Mapping[str, Any]) -> None:
        self.evals.mkdir(parents=True, exist_ok=True)
        body = json.dumps(result, sort_keys=True)
        data = {"key": key, "sha256": sha256_bytes(body.encode()), "result": json.loads(body)}
        text = json.dumps(data)
        with staged_file(self.eval_path(key), prefix=".eval-") as (f, tmp):
            f.write(text.encode())
            f.close()
            self.index.put("eval", key, sha256_bytes(text.encode()))
            publish(tmp, self.eval_path(key))
