"""Combine the ``report.json`` of several shards (runs of one suite split over CI runners) into one report.

The merged document is the one a single run over all the shards' items would have written: targets in
the order :func:`~pytest_tinyml.reports.collect.build_report` puts them (sorted by label), the summary
counted again from the items, a new ``generated`` time, and the baseline comparison (if any) made on the
merged result, exactly as ``--tinyml-baseline`` does in a run. A target whose items ran in several shards
(a split by item, as pytest-split makes) is joined again: its items together, each section from the shard
that measured it.

Shards are input anyone can edit: each is read with the checks a baseline gets
(:func:`~pytest_tinyml.reports.baseline.load_report`: size, JSON, depth, report.schema.json), and shards
from another pytest-tinyml version, with another metrics table, or holding an item or a target another
shard holds are refused. Every refusal is one :class:`MergeError` line naming the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_tinyml._util.jsonsafe import jsonsafe
from pytest_tinyml.analysis.names import clip
from pytest_tinyml.checks.base import Metric
from pytest_tinyml.errors import TinyMLError
from pytest_tinyml.kinds import ItemStatus
from pytest_tinyml.reports._format import BAD, item_order
from pytest_tinyml.reports.baseline import (
    BaselineError,
    Comparison,
    annotate,
    compare,
    load_baseline,
    load_report,
    metric_table,
)
from pytest_tinyml.reports.collect import SCHEMA_ID, SCHEMA_VERSION
from pytest_tinyml.reports.npu import npu_section

_FIX = "pass the folders each shard's --tinyml-report wrote (or their report.json)"


class MergeError(TinyMLError):
    """A shard cannot be merged (unreadable, invalid, another version, or overlapping another shard)."""


@dataclass
class Shard:
    """One shard's report document and the file it came from (as the user named it)."""

    path: str
    report: dict[str, Any]


@dataclass
class MergeOutcome:
    """What :func:`merge` did: the merged ``report``, the files ``written``, baseline ``regressions``, and
    ``errors`` writing the files (one line each)."""

    report: dict[str, Any]
    comparison: Comparison | None = None
    regressions: list[str] = field(default_factory=list)
    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed_items(self) -> int:
        summary = self.report.get("summary") or {}
        return sum(int(summary.get(status) or 0) for status in BAD)


def read_shard(path: str | os.PathLike[str]) -> Shard:
    """The shard at ``path``: a folder ``--tinyml-report`` wrote (its ``report.json``) or the file itself."""
    where = Path(path)
    file = where / "report.json" if where.is_dir() else where
    try:
        doc = load_report(file, role="shard", fix=_FIX)
    except BaselineError as exc:
        raise MergeError(exc.message, where=exc.where, fix=exc.fix) from None
    if doc.get("version") != SCHEMA_VERSION:
        raise MergeError(
            f"report version {doc.get('version')} was written by an older pytest-tinyml (this one merges version "
            f"{SCHEMA_VERSION})",
            where=str(file),
            fix="run every shard with the same pytest-tinyml as the merge",
        )
    if not isinstance(doc.get("metrics"), dict):
        raise MergeError('the report has no "metrics" table', where=str(file),
                         fix="run every shard with the same pytest-tinyml as the merge")
    return Shard(str(file), doc)


#: What identifies a target: shards that judged parts of one target must agree on these.
_IDENTITY = ("kind", "spec", "spec_name", "mode", "board", "regression_thresholds")
#: Sections measured once per target: any shard that measured them has the same value.
_SECTIONS = ("runtime", "runtime_note", "model_path", "sha256", "size_bytes", "model", "arena", "flash",
             "accuracy", "latency")


def _join(label: str, parts: list[tuple[str, dict[str, Any]]], metrics: dict[str, Metric]) -> dict[str, Any]:
    """One target from the parts of it that several shards judged (a split by item, e.g. pytest-split): the
    target :func:`~pytest_tinyml.reports.collect.build_report` makes from all its items' records. Each
    section comes from a shard that measured it; a metric from the shard that ran its check."""
    first_path, first = parts[0]
    if len(parts) == 1:
        return {**first, "baseline": None}
    out = {**first, "baseline": None}
    for path, target in parts[1:]:
        for key in (*_IDENTITY, "sha256"):
            mine, theirs = first.get(key), target.get(key)
            if mine != theirs and not (key == "sha256" and (mine is None or theirs is None)):
                raise MergeError(
                    f"target {clip(label, 200)} has another {key} than in {clip(first_path, 200)} "
                    f"({clip(repr(theirs), 80)}, not {clip(repr(mine), 80)})",
                    where=path,
                    fix="run every shard over the same files, board and specs",
                )
    for key in _SECTIONS:
        out[key] = next((t[key] for _, t in parts if t.get(key) is not None), None)
    items = [item for _, t in parts for item in t.get("items") or []]
    out["items"] = sorted(items, key=lambda i: item_order(str(i["check"]), str(i["name"])))
    npu = npu_section(out["items"])  # from the joined items: its parts may come from several shards
    out = {k: v for k, v in out.items() if k != "npu"}
    if npu is not None:  # where one run's report has it: after latency
        keys = list(out)
        at = keys.index("latency") + 1 if "latency" in keys else len(keys)
        out = {**{k: out[k] for k in keys[:at]}, "npu": npu, **{k: out[k] for k in keys[at:]}}
    checks = {str(i["check"]) for i in items}
    values: dict[str, Any] = {}
    for name in first.get("metrics") or {}:
        metric = metrics.get(name)
        ran = [t for _, t in parts
               if metric is not None and any(i["check"] == metric.check for i in t.get("items") or [])]
        found = [(t.get("metrics") or {}).get(name) for t in ran + [t for _, t in parts]]
        values[name] = next((v for v in found if v is not None), None)
    out["metrics"] = values
    notes: list[str] = []
    for n, (_, t) in enumerate(parts):
        seen = set(notes)  # a note another shard already gave (the first shard's are all kept)
        for note in t.get("notes") or []:
            check = note.split(": not measured (", 1)[0] if ": not measured (" in note else None
            if (n and note in seen) or (check is not None and check in checks):
                continue  # an item of that name ran in another shard
            if note.startswith("model facts left out: the model was not built") and out.get("model") is not None:
                continue
            notes.append(note)
    out["notes"] = notes
    return out


def _version(shard: Shard) -> str:
    return str((shard.report.get("tool") or {}).get("version"))


def combine(shards: list[Shard], *, generated: datetime | None = None) -> dict[str, Any]:
    """The one report document of ``shards`` (their baseline sections dropped). Raises :class:`MergeError`."""
    from pytest_tinyml import __version__

    if not shards:
        raise MergeError("no shard to merge", fix=_FIX)
    first = shards[0]
    for shard in shards:
        if _version(shard) != str(__version__):
            raise MergeError(
                f"written by pytest-tinyml {clip(_version(shard), 40)}, this merge is pytest-tinyml {__version__}",
                where=shard.path,
                fix="run every shard and the merge with the same pytest-tinyml",
            )
        if shard.report["metrics"] != first.report["metrics"]:
            names = sorted(set(shard.report["metrics"]) ^ set(first.report["metrics"])) or ["their declarations"]
            raise MergeError(
                f"declares other metrics than {clip(first.path, 200)} (differing: "
                f"{clip(', '.join(map(str, names)), 200)})",
                where=shard.path,
                fix="run every shard with the same plugins and conftest checks",
            )
    owner: dict[str, str] = {}  # node id -> shard path
    parts: dict[str, list[tuple[str, dict[str, Any]]]] = {}  # label -> (shard path, target) per shard
    for shard in shards:
        for target in shard.report["targets"]:
            for item in target.get("items") or []:
                nodeid = str(item.get("nodeid"))
                if nodeid in owner:
                    raise MergeError(
                        f"item {clip(nodeid, 200)} is also in {clip(owner[nodeid], 200)}",
                        where=shard.path,
                        fix="give every shard different items (each item must run in exactly one shard)",
                    )
                owner[nodeid] = shard.path
            parts.setdefault(target["label"], []).append((shard.path, target))
    metrics = metric_table(first.report)
    by_label = {label: _join(label, found, metrics) for label, found in parts.items()}
    targets = [by_label[label] for label in sorted(by_label)]  # the order build_report gives
    counts: dict[str, int] = {s: 0 for s in ItemStatus}
    for target in targets:
        for item in target.get("items") or []:
            counts[item["status"]] = counts.get(item["status"], 0) + 1
    when = generated or datetime.now(timezone.utc)
    doc = {
        "schema": SCHEMA_ID,
        "version": SCHEMA_VERSION,
        "generated": when.isoformat(timespec="seconds"),
        "tool": {"name": "pytest-tinyml", "version": str(__version__)},
        "summary": {"targets": len(targets), **counts},
        "metrics": first.report["metrics"],
        "targets": targets,
        "baseline": None,
    }
    result: dict[str, Any] = jsonsafe(doc)
    return result


def merge(
    out_dir: str | os.PathLike[str],
    shard_paths: list[str],
    *,
    baseline: str | os.PathLike[str] | None = None,
    plots: bool = True,
) -> MergeOutcome:
    """Read the shards, combine them, compare the result with ``baseline`` and write report.json, report.md
    and report.html to ``out_dir``. Raises :class:`MergeError` for a shard or baseline it refuses (before
    writing anything); problems writing the files are in :attr:`MergeOutcome.errors`."""
    from pytest_tinyml.reports import write_reports

    base = None
    if baseline is not None:
        try:
            base = load_baseline(baseline)
        except BaselineError as exc:
            raise MergeError(exc.message, where=exc.where, fix=exc.fix) from None
    report = combine([read_shard(p) for p in shard_paths])
    outcome = MergeOutcome(report=report)
    if base is not None and baseline is not None:
        comp = compare(report, base, os.fspath(baseline))
        annotate(report, comp)
        outcome.comparison = comp
        outcome.regressions = list(comp.regressions)
    written, errors, notes = write_reports(report, Path(out_dir), plots=plots)
    outcome.written, outcome.errors, outcome.notes = written, errors, notes
    return outcome
