"""Importing user code (builders, dataset loaders) and locating its source without running it."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def _candidates(module_name: str, search: list[Path]) -> list[str]:
    top = module_name.split(".")[0]
    out = []
    for d in search:
        text = str(Path(d).resolve())
        if (Path(text) / top).is_dir() or (Path(text) / f"{top}.py").is_file():
            out.append(text)
    return out


def _extend_path(module_name: str, search: list[Path]) -> bool:
    added = False
    for text in _candidates(module_name, search):
        if text not in sys.path:
            sys.path.append(text)
            added = True
    if added:
        importlib.invalidate_caches()
    return added


def import_with_paths(module_name: str, search: list[Path]) -> Any:
    """Import ``module_name``; when its top-level package is not importable, also look in ``search``
    (each directory is appended to ``sys.path`` only if it holds that package)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != top or not _extend_path(module_name, search):
            raise
        return importlib.import_module(module_name)


def module_source(module_name: str, search: list[Path]) -> tuple[str | None, bytes | None]:
    """(file path, bytes) of a module's source, found without executing the module itself.

    Parent packages are imported by ``find_spec`` (their ``__init__`` runs); the module does not.
    """
    def find() -> Any:
        try:
            return importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            return None

    spec = find()
    if spec is None and _extend_path(module_name, search):
        spec = find()
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return None, None
    return spec.origin, Path(spec.origin).read_bytes()
