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
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml._util.cachefs import DigestIndex, file_lock, sha256_bytes
from pytest_tinyml.pipeline._imports import module_source

if TYPE_CHECKING:
    from pytest_tinyml.spec.model import Spec

#: Bump when the layout of an entry or the meaning of a build changes.
CACHE_FORMAT = 1
LIBRARIES = ("tensorflow", "keras", "tf-keras", "tensorflow-model-optimization", "numpy", "tflite-micro", "ai-edge-litert")
_PIPELINE_FILES = ("datasets.py", "train.py", "quantize.py", "artifacts.py", "cache.py")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_tree(path: Path) -> str:
    """Hash of a file, or of every file (relative name + content) under a directory."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(path)).encode() + b"\0" + sha256_file(p).encode())
    return h.hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def build_fields(spec: Spec) -> dict[str, Any]:
    """The parts of a spec that change the artifacts (not constraints, board or file locations)."""
    model = {"kind": spec.model.kind, "value": spec.model.value, "args": _plain(spec.model.args)}
    dataset = _plain(spec.dataset) if spec.dataset is not None else None
    if isinstance(dataset, dict):
        dataset.pop("cache_dir", None)
    return {"model": model, "dataset": dataset, "training": _plain(spec.training),
            "quantization": _plain(spec.quantization)}


def model_source_digest(spec: Spec, search: list[Path]) -> str:
    """sha256 of the builder's module source (and its parent packages'), or of the model file/directory."""
    ref = spec.model
    if ref.kind == "builder":
        module_name = ref.value.partition(":")[0]
        h = hashlib.sha256()
        parts = module_name.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            origin, data = module_source(name, search)
            h.update(name.encode() + b"\0" + (data if data is not None else b"<no source>") + b"\0")
        return h.hexdigest()
    if ref.path is not None and Path(ref.path).exists():
        return sha256_tree(Path(ref.path))
    return sha256_bytes(ref.value.encode())


def pipeline_digest() -> str:
    here = Path(__file__).parent
    h = hashlib.sha256(f"format {CACHE_FORMAT}".encode())
    for name in _PIPELINE_FILES:
        p = here / name
        h.update(name.encode() + b"\0" + (p.read_bytes() if p.exists() else b"") + b"\0")
    return h.hexdigest()


def build_key(spec: Spec, *, dataset_checksum: str, search: list[Path]) -> tuple[str, dict[str, Any]]:
    """The cache key of a spec's artifacts, and the inputs it was computed from."""
    inputs = {
        "format": CACHE_FORMAT,
        "spec": build_fields(spec),
        "model_source": model_source_digest(spec, search),
        "dataset_checksum": dataset_checksum,
        "versions": library_versions(),
        "pipeline": pipeline_digest(),
    }
    blob = json.dumps(inputs, sort_keys=True, default=str).encode()
    return sha256_bytes(blob), inputs


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
        tmp = staging / ".manifest.json.tmp"
        text = json.dumps(manifest, indent=1, sort_keys=True, default=str)
        tmp.write_text(text)
        os.replace(tmp, staging / "manifest.json")
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
        fd, tmp = tempfile.mkstemp(prefix=".eval-", dir=self.evals)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.index.put("eval", key, sha256_bytes(text.encode()))
        os.replace(tmp, self.eval_path(key))
