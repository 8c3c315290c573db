"""Gather what a run measured into one plain, JSON-ready dict (the ``report.json`` document).

Sources, in order of preference:

1. the verdicts in the item results (these reach the controller under pytest-xdist too);
2. measurements already computed in this process (``Measurements.__dict__["_cache_<name>"]``);
3. the ``.tflite`` file itself, parsed again for model facts (milliseconds; no build, no TFLM, no firmware).

Nothing here triggers a build, a TFLM allocation or a firmware run. A missing or failing source leaves
its section out (``null``) with a line in the target's ``notes``: a report never fails the run.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_tinyml.errors import NotEvaluable, TinyMLError
from pytest_tinyml.reports._format import item_order, jsonable, one_line
from pytest_tinyml.reports.profile import latency_section

log = logging.getLogger(__name__)

SCHEMA_ID = "pytest-tinyml/report"
SCHEMA_VERSION = 1

#: Metrics compared with a baseline: name -> (direction in which it gets worse, RegressionSpec field).
METRICS: dict[str, tuple[int, str | None]] = {
    "size_bytes": (+1, "size_bytes"),
    "flash_bytes": (+1, None),
    "arena_bytes": (+1, "arena_bytes"),
    "accuracy_pct": (-1, "accuracy_points"),
    "accuracy_drop_pt": (+1, None),
    "latency_seconds": (+1, "latency_seconds"),
}

_MISSING = object()

#: Model files above this size are not read again for report facts.
MAX_MODEL_BYTES = 256 * 1024 * 1024


def _cached(m: Any, name: str, notes: list[str] | None = None) -> Any:
    """The measurement ``name`` if this process already computed it, else None (never computes it)."""
    if m is None:
        return None
    value = getattr(m, "__dict__", {}).get(f"_cache_{name}", _MISSING)
    if value is _MISSING or value is None:
        return None
    exc = getattr(value, "exc", None)
    if isinstance(exc, BaseException) and type(value).__name__ == "_Failed":
        if notes is not None:
            notes.append(f"{name}: not measured ({one_line(exc, 200)})")
        return None
    return value


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
def _verdicts(rows: list[Any]) -> dict[str, dict[str, Any]]:
    """Check name -> verdict dict (item names carry a ``[mode]`` suffix in multi-mode specs)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        v = r.verdict
        if isinstance(v, dict):
            out[str(v.get("name") or r.name.split("[", 1)[0])] = v
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _accuracy(m: Any, verdicts: dict[str, dict[str, Any]], notes: list[str]) -> dict[str, Any] | None:
    report = _cached(m, "accuracy", notes)
    stages: dict[str, Any] = {}
    drop: float | None = None
    drop_ci: list[float] | None = None
    if report is not None:
        stages = dict(report.stages)
        drop = getattr(report, "drop_points", None)
        ci = getattr(report, "drop_ci", None)
        drop_ci = list(ci) if ci is not None else None
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


def _arena(m: Any, verdicts: dict[str, dict[str, Any]], notes: list[str]) -> dict[str, Any] | None:
    arena = _cached(m, "arena", notes)
    if arena is not None:
        return {
            "bytes": int(arena.bytes),
            "host_bytes": _number(getattr(arena, "host_bytes", None)),
            "method": str(getattr(arena, "method", "") or "") or None,
        }
    v = verdicts.get("arena")
    if v and _number(v.get("measured")) is not None:
        extra = v.get("extra") or {}
        return {"bytes": int(v["measured"]), "host_bytes": _number(extra.get("host_bytes")), "method": None}
    return None


def _flash(m: Any, verdicts: dict[str, dict[str, Any]], notes: list[str]) -> dict[str, Any] | None:
    est = _cached(m, "flash", notes)
    if est is not None:
        model = int(est.model_bytes)
        runtime = int(est.runtime_code_bytes)
        return {"bytes": model + runtime, "model_bytes": model, "runtime_code_bytes": runtime}
    v = verdicts.get("flash")
    if v and _number(v.get("measured")) is not None:
        extra = v.get("extra") or {}
        return {
            "bytes": int(v["measured"]),
            "model_bytes": _number(extra.get("model_bytes")),
            "runtime_code_bytes": _number(extra.get("runtime_code_bytes")),
        }
    return None


def _model_path(m: Any, rows: list[Any], notes: list[str]) -> Path | None:
    if m is not None and getattr(m, "model_path", None) is not None:
        return Path(m.model_path)
    cached = _cached(m, "tflite_path", notes)
    if cached is not None:
        return Path(cached)
    for r in rows:
        if r.model_path:
            return Path(r.model_path)
    return None


def _model_bytes(m: Any, path: Path | None) -> bytes | None:
    data = _cached(m, "tflite_bytes")
    if data is not None:
        return bytes(data)
    if path is not None and path.is_file():
        size = path.stat().st_size
        if size > MAX_MODEL_BYTES:
            raise NotEvaluable(
                f"{path} is {size:,} bytes, too large to read for a report", "audit a smaller model"
            )
        return path.read_bytes()
    return None


def _model_info(m: Any, data: bytes | None, path: Path | None) -> Any:
    info = _cached(m, "model_info")
    if info is not None or data is None:
        return info
    from pytest_tinyml.analysis.model import parse_model

    return parse_model(data, str(path) if path is not None else "model")


def _item(r: Any) -> dict[str, Any]:
    v = r.verdict if isinstance(r.verdict, dict) else {}
    return {
        "nodeid": r.nodeid,
        "name": r.name,
        "check": v.get("name") or r.name.split("[", 1)[0],
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


def _thresholds(session: Any, m: Any, nodeid_file: str | None) -> dict[str, float]:
    """Regression thresholds (``constraints.regression``) by metric name."""
    constraints = getattr(m, "constraints", None)
    if constraints is None and nodeid_file and nodeid_file.endswith((".yaml", ".yml")):
        spec = _spec_for(session, nodeid_file)
        constraints = getattr(spec, "constraints", None)
    if constraints is None:
        specs = list(getattr(session, "specs", None) or [])
        if len(specs) == 1 and getattr(session, "models", None):
            spec = _spec_for(session, str(specs[0]))
            constraints = getattr(spec, "constraints", None)
    reg = getattr(constraints, "regression", None)
    out: dict[str, float] = {}
    if reg is None:
        return out
    for metric, (_, field_name) in METRICS.items():
        if field_name is not None:
            value = getattr(reg, field_name, None)
            if value is not None:
                out[metric] = value
    return out


def _spec_for(session: Any, path: str) -> Any:
    """The spec at ``path`` (relative to the rootdir or cwd) through the session's loader, or None."""
    loader = getattr(session, "spec", None)
    if not callable(loader):
        return None
    root = getattr(getattr(session, "config", None), "rootpath", None)
    candidates = [Path(path)] + ([Path(str(root)) / path] if root is not None else [])
    for candidate in candidates:
        if candidate.is_file():
            try:
                return loader(candidate.resolve())
            except Exception:  # noqa: BLE001 - the spec items already report a broken spec
                return None
    return None


def _metrics(
    verdicts: dict[str, dict[str, Any]],
    size: int | None,
    arena: dict[str, Any] | None,
    flash: dict[str, Any] | None,
    accuracy: dict[str, Any] | None,
) -> dict[str, float | None]:
    def measured(name: str) -> float | None:
        v = verdicts.get(name)
        return _number(v.get("measured")) if v else None

    acc = measured("accuracy")
    if acc is None and accuracy:
        by_name = {s["name"]: s["accuracy_pct"] for s in accuracy["stages"]}
        for stage in ("litert", "tflm"):
            if _number(by_name.get(stage)) is not None:
                acc = by_name[stage]
                break
    drop = measured("accuracy_drop")
    if drop is None and accuracy:
        drop = _number(accuracy.get("drop_points"))
    return {
        "size_bytes": measured("size") if measured("size") is not None else size,
        "flash_bytes": measured("flash") if measured("flash") is not None else (flash or {}).get("bytes"),
        "arena_bytes": measured("arena") if measured("arena") is not None else (arena or {}).get("bytes"),
        "accuracy_pct": acc,
        "accuracy_drop_pt": drop,
        "latency_seconds": measured("latency"),
    }


def _target(session: Any, label: str, m: Any, rows: list[Any]) -> dict[str, Any]:
    notes: list[str] = []
    nodeid_file = rows[0].nodeid.split("::", 1)[0] if rows else None
    spec = getattr(m, "spec", None)
    spec_path = str(spec.path) if spec is not None and getattr(spec, "path", None) is not None else None
    if spec_path is None and nodeid_file and nodeid_file.endswith((".yaml", ".yml")):
        spec_path = nodeid_file
    board = getattr(getattr(m, "board", None), "name", None) or next((r.board for r in rows if r.board), None)
    mode = getattr(m, "mode", None) or next((r.mode for r in rows if r.mode), None)
    verdicts = _verdicts(rows)

    path = _guard(notes, "model path", lambda: _model_path(m, rows, notes))
    data = _guard(notes, "model file", lambda: _model_bytes(m, path))
    if data is None and not any("model" in n for n in notes):
        notes.append("model facts left out: the model was not built or read in this run")
    info = _guard(notes, "model facts", lambda: _model_info(m, data, path)) if data is not None else None
    model = _guard(notes, "model facts", lambda: model_facts(info)) if info is not None else None
    arena = _guard(notes, "arena", lambda: _arena(m, verdicts, notes))
    flash = _guard(notes, "flash", lambda: _flash(m, verdicts, notes))
    accuracy = _guard(notes, "accuracy", lambda: _accuracy(m, verdicts, notes))
    size = len(data) if data is not None else None
    latency = _guard(notes, "latency", lambda: latency_section(verdicts.values()))
    metrics = _metrics(verdicts, size, arena, flash, accuracy)
    if metrics.get("latency_seconds") is None and latency:
        metrics["latency_seconds"] = latency["seconds"]  # the estimate, shown as information
    return {
        "label": label,
        "kind": "spec" if spec_path else "model",
        "spec": spec_path,
        "spec_name": getattr(spec, "name", None),
        "mode": mode,
        "board": board,
        "model_path": str(path) if path is not None else None,
        "sha256": hashlib.sha256(data).hexdigest() if data is not None else None,
        "size_bytes": size,
        "items": sorted((_item(r) for r in rows), key=lambda i: item_order(i["check"], i["name"])),
        "metrics": metrics,
        "regression_thresholds": _guard(
            notes, "regression thresholds", lambda: _thresholds(session, m, nodeid_file)
        )
        or {},
        "model": model,
        "arena": arena,
        "flash": flash,
        "accuracy": accuracy,
        "latency": latency,
        "notes": notes,
        "baseline": None,
    }


def _labels(targets: dict[str, Any], results: Iterable[Any]) -> list[str]:
    labels = list(targets)
    for r in results:
        if r.target not in labels:
            labels.append(r.target)
    return labels


def build_report(session: Any, *, generated: datetime | None = None) -> dict[str, Any]:
    """The report document for ``session`` (a :class:`~pytest_tinyml.plugin.TinyMLSession` or lookalike
    with ``.results`` and ``.targets``). Never raises for a missing measurement."""
    results = list(getattr(session, "results", None) or [])
    targets: dict[str, Any] = dict(getattr(session, "targets", None) or {})
    by_label: dict[str, list[Any]] = {}
    for r in results:
        by_label.setdefault(r.target, []).append(r)
    out = []
    for label in _labels(targets, results):
        rows = by_label.get(label, [])
        if not rows:
            continue  # a target the run did not judge (e.g. deselected with -k): nothing to report
        out.append(_target(session, label, targets.get(label), rows))
    counts = {s: 0 for s in ("passed", "failed", "skipped", "error")}
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
        "targets": out,
        "baseline": None,
    }
    result: dict[str, Any] = jsonable(doc)
    return result
