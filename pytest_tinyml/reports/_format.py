"""What the terminal, Markdown and HTML reports share: status marks, item order, JSON-safe values
(units and numbers are formatted by :mod:`pytest_tinyml.fmt`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_tinyml.fmt import (  # noqa: F401  (re-exported for the report renderers)
    fmt_bytes,
    fmt_delta,
    fmt_size_delta,
    fmt_value,
    metric_unit,
    one_line,
)
from pytest_tinyml.kinds import ItemStatus

STATUS_MARK = {ItemStatus.PASSED: "PASS", ItemStatus.FAILED: "FAIL", ItemStatus.SKIPPED: "SKIP", ItemStatus.ERROR: "ERROR"}
#: Item statuses in the order reports list them: what needs attention first.
ATTENTION = (ItemStatus.FAILED, ItemStatus.ERROR, ItemStatus.PASSED, ItemStatus.SKIPPED)
#: Sort order of item statuses in reports.
STATUS_ORDER = {status: i for i, status in enumerate(ATTENTION)}
#: The statuses of items that did not pass and did not skip.
BAD = (ItemStatus.FAILED, ItemStatus.ERROR)


def item_order(check: str, name: str) -> tuple[int, str]:
    """Sort key of items: the canonical check order (size, int8_io, ...), then plugin checks by name."""
    from pytest_tinyml.checks.base import CANONICAL_NAMES

    try:
        return CANONICAL_NAMES.index(check), name
    except ValueError:
        return len(CANONICAL_NAMES), name


def target_file(target: Mapping[str, Any]) -> str:
    """The spec or model file a report target judged, as displayed: its ``spec``, else its ``label`` (a
    target of one quantization mode of several is labelled ``<spec>[<mode>]`` and carries its ``mode``)."""
    spec = target.get("spec")
    return spec if isinstance(spec, str) and spec else str(target["label"])


