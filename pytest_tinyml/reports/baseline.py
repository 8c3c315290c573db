"""Compare a run with an earlier ``report.json``: deltas per target, and regressions beyond thresholds.

Targets are matched by label (the spec or model path as given on the command line, plus ``[mode]``);
a target whose label changed is matched by file name and mode when that is unambiguous. A baseline that
shares no target with the run, or that leaves run targets unmatched while holding unmatched targets of
its own (a rename), is a regression: nothing would otherwise be compared and the gate would pass.

The baseline file is input anyone can edit: :func:`load_baseline` refuses non-finite numbers, integers
of more than 30 digits, nesting deeper than 64 levels and anything report.schema.json does not allow,
naming the field.

A metric regresses when it gets worse by *more than* the spec's ``constraints.regression`` threshold:
``size``, ``arena`` and ``latency`` when they grow, ``accuracy`` (the deployed accuracy, percentage points)
when it falls. A metric with no threshold only shows its delta. Missing values on either side are not
compared.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tinyml._util.files import NotRegularFile, not_regular, read_regular
from pytest_tinyml.analysis.names import clip
from pytest_tinyml.checks.base import Metric
from pytest_tinyml.checks.registry import builtin_metrics
from pytest_tinyml.errors import TinyMLError
from pytest_tinyml.reports._format import fmt_delta, fmt_value, metric_unit, target_file
from pytest_tinyml.reports.collect import SCHEMA_ID, SCHEMA_VERSION

#: Baseline files above this size are refused (a report of a few hundred targets is a few MB).
MAX_BASELINE_BYTES = 64 * 1024 * 1024

_FIX = "pass a report.json written by --tinyml-report, or drop --tinyml-baseline"


def metric_table(report: dict[str, Any]) -> dict[str, Metric]:
    """The metrics a report document declares (from the checks that ran), else the built-in checks'."""
    raw = report.get("metrics")
    if not isinstance(raw, dict) or not raw:
        return builtin_metrics()
    out: dict[str, Metric] = {}
    for name, m in raw.items():
        if not isinstance(m, dict) or m.get("worse") not in (1, -1) or not isinstance(m.get("check"), str):
            continue
        threshold = m.get("threshold")
        out[str(name)] = Metric(
            name=str(name), check=m["check"], unit=str(m.get("unit") or ""), worse=int(m["worse"]),
            threshold=threshold if isinstance(threshold, str) else None,
        )
    return out


@dataclass
class Vocabulary:
    """How a report names its metrics: which check measures which metric, and the word for each."""

    metrics: dict[str, Metric]

    @classmethod
    def of(cls, report: dict[str, Any]) -> Vocabulary:
        return cls(metric_table(report))

    def metric_of(self, check: str) -> str | None:
        """``size`` -> ``size_bytes``; None for a pass/fail check."""
        return next((m.name for m in self.metrics.values() if m.check == check), None)

    def word(self, metric: str) -> str:
        """``accuracy_drop_pt`` -> ``accuracy drop``."""
        m = self.metrics.get(metric)
        return m.word if m is not None else metric


class BaselineError(TinyMLError):
    """The baseline file is missing, unreadable, or not a pytest-tinyml report this version reads."""


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a baseline ``report.json``. Raises :class:`BaselineError` (one line, with the fix)."""
    return load_report(path)


def load_report(path: str | os.PathLike[str], *, role: str = "baseline", fix: str = _FIX) -> dict[str, Any]:
    """Read and check a ``report.json`` someone hands in (``role`` names it in the errors: ``baseline``,
    ``shard``). Raises :class:`BaselineError` (one line naming the file, with ``fix``)."""
    where = os.fspath(path)
    what = f"{role} report"
    p = Path(where)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        raise BaselineError(f"{what} not found", where=where, fix=fix) from None
    except OSError as exc:
        raise BaselineError(
            f"cannot read the {what}: {exc.strerror}", where=where, fix=fix
        ) from None
    if p.is_dir():
        raise BaselineError(
            f"is a directory; the {role} is the report.json inside it",
            where=where,
            fix=f"pass {p / 'report.json'}",
        )
    if size > MAX_BASELINE_BYTES:
        raise BaselineError(
            f"{what} is {size:,} bytes, too large to be a report", where=where, fix=fix
        )
    try:
        raw = read_regular(p, MAX_BASELINE_BYTES + 1)  # O_NONBLOCK: a FIFO never blocks, /dev/zero is refused
    except NotRegularFile as exc:
        raise BaselineError(f"not a regular file: {not_regular(p) or exc.kind}", where=where, fix=fix) from None
    except OSError as exc:
        raise BaselineError(f"cannot read the {what}: {exc.strerror}", where=where, fix=fix) from None
    if len(raw) > MAX_BASELINE_BYTES:
        raise BaselineError(f"{what} is over {MAX_BASELINE_BYTES:,} bytes, too large to be a report",
                            where=where, fix=fix)
    try:
        doc = _parse_json(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BaselineError(f"{what} is not UTF-8 text", where=where, fix=fix) from None
    except json.JSONDecodeError as exc:
        raise BaselineError(
            f"{what} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            where=where,
            fix=fix,
        ) from None
    except RecursionError:
        raise BaselineError(
            f"{what} is nested more deeply than Python's JSON reader allows (a report is at most "
            f"{MAX_BASELINE_DEPTH} levels deep)",
            where=where,
            fix=fix,
        ) from None
    except OSError as exc:
        raise BaselineError(
            f"cannot read the {what}: {exc.strerror}", where=where, fix=fix
        ) from None
    problem = _bad_value(doc)
    if problem:
        raise BaselineError(f"{what} {problem}", where=where, fix=fix)
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_ID:
        raise BaselineError(f'not a pytest-tinyml report (no "schema": "{SCHEMA_ID}")', where=where, fix=fix)
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BaselineError('the report has no integer "version"', where=where, fix=fix)
    if version > SCHEMA_VERSION:
        raise BaselineError(
            f"report version {version} was written by a newer pytest-tinyml (this one reads up to {SCHEMA_VERSION})",
            where=where,
            fix=f"upgrade pytest-tinyml, or regenerate the {role} with this version",
        )
    targets = doc.get("targets")
    if not isinstance(targets, list) or not all(
        isinstance(t, dict) and isinstance(t.get("label"), str) for t in targets
    ):
        raise BaselineError(
            'the report\'s "targets" is not a list of targets with labels', where=where, fix=fix
        )
    if version == SCHEMA_VERSION:
        problem = _schema_problem(doc)
        if problem:
            raise BaselineError(
                f"{what} does not match the report schema: {problem}", where=where, fix=fix
            )
    return doc


#: A report is about 8 levels deep; anything much deeper is not one (and deep nesting exhausts the stack).
MAX_BASELINE_DEPTH = 64
#: Integers longer than this are refused (metrics are byte counts; a 5,000-digit integer is no metric).
MAX_INT_DIGITS = 30


class _Refused:
    """Placeholder the JSON reader puts where a value is refused; :func:`_bad_value` reports its path."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


def _parse_int(text: str) -> int | _Refused:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else _Refused(f"a {digits:,}-digit integer")


def _parse_float(text: str) -> float | _Refused:
    value = float(text)
    return value if math.isfinite(value) else _Refused(f"{text[:40]} (not a finite number)")


def _parse_json(text: str) -> Any:
    return json.loads(
        text,
        parse_int=_parse_int,
        parse_float=_parse_float,
        parse_constant=lambda name: _Refused(f"{name} (not a finite number)"),
    )


def _path_text(path: list[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return clip(out or "(top level)", 200)


def _bad_value(doc: Any) -> str | None:
    """The first refused value or over-deep nesting in ``doc``, as ``field X: holds ...``; None if sane."""
    stack: list[tuple[Any, list[str | int]]] = [(doc, [])]
    while stack:
        value, path = stack.pop()
        if len(path) > MAX_BASELINE_DEPTH:
            return f"is nested more than {MAX_BASELINE_DEPTH} levels deep at field {_path_text(path[:8])}..."
        if isinstance(value, _Refused):
            return f"field {_path_text(path)} holds {value.what}"
        if isinstance(value, dict):
            stack.extend((v, [*path, clip(str(k), 60)]) for k, v in reversed(list(value.items())))
        elif isinstance(value, list):
            stack.extend((v, [*path, i]) for i, v in reversed(list(enumerate(value))))
    return None


_VALIDATOR: Any = None


def _schema_problem(doc: dict[str, Any]) -> str | None:
    """The most relevant JSON Schema violation of ``doc`` (report.schema.json), or None."""
    global _VALIDATOR
    import jsonschema

    if _VALIDATOR is None:
        schema = json.loads(Path(__file__).with_name("report.schema.json").read_text(encoding="utf-8"))
        _VALIDATOR = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(_VALIDATOR.iter_errors(doc))
    if error is None:
        return None
    where = _path_text(list(error.absolute_path))
    if error.validator == "required" or error.validator == "additionalProperties":
        return f"{where}: {clip(error.message, 200)}"
    return f"field {where}: {clip(repr(error.instance), 80)} is not valid ({error.validator} {clip(str(error.validator_value), 80)})"


@dataclass
class Delta:
    metric: str
    baseline: float
    current: float
    threshold: float | None
    regression: bool
    word: str = ""  # how people name the metric (default: the metric's name)
    spec_key: str | None = None  # the spec key that sets its threshold

    @property
    def delta(self) -> float:
        return self.current - self.baseline

    @property
    def name(self) -> str:
        return self.word or self.metric

    def text(self) -> str:
        """``size +3.2 KiB``."""
        return f"{self.name} {fmt_delta(self.metric, self.delta)}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "delta": self.delta,
            "threshold": self.threshold,
            "regression": self.regression,
        }


@dataclass
class Comparison:
    """The outcome of comparing a report with its baseline."""

    path: str
    generated: str | None = None
    deltas: dict[str, list[Delta]] = field(default_factory=dict)  # current label -> deltas
    matched: dict[str, str] = field(default_factory=dict)  # current label -> baseline label
    regressions: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # baseline targets with no current counterpart
    new: list[str] = field(default_factory=list)  # current targets the baseline lacks

    def delta(self, label: str, metric: str) -> Delta | None:
        for d in self.deltas.get(label, []):
            if d.metric == metric:
                return d
        return None


def _key(target: dict[str, Any]) -> tuple[str, str]:
    """What a target is matched by when its label changed: its file's name and its mode."""
    return os.path.basename(target_file(target)), str(target.get("mode") or "")


def _match(current: list[dict[str, Any]], base: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    by_label = {t["label"]: t for t in base}
    out: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for t in current:
        b = by_label.get(t["label"])
        if b is not None:
            out[t["label"]] = b
            used.add(b["label"])
    loose: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for b in base:
        if b["label"] not in used:
            loose.setdefault(_key(b), []).append(b)
    cur_loose: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for t in current:
        if t["label"] not in out:
            cur_loose.setdefault(_key(t), []).append(t)
    for key, ts in cur_loose.items():
        bs = loose.get(key, [])
        if len(ts) == 1 and len(bs) == 1:
            out[ts[0]["label"]] = bs[0]
    return out


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return value


def _regression_text(label: str, d: Delta) -> str:
    unit = metric_unit(d.metric)
    word, key = d.name, d.spec_key
    change = "grew" if d.delta > 0 else "fell"
    amount = fmt_delta(d.metric, d.delta).lstrip("+-±")
    allowed = fmt_delta(d.metric, d.threshold).lstrip("+-±") if d.threshold is not None else "?"
    if unit in ("%", "pt"):
        allowed = f"{d.threshold:g} pt"
    return (
        f"{label}: {word} {change} by {amount} ({fmt_value(d.baseline, unit)} → {fmt_value(d.current, unit)}), "
        f"more than the {allowed} allowed by {key}"
    )


def compare(report: dict[str, Any], baseline: dict[str, Any], path: str) -> Comparison:
    """Deltas and regressions of ``report`` (current run) against ``baseline`` (both report dicts).

    Thresholds come from each current target's ``regression_thresholds``.
    """
    comp = Comparison(
        path=path, generated=baseline.get("generated") if isinstance(baseline.get("generated"), str) else None
    )
    metrics = metric_table(report)
    current = [t for t in report.get("targets", []) if isinstance(t, dict)]
    base = [t for t in baseline.get("targets", []) if isinstance(t, dict) and isinstance(t.get("label"), str)]
    matched = _match(current, base)
    for t in current:
        b = matched.get(t["label"])
        if b is None:
            comp.new.append(t["label"])
            continue
        comp.matched[t["label"]] = b["label"]
        now = t.get("metrics") or {}
        raw = b.get("metrics")
        before: dict[str, Any] = raw if isinstance(raw, dict) else {}
        thresholds = t.get("regression_thresholds") or {}
        deltas = []
        for metric, m in metrics.items():
            cur, old = _as_number(now.get(metric)), _as_number(before.get(metric))
            if cur is None or old is None:
                continue
            threshold = _as_number(thresholds.get(metric))
            worse_by = (cur - old) * m.worse
            regression = threshold is not None and worse_by > threshold + 1e-9 * max(abs(threshold), 1.0)
            d = Delta(metric=metric, baseline=old, current=cur, threshold=threshold, regression=regression,
                      word=m.word, spec_key=m.spec_key)
            deltas.append(d)
            if regression:
                comp.regressions.append(_regression_text(t["label"], d))
        comp.deltas[t["label"]] = deltas
    seen = set(comp.matched.values())
    comp.missing = [b["label"] for b in base if b["label"] not in seen]
    # A baseline the run cannot be compared with must not read as "no regressions".
    if current and not comp.matched:
        have = ", ".join(clip(b["label"], 80) for b in base[:5]) or "none"
        comp.regressions.append(
            f"baseline {clip(path, 200)} shares no target with this run (baseline targets: {have}); nothing was "
            "compared: regenerate the baseline with --tinyml-report, or pass the baseline of these targets"
        )
    elif comp.new and comp.missing:
        comp.regressions.append(
            f"targets {', '.join(clip(x, 80) for x in comp.new[:5])} are not in baseline {clip(path, 200)}, which has "
            f"{', '.join(clip(x, 80) for x in comp.missing[:5])} instead (renamed?); they were not compared: "
            "regenerate the baseline with --tinyml-report after renaming"
        )
    return comp


def annotate(report: dict[str, Any], comp: Comparison) -> None:
    """Write the comparison into the report document (``baseline`` sections)."""
    for t in report.get("targets", []):
        label = t["label"]
        if label in comp.matched:
            t["baseline"] = {
                "label": comp.matched[label],
                "deltas": [d.to_dict() for d in comp.deltas.get(label, [])],
            }
    report["baseline"] = {
        "path": comp.path,
        "generated": comp.generated,
        "regressions": list(comp.regressions),
        "missing_targets": list(comp.missing),
        "new_targets": list(comp.new),
    }
