"""The one JSON-safe converter: records, reports and cache keys all go through :func:`jsonsafe`.

What the callers need differs, so the differences are options, not copies:

- reports (the default): tuples and sets become lists (sets sorted by text), paths and unknown objects
  their text, numpy scalars and arrays Python values, NaN/inf ``None``; nesting past 40 levels becomes text.
- records (``max_depth=20, too_deep_text=False, max_text=..., max_items=...``): bounded as well, long
  strings and lists cut, nesting past 20 levels dropped (``None``).
- cache keys (``structure_only=True``): only the structure is rebuilt (dataclasses by field, mappings with
  text keys, lists, paths as text); every other value is kept as it is for ``json.dumps(default=str)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

_ELLIPSIS = "…"


def jsonsafe(
    value: Any,
    *,
    max_depth: int | None = 40,
    too_deep_text: bool = True,
    max_text: int | None = None,
    max_items: int | None = None,
    structure_only: bool = False,
) -> Any:
    """A JSON-safe copy of ``value`` (see the module doc for the options)."""
    if structure_only:
        return _structure(value)
    return _convert(value, 0, max_depth, too_deep_text, max_text, max_items)


def _structure(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _structure(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _structure(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_structure(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value


def _convert(value: Any, depth: int, max_depth: int | None, too_deep_text: bool, max_text: int | None,
             max_items: int | None) -> Any:
    def again(v: Any) -> Any:
        return _convert(v, depth + 1, max_depth, too_deep_text, max_text, max_items)

    if max_depth is not None and depth > max_depth:
        return str(value) if too_deep_text else None
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        if max_text is not None and len(value) > max_text:
            return value[: max_text - 1] + _ELLIPSIS
        return value
    if isinstance(value, Mapping):
        items = list(value.items()) if max_items is None else list(value.items())[:max_items]
        return {(str(k) if max_text is None else str(k)[:max_text]): again(v) for k, v in items}
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(sorted(value, key=str) if isinstance(value, (set, frozenset)) else value)
        return [again(v) for v in (seq if max_items is None else seq[:max_items])]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        try:
            return again(item())
        except Exception:  # noqa: BLE001 - an odd object becomes its text
            return again(str(value))
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        try:
            return again(tolist())
        except Exception:  # noqa: BLE001
            pass
    return again(str(value))


__all__ = ["jsonsafe"]
