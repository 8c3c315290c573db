"""What the terminal, Markdown and HTML reports share: status marks, item order, JSON-safe values
(units and numbers are formatted by :mod:`pytest_tinyml.fmt`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from pytest_tinyml.fmt import (  # noqa: F401  (re-exported for the report renderers)
    fmt_bytes,
    fmt_delta,
    fmt_size_delta,
    fmt_value,
    metric_unit,
    one_line,
)

STATUS_MARK = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}
#: Sort order of item statuses in reports: what needs attention first.
STATUS_ORDER = {"failed": 0, "error": 1, "passed": 2, "skipped": 3}


def item_order(check: str, name: str) -> tuple[int, str]:
    """Sort key of items: the canonical check order (size, int8_io, ...), then plugin checks by name."""
    from pytest_tinyml.checks.base import CANONICAL_NAMES

    try:
        return CANONICAL_NAMES.index(check), name
    except ValueError:
        return len(CANONICAL_NAMES), name


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy: tuples -> lists, Paths -> str, numpy scalars -> Python, NaN/inf -> None."""
    if depth > 40:
        return str(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v, depth + 1) for v in items]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "shape", None) == ():
        try:
            return jsonable(item(), depth + 1)
        except Exception:  # noqa: BLE001 - any odd object still becomes a string
            return str(value)
    tolist = getattr(value, "tolist", None)  # numpy arrays
    if callable(tolist):
        try:
            return jsonable(tolist(), depth + 1)
        except Exception:  # noqa: BLE001
            return str(value)
    return str(value)
