"""The one ``module:function`` importer for user code (model builders, dataset loaders), and the lookup of
a module's source without running it.

User modules are looked for on ``sys.path`` first, then in the caller's search directories (the current
directory, the spec's directory and its parent). A search directory is put on ``sys.path`` only while
the import runs and taken off again afterwards: the process's ``sys.path`` is the same before and after.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class FunctionNotFound(LookupError):
    """The module imported, but has no callable of that name."""

    def __init__(self, module: str, function: str) -> None:
        super().__init__(f"{module!r} has no function {function!r}")
        self.module = module
        self.function = function


def _candidates(module_name: str, search: list[Path]) -> list[str]:
    """The search directories that hold ``module_name``'s top-level package or module."""
    top = module_name.split(".")[0]
    out = []
    for d in search:
        text = str(Path(d).resolve())
        if (Path(text) / top).is_dir() or (Path(text) / f"{top}.py").is_file():
            out.append(text)
    return out


@contextlib.contextmanager
def temporary_path(module_name: str, search: list[Path]) -> Iterator[bool]:
    """Put the search directories holding ``module_name`` on ``sys.path`` for the block (yields whether
    any was added); exactly those entries are taken off again when it ends."""
    added = [text for text in _candidates(module_name, search) if text not in sys.path]
    sys.path.extend(added)
    if added:
        importlib.invalidate_caches()
    try:
        yield bool(added)
    finally:
        for text in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(text)


def import_module(module_name: str, search: list[Path]) -> Any:
    """Import ``module_name``; when its top-level package is not importable, also look in ``search``."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        top = module_name.split(".")[0]
        if exc.name is None or exc.name.split(".")[0] != top:
            raise
        with temporary_path(module_name, search) as added:
            if not added:
                raise
            return importlib.import_module(module_name)


def import_function(target: str, search: list[Path]) -> Callable[..., Any]:
    """The function ``target`` (``module:function``) names.

    Raises ImportError when the module cannot be found, whatever the module raises while it runs, and
    :class:`FunctionNotFound` when it has no callable of that name."""
    module_name, _, func_name = target.partition(":")
    module = import_module(module_name, search)
    func = getattr(module, func_name, None)
    if not callable(func):
        raise FunctionNotFound(module_name, func_name)
    return func  # type: ignore[no-any-return]


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
    if spec is None:
        with temporary_path(module_name, search) as added:
            spec = find() if added else None
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return None, None
    return spec.origin, Path(spec.origin).read_bytes()


__all__ = ["FunctionNotFound", "import_function", "import_module", "module_source", "temporary_path"]
