"""The one comparison table across targets (size, flash, arena, latency, verdicts), for the terminal,
report.md and report.html alike. Built from report documents' targets (``label``, ``board``, ``metrics``,
``items``)."""

from __future__ import annotations

import os
from typing import Any

from pytest_tinyml.fmt import fmt_value
from pytest_tinyml.kinds import ItemStatus
from pytest_tinyml.reports._format import ATTENTION, target_file

#: The metric columns, in order: (column title, metric, unit).
COLUMNS = (
    ("size", "size_bytes", "B"),
    ("flash", "flash_bytes", "B"),
    ("arena", "arena_bytes", "B"),
    ("latency", "latency_seconds", "s"),
)
STATUSES = ATTENTION


def short_labels(targets: list[dict[str, Any]]) -> tuple[dict[str, str], str]:
    """Report targets' labels without the directory their files all share: ({label: short label}, shared
    directory or "")."""
    labels = [t["label"] for t in targets]
    if len(labels) < 2:
        return {label: label for label in labels}, ""
    dirs = [os.path.dirname(target_file(t)) for t in targets]
    try:
        common = os.path.commonpath(dirs) if all(dirs) else ""
    except ValueError:  # absolute and relative mixed
        common = ""
    if not common:
        return {label: label for label in labels}, ""
    prefix = common.rstrip("/") + "/"
    return {label: label[len(prefix):] if label.startswith(prefix) else label for label in labels}, common


def verdict_counts(items: list[dict[str, Any]]) -> str:
    """``'5 passed, 1 failed'`` (failures first)."""
    counts: dict[str, int] = {}
    for i in items:
        counts[i["status"]] = counts.get(i["status"], 0) + 1
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if counts.get(s))


def worst(items: list[dict[str, Any]]) -> str:
    for status in STATUSES:
        if any(i["status"] == status for i in items):
            return status
    return ItemStatus.PASSED


def rows(targets: list[dict[str, Any]]) -> tuple[list[str], list[list[str]], str]:
    """(header, one row per target, a title). The title names the directory the labels share and the board
    when all targets share one (then there is no board column); a column no target measured is left out, and
    so is the runtime column when no firmware item ran."""
    shorts, common = short_labels(targets)
    columns = [c for c in COLUMNS if any((t.get("metrics") or {}).get(c[1]) is not None for t in targets)]
    boards = {str(t.get("board") or "-") for t in targets}
    one_board = len(boards) == 1
    runtime = any(t.get("runtime") for t in targets)  # the firmware runtime that measured latency and RAM
    header = ["target", *([] if one_board else ["board"]), *(["runtime"] if runtime else []), *(c[0] for c in columns),
              "verdicts"]
    out = []
    for t in targets:
        metrics = t.get("metrics") or {}
        out.append(
            [
                shorts[t["label"]],
                *([] if one_board else [str(t.get("board") or "-")]),
                *([str(t.get("runtime") or "-")] if runtime else []),
                *(fmt_value(metrics.get(metric), unit) for _, metric, unit in columns),
                verdict_counts(t.get("items") or []),
            ]
        )
    title = f"{len(targets)} targets" + (f" in {common}/" if common else "") + (
        f" on {next(iter(boards))}" if one_board else "")
    return header, out, title
