"""The run cache: ``<cache>/runs/<key>/`` holds one deterministic run (firmware under an emulator with
``-icount`` or Renode; host TFLM outputs), keyed by a hash of everything it depends on.

Each entry is ``result.json`` and ``outputs.npz``, written into a temporary directory and renamed into
place. A damaged entry (unreadable JSON or arrays, a field of the wrong type) or one whose files do not
match the digest the index keeps for it (``<cache>/index/runs/<key>``) is ignored, and the run happens
again. A firmware entry is :meth:`FirmwareResult.to_dict` (every field), so a hit equals the run.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

from pytest_tinyml._util.cachefs import DigestIndex, entry_digest, sha256_bytes
from pytest_tinyml.emulate.result import FirmwareResult


def package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def run_cache_key(*parts: str) -> str:
    return sha256_bytes("\0".join(parts).encode())


class RunCache:
    """``<cache>/runs/<key>/``: ``result.json`` (fields) and ``outputs.npz`` (arrays), written atomically."""

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

    def save_firmware(self, key: str, result: FirmwareResult) -> None:
        """Every field of ``result`` (its arrays inside ``result.json``; ``outputs.npz`` is empty)."""
        self._write(key, {**result.to_dict(), "count": 0}, [])

    def load_firmware(self, key: str) -> FirmwareResult | None:
        """The result saved under ``key`` (equal to it), or None for a missing, damaged or edited entry."""
        hit = self._read(key)
        if hit is None:
            return None
        meta, _ = hit
        meta.pop("count", None)
        try:
            return FirmwareResult.from_dict(meta)
        except (ValueError, TypeError, RecursionError):  # an edited entry is a miss, not a crash
            return None


__all__ = ["RunCache", "package_version", "run_cache_key"]
