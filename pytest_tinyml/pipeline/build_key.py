"""The cache key of a spec's build: the parts of the spec that change the artifacts, the builder's source
(or the model file), the dataset checksum, the library versions and the pipeline's own code."""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml._util.cachefs import sha256_bytes, sha256_tree
from pytest_tinyml._util.imports import module_source
from pytest_tinyml._util.jsonsafe import jsonsafe

if TYPE_CHECKING:
    from pytest_tinyml.spec.model import Spec

#: Bump when the layout of an entry or the meaning of a build changes.
CACHE_FORMAT = 1
LIBRARIES = ("tensorflow", "keras", "tf-keras", "tensorflow-model-optimization", "numpy", "tflite-micro", "ai-edge-litert")
_PIPELINE_FILES = ("datasets.py", "dataset_types.py", "dataset_files.py", "splits.py", "train.py", "quantize.py",
                   "artifacts.py", "cache.py", "build_key.py")


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def build_fields(spec: Spec) -> dict[str, Any]:
    """The parts of a spec that change the artifacts (not constraints, board or file locations)."""
    model = {"kind": spec.model.kind, "value": spec.model.value, "args": jsonsafe(spec.model.args, structure_only=True)}
    dataset = jsonsafe(spec.dataset, structure_only=True) if spec.dataset is not None else None
    if isinstance(dataset, dict):
        dataset.pop("cache_dir", None)
    return {"model": model, "dataset": dataset, "training": jsonsafe(spec.training, structure_only=True),
            "quantization": jsonsafe(spec.quantization, structure_only=True)}


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
