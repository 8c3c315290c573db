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
import io
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_tinyml._util.cachefs import (
    DigestIndex,
    atomic_write,
    entry_digest,
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


# --- deterministic runs (firmware under an emulator with -icount, host TFLM outputs) ---------------------
def package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def run_cache_key(*parts: str) -> str:
    return sha256_bytes("\0".join(parts).encode())


class RunCache:
    """``<cache>/runs/<key>/``: ``result.json`` (scalars) and ``outputs.npz`` (arrays), written atomically.

    Only deterministic runs are stored (QEMU with ``-icount``; host TFLM), keyed by a hash of everything
    they depend on. A damaged entry (unreadable JSON or arrays) or one whose files do not match the digest
    the index keeps for it (``<cache>/index/runs/<key>``) is ignored, and the run happens again.
    """

    _SCALARS = (
        "arena_bytes",
        "stack_bytes",
        "static_ram_bytes",
        "text_bytes",
        "rodata_bytes",
        "flash_bytes",
        "instructions_per_inference",
        "machine",
        "core",
        "emulator",
        "samples",
        "activation_bytes",
        "persistent_bytes",
        "model_bytes",
        "instructions_min",
        "instructions_max",
        "calibration_instructions",
        "clock_hz",
        "emulate_seconds",
        "seconds",
        "emulator_command",
        "emulator_script",
        "memory_map",
        "runs",
        "executed_instructions",
        "runtime",
        "kernels",
        "arena_min_bytes",
        "arena_used_at",
        "input_block",
        "input_block_samples",
    )

    def __init__(self, root: Path, index_root: Path | None = None) -> None:
        self.root = root
        self.index = DigestIndex(index_root if index_root is not None else Path(root).parent)

    def _write(self, key: str, meta: dict[str, Any], outputs: list[Any]) -> None:
        import numpy as np

        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / key
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.root))
        try:
            np.savez(tmp / "outputs.npz", *[np.asarray(o) for o in outputs])
            (tmp / "result.json").write_text(json.dumps(meta, default=str))
            files = {name: (tmp / name).read_bytes() for name in ("result.json", "outputs.npz")}
            self.index.put("runs", key, entry_digest(files))
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)

    def _read(self, key: str) -> tuple[dict[str, Any], list[Any]] | None:
        import numpy as np

        entry = self.root / key
        try:
            files = {name: (entry / name).read_bytes() for name in ("result.json", "outputs.npz")}
            if not self.index.matches("runs", key, entry_digest(files)):
                return None  # edited, damaged, or written without this index: run again
            meta = json.loads(files["result.json"])
            with np.load(io.BytesIO(files["outputs.npz"]), allow_pickle=False) as data:
                outputs = [data[f"arr_{i}"] for i in range(len(data.files))]
        except (OSError, ValueError, KeyError, RecursionError):  # RecursionError: nesting 200,000 deep
            return None
        if not isinstance(meta, dict) or meta.get("count") != len(outputs):
            return None
        return meta, outputs

    def save_outputs(self, key: str, outputs: list[Any]) -> None:
        self._write(key, {"count": len(outputs)}, outputs)

    def load_outputs(self, key: str) -> list[Any] | None:
        hit = self._read(key)
        return None if hit is None else hit[1]

    def save_firmware(self, key: str, result: Any) -> None:
        meta = {name: getattr(result, name) for name in self._SCALARS}
        meta["elf_path"] = str(result.elf_path)
        meta["count"] = len(result.outputs)
        counts = getattr(result, "instruction_counts", None)
        meta["instruction_counts"] = counts.to_dict() if counts is not None else None
        meta["counts_note"] = getattr(result, "counts_note", "")
        self._write(key, meta, list(result.outputs))

    def load_firmware(self, key: str) -> Any | None:
        from pytest_tinyml.emulate.run import FirmwareResult

        hit = self._read(key)
        if hit is None:
            return None
        meta, outputs = hit
        try:
            fields = {name: meta[name] for name in self._SCALARS}
        except KeyError:
            return None
        text_fields = {f.name for f in dataclasses.fields(FirmwareResult) if f.type in ("str", str)}
        for name, value in fields.items():  # an edited entry with a wrong type or NaN is a miss, not a crash
            if name in text_fields:
                ok = isinstance(value, str)
            else:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok:
                return None
        if not isinstance(meta.get("elf_path"), str):
            return None
        log = [f"cached firmware run {meta.get('seconds', 0):.1f} s"]
        from pytest_tinyml.emulate.insn_plugin import ClassCounts

        counts = None
        if isinstance(meta.get("instruction_counts"), dict):
            try:
                counts = ClassCounts.from_dict(meta["instruction_counts"])
            except (TypeError, ValueError):
                return None  # a damaged entry: run again
        return FirmwareResult(
            outputs=outputs,
            elf_path=Path(meta["elf_path"]),
            build_cached=True,
            log=log,
            instruction_counts=counts,
            counts_note=str(meta.get("counts_note", "")),
            **fields,
        )
