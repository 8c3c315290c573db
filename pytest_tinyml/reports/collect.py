"""Gather what a run measured into one plain, JSON-ready dict (the ``report.json`` document).

Built only from the items' records (:mod:`pytest_tinyml.records`: verdicts, the target each judged and the
facts measured by then), which reach the controller the same way serially and under pytest-xdist, plus
the ``.tflite`` file a record names, parsed again for model facts (milliseconds; no build, no TFLM, no
firmware). A missing or failing source leaves its section out (``null``) with a line in the target's
``notes``: a report never fails the run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_tinyml._util.jsonsafe import jsonsafe
from pytest_tinyml.checks.base import Metric, metrics_of
from pytest_tinyml.checks.registry import builtin_metrics
from pytest_tinyml.errors import NotEvaluable, TinyMLError
from pytest_tinyml.kinds import ItemStatus, Runtime
from pytest_tinyml.records import ESCAPED_NAME, ItemRecord, TargetRecord
from pytest_tinyml.reports._format import item_order, one_line
from pytest_tinyml.reports.npu import npu_section
from pytest_tinyml.reports.profile import target_latency

log = logging.getLogger(__name__)

SCHEMA_ID = "pytest-tinyml/report"
SCHEMA_VERSION = 1


def session_metrics(session: Any) -> dict[str, Metric]:
    """The metrics the session's registered checks declare (the built-in ones for a lookalike without)."""
    checks = getattr(session, "checks", None)
    return metrics_of(checks) if checks else builtin_metrics()


def _guard(notes: list[str], what: str, fn: Callable[[], Any]) -> Any:
    """Run one report section; on any error leave it out with a note (reports never fail the run)."""
    try:
        return fn()
    except (TinyMLError, NotEvaluable) as exc:
        notes.append(f"{what} left out: {one_line(exc, 300)}")
    except Exception as exc:  # noqa: BLE001 - a report must not crash the run
        log.warning("pytest-tinyml report: %s failed", what, exc_info=True)
        notes.append(f"{what} left out: {type(exc).__name__}: {one_line(exc, 200)}")
    return None


# --- model facts -----------------------------------------------------------------------------------
def tensor_lifetimes(info: Any, subgraph: int = 0) -> dict[int, tuple[int, int]]:
    """For each non-constant tensor of ``subgraph``: (first op index, last op index) it is live.

    A tensor is live from the op that produces it (graph inputs and variables from op 0) to the last op
    that reads it (graph outputs and variables to the last op). A tensor produced and never read is live
    during its producer only. Constants and tensors no op touches are left out.
    """
    sg = info.subgraphs[subgraph]
    n_ops = len(sg.ops)
    if n_ops == 0:
        return {}
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for i in sg.inputs:
        first[i] = 0
    for op in sg.ops:
        for t in op.outputs:
            if t >= 0 and t not in first:
                first[t] = op.index
        for t in op.inputs:
            if t >= 0:
                last[t] = max(last.get(t, -1), op.index)
                first.setdefault(t, op.index)  # read but never written: live from its first reader
    for t in sg.outputs:
        last[t] = n_ops - 1
        first.setdefault(t, n_ops - 1)
    out: dict[int, tuple[int, int]] = {}
    for t, start in first.items():
        tensor = sg.tensors[t]
        if tensor.is_constant:
            continue
        if tensor.is_variable:
            out[t] = (0, n_ops - 1)
            continue
        end = max(last.get(t, start), start)
        out[t] = (start, end)
    return out


def model_facts(info: Any) -> dict[str, Any]:
    """Ops, per-layer parameters / MACs / weight bytes, and tensors with their lifetimes."""
    counts: dict[str, int] = {}
    for op in info.ops:
        counts[op.name] = counts.get(op.name, 0) + 1
    ops = [{"name": n, "count": c} for n, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    layers = []
    for op in info.ops:
        tensors = info.subgraphs[op.subgraph].tensors
        consts = [tensors[i] for i in op.inputs if 0 <= i < len(tensors) and tensors[i].is_constant]
        outs = [tensors[i] for i in op.outputs if 0 <= i < len(tensors)]
        layers.append(
            {
                "index": op.index,
                "subgraph": op.subgraph,
                "op": op.name,
                "params": sum(t.num_elements for t in consts),
                "macs": int(op.macs),
                "weight_bytes": int(op.weight_bytes),
                "output": outs[0].name if outs else None,
                "output_shape": list(outs[0].shape) if outs else [],
                "output_dtype": outs[0].dtype if outs else None,
            }
        )
    tensors_out = []
    for sg in info.subgraphs:
        lives = tensor_lifetimes(info, sg.index)
        for t in sg.tensors:
            first, last = lives.get(t.index, (None, None))
            tensors_out.append(
                {
                    "subgraph": t.subgraph,
                    "index": t.index,
                    "name": t.name,
                    "shape": list(t.shape),
                    "dtype": t.dtype,
                    "nbytes": int(t.nbytes),
                    "is_constant": bool(t.is_constant),
                    "first_op": first,
                    "last_op": last,
                }
            )
    return {
        "quantization": str(info.quantization),
        "size_bytes": int(info.size_bytes),
        "weight_bytes": int(info.weight_bytes),
        "total_macs": int(info.total_macs),
        "num_ops": len(layers),
        "ops": ops,
        "layers": layers,
        "tensors": tensors_out,
        "inputs": [_io(t) for t in info.inputs],
        "outputs": [_io(t) for t in info.outputs],
    }


def _io(t: Any) -> dict[str, Any]:
    return {
        "name": t.name,
        "shape": list(t.shape),
        "dtype": t.dtype,
        "scale": [float(s) for s in t.scale][:1],
        "zero_point": [int(z) for z in t.zero_point][:1],
    }


# --- per-target sections ---------------------------------------------------------------------------
def _verdicts(rows: list[ItemRecord]) -> dict[str, dict[str, Any]]:
    """Check name -> verdict dict (item names carry a ``[mode]`` suffix in multi-mode specs)."""
    return {r.check: r.verdict for r in rows if isinstance(r.verdict, dict)}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def merged(rows: list[ItemRecord]) -> TargetRecord:
    """One target's record from its items' records: facts added up, the first known model path."""
    info = TargetRecord.from_dict(asdict(rows[0].info))
    for r in rows:
        for key, value in r.info.facts.items():
            if key == "not_measured" and isinstance(value, dict):
                info.facts.setdefault(key, {}).update(value)
            elif value is not None:
                info.facts[key] = value
        info.model_path = info.model_path or r.info.model_path
        info.runtime = info.runtime or r.info.runtime
    for name in list(info.facts.get("not_measured") or {}):
        if name in info.facts:  # measured by a later item after all
            del info.facts["not_measured"][name]
    return info


def _accuracy(facts: dict[str, Any], verdicts: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    measured = facts.get("accuracy") or {}
    stages: dict[str, Any] = dict(measured.get("stages") or {})
    drop = _number(measured.get("drop_points"))
    ci = measured.get("drop_ci")
    drop_ci: list[float] | None = list(ci) if isinstance(ci, (list, tuple)) and len(ci) == 2 else None
    for name in ("accuracy", "accuracy_drop"):
        v = verdicts.get(name)
        if v and not stages:
            stages = dict((v.get("extra") or {}).get("stages") or {})
    dv = verdicts.get("accuracy_drop")
    if dv:
        drop = _number(dv.get("measured")) if drop is None else drop
        ci = (dv.get("extra") or {}).get("ci")
        if drop_ci is None and isinstance(ci, (list, tuple)) and len(ci) == 2:
            drop_ci = list(ci)
    if not stages and drop is None:
        return None
    rows = []
    for name, value in stages.items():
        acc, n, lo, hi = (list(value) + [None] * 4)[:4]
        rows.append({"name": str(name), "accuracy_pct": acc, "n": n, "ci_low": lo, "ci_high": hi})
    return {"stages": rows, "drop_points": drop, "drop_ci": drop_ci}


def _arena(facts: dict[str, Any], verdicts: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    arena = facts.get("arena")
    if isinstance(arena, dict) and _number(arena.get("bytes")) is not None:
        return {"bytes": int(arena["bytes"]), "host_bytes": _number(arena.get("host_bytes")),
                "method": arena.get("method") if isinstance(arena.get("method"), str) else None}
    v = verdicts.get("arena")
    if v and _number(v.get("measured")) is not None:
        extra = v.get("extra") or {}
        return {"bytes": int(v["measured"]), "host_bytes": _number(extra.get("host_bytes")), "method": None}
    return None


def _flash(facts: dict[str, Any], verdicts: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    flash = facts.get("flash")
    if isinstance(flash, dict) and _number(flash.get("bytes")) is not None:
        return {"bytes": int(flash["bytes"]), "model_bytes": _number(flash.get("model_bytes")),
                "runtime_code_bytes": _number(flash.get("runtime_code_bytes"))}
    v = verdicts.get("flash")
    if v and _number(v.get("measured")) is not None:
        extra = v.get("extra") or {}
        return {
            "bytes": int(v["measured"]),
            "model_bytes": _number(extra.get("model_bytes")),
            "runtime_code_bytes": _number(extra.get("runtime_code_bytes")),
        }
    return None


def read_model(path: Path | None) -> bytes | None:
    """The bytes of the model file a record names (None when there is none), read under the same size
    limit as the items read it (:func:`pytest_tinyml.analysis.model.load_model_bytes`)."""
    if path is None or not path.is_file():
        return None
    from pytest_tinyml.analysis.model import load_model_bytes

    return load_model_bytes(path)


def _item(r: ItemRecord) -> dict[str, Any]:
    v = r.verdict if isinstance(r.verdict, dict) else {}
    return {
        "nodeid": r.nodeid,
        "name": r.name,
        "check": r.check,
        "status": r.status,
        "passed": v.get("passed") if v else None,
        "measured": v.get("measured"),
        "limit": v.get("limit"),
        "unit": v.get("unit"),
        "message": one_line(v.get("message") or r.message or ""),
        "details": [str(d) for d in v.get("details") or []],
        "fix": v.get("fix"),
        "extra": v.get("extra") or {},
    }


def _metrics(
    metrics: dict[str, Metric],
    verdicts: dict[str, dict[str, Any]],
    size: int | None,
    arena: dict[str, Any] | None,
    flash: dict[str, Any] | None,
    accuracy: dict[str, Any] | None,
) -> dict[str, float | None]:
    """Every declared metric: the measured value of its check's verdict, else what the run's other
    sources give for the built-in ones (file size, arena/flash sections, accuracy stages)."""
    fallback: dict[str, Any] = {
        "size_bytes": size,
        "flash_bytes": (flash or {}).get("bytes"),
        "arena_bytes": (arena or {}).get("bytes"),
        "accuracy_drop_pt": _number((accuracy or {}).get("drop_points")),
    }
    if accuracy:
        by_name = {s["name"]: s["accuracy_pct"] for s in accuracy["stages"]}
        fallback["accuracy_pct"] = next(
            (by_name[stage] for stage in ("litert", "tflm") if _number(by_name.get(stage)) is not None), None
        )
    out: dict[str, float | None] = {}
    for name in (*builtin_metrics(), *metrics):  # the built-in names are always present (schema)
        metric = metrics.get(name)
        v = verdicts.get(metric.check) if metric is not None else None
        value = _number(v.get("measured")) if v else None
        out[name] = value if value is not None else fallback.get(name)
    return out


def _thresholds(info: TargetRecord, metrics: dict[str, Metric]) -> dict[str, float]:
    """Regression thresholds (``constraints.regression``) by metric name."""
    out: dict[str, float] = {}
    for metric in metrics.values():
        value = info.regression.get(metric.threshold) if metric.threshold else None
        if _number(value) is not None:
            out[metric.name] = value  # type: ignore[assignment]
    return out


def firmware_runtime(verdicts: Any) -> tuple[str | None, str | None]:
    """(``'tflm cmsis_nn'``, ``'tflm reference'`` or ``'tinyml'``, why that runtime ran) from the verdicts of
    the firmware items (their ``extra``: ``runtime``, ``kernels``, ``runtime_note``); (None, None) when no
    firmware item ran. Several runtimes (a run cannot mix them today) are joined with ``/``."""
    names: list[str] = []
    note: str | None = None
    for v in verdicts:
        extra = v.get("extra") if isinstance(v, dict) else None
        runtime = extra.get("runtime") if isinstance(extra, dict) else None
        if not isinstance(runtime, str) or not runtime:
            continue
        kernels = extra.get("kernels") if isinstance(extra, dict) else None
        name = f"{runtime} {kernels}" if runtime == Runtime.TFLM and isinstance(kernels, str) and kernels else runtime
        if name not in names:
            names.append(one_line(name, 60))
        why = extra.get("runtime_note") if isinstance(extra, dict) else None
        if note is None and isinstance(why, str) and why:
            note = one_line(why, 300)
    return ("/".join(names) if names else None), note


def _target(rows: list[ItemRecord], metrics: dict[str, Metric], read: bool = True) -> dict[str, Any]:
    notes: list[str] = []
    info = merged(rows)
    verdicts = _verdicts(rows)
    checks = {r.check for r in rows}
    for name, why in (info.facts.get("not_measured") or {}).items():
        if name not in checks:  # an item of that name already says why
            notes.append(f"{name}: not measured ({one_line(why, 200)})")
    if info.facts.get(ESCAPED_NAME):
        notes.append(str(info.facts[ESCAPED_NAME]))
    path = Path(info.model_path) if info.model_path else None
    data = _guard(notes, "model file", lambda: read_model(path)) if read else None
    if data is None and not any("model" in n for n in notes):
        notes.append("model facts left out: the model was not built or read in this run")
    parsed = _guard(notes, "model facts", lambda: _parse(data, path)) if data is not None else None
    model = _guard(notes, "model facts", lambda: model_facts(parsed)) if parsed is not None else None
    arena = _guard(notes, "arena", lambda: _arena(info.facts, verdicts))
    flash = _guard(notes, "flash", lambda: _flash(info.facts, verdicts))
    accuracy = _guard(notes, "accuracy", lambda: _accuracy(info.facts, verdicts))
    size = len(data) if data is not None else None
    latency = _guard(notes, "latency", lambda: target_latency(rows))
    values = _metrics(metrics, verdicts, size, arena, flash, accuracy)
    if values.get("latency_seconds") is None and latency:
        values["latency_seconds"] = latency["seconds"]  # the estimate, shown as information
    runtime, runtime_note = firmware_runtime(verdicts.values())
    items = sorted((_item(r) for r in rows), key=lambda i: item_order(i["check"], i["name"]))
    npu = _guard(notes, "npu", lambda: npu_section(items))
    return {
        "label": info.label,
        "kind": info.kind,
        "spec": info.spec,
        "spec_name": info.spec_name,
        "mode": info.mode,
        "board": info.board,
        "runtime": runtime,
        "runtime_note": runtime_note,
        "model_path": str(path) if path is not None else None,
        "sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
        "size_bytes": size,
        "items": items,
        "metrics": values,
        "regression_thresholds": _thresholds(info, metrics),
        "model": model,
        "arena": arena,
        "flash": flash,
        "accuracy": accuracy,
        "latency": latency,
        **({"npu": npu} if npu is not None else {}),  # targets without an NPU item: unchanged
        "notes": notes,
        "baseline": None,
    }


def _parse(data: bytes, path: Path | None) -> Any:
    from pytest_tinyml.analysis.model import parse_model

    return parse_model(data, str(path) if path is not None else "model")


def build_report(session: Any, *, generated: datetime | None = None, model_files: bool = True) -> dict[str, Any]:
    """The report document for ``session`` (a :class:`~pytest_tinyml.session.TinyMLSession` or lookalike
    with ``.results``, a list of :class:`~pytest_tinyml.records.ItemRecord`, and optionally ``.checks``).
    Never raises for a missing measurement. ``model_files=False`` leaves out what needs the model files
    (model facts, sha256, file size): enough for the terminal's comparison table."""
    results: list[ItemRecord] = list(getattr(session, "results", None) or [])
    metrics = session_metrics(session)
    by_label: dict[str, list[ItemRecord]] = {}
    for r in results:
        by_label.setdefault(r.target, []).append(r)
    out = [_target(by_label[label], metrics, model_files) for label in sorted(by_label)]  # the same order under xdist
    counts: dict[str, int] = {s: 0 for s in ItemStatus}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    when = generated or datetime.now(timezone.utc)
    from pytest_tinyml import __version__ as version

    doc = {
        "schema": SCHEMA_ID,
        "version": SCHEMA_VERSION,
        "generated": when.isoformat(timespec="seconds"),
        "tool": {"name": "pytest-tinyml", "version": str(version)},
        "summary": {"targets": len(out), **counts},
        "metrics": {name: metric.to_dict() for name, metric in metrics.items()},
        "targets": out,
        "baseline": None,
    }
    result: dict[str, Any] = jsonsafe(doc)
    return result
