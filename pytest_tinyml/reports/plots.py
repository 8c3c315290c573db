"""Charts for ``report.html``, drawn with matplotlib's Agg canvas and returned as PNG bytes.

matplotlib is imported lazily and only through its object API (``Figure`` + the Agg canvas): no pyplot,
no change to the process-wide backend, no window. Every function takes the plain report dicts of
:mod:`pytest_tinyml.reports.collect` and returns ``None`` when it has nothing to draw.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

from pytest_tinyml.reports._format import fmt_bytes, one_line

_DPI = 100
_WIDTH = 9.0  # inches


def available() -> str | None:
    """None when matplotlib can be imported, else why not (one line)."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - any import problem means no plots
        return f"matplotlib is not available ({type(exc).__name__}: {one_line(exc, 120)}); install pytest-tinyml[reports]"
    return None


def label(text: Any, limit: int = 40) -> str:
    """Text safe for a matplotlib label: one line, cut, and no mathtext (``$`` escaped)."""
    return one_line(text, limit).replace("$", r"\$")


def short_name(name: str) -> str:
    """A converter tensor name made legible: ``'seq_1/conv1_1/Relu;seq_1/conv1_1/BiasAdd'`` -> ``'conv1_1/Relu'``."""
    first = name.split(";", 1)[0].strip() or name
    parts = [p for p in first.split("/") if p]
    return "/".join(parts[-2:]) if len(parts) > 2 else first


def _thousands(ax: Any, axis: str = "y") -> None:
    from matplotlib.ticker import FuncFormatter

    fmt = FuncFormatter(lambda v, _pos: f"{v:,.0f}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


def _figure(height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(_WIDTH, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # missing glyphs in exotic tensor names, layout hints
        fig.savefig(buf, format="png", dpi=_DPI, metadata={"Software": None})
    return buf.getvalue()


def _kib(n: float) -> str:
    return f"{n / 1024:,.1f} KiB" if n >= 1024 else f"{int(n):,} B"


def size_by_layer(target: dict[str, Any], top: int = 30) -> bytes | None:
    """Horizontal bars: constant (weight + bias) bytes of each op that has any, in execution order."""
    model = target.get("model")
    if not model:
        return None
    layers = [layer for layer in model["layers"] if layer["weight_bytes"] > 0]
    if not layers:
        return None
    total = len(layers)
    if total > top:
        keep = sorted(layers, key=lambda layer: -layer["weight_bytes"])[:top]
        layers = sorted(keep, key=lambda layer: (layer["subgraph"], layer["index"]))
    names = [
        label(
            f"#{layer['index']} {layer['op']}" + (f" (sg {layer['subgraph']})" if layer["subgraph"] else ""),
            36,
        )
        for layer in layers
    ]
    values = [layer["weight_bytes"] for layer in layers]
    fig = _figure(1.3 + 0.32 * len(layers))
    ax = fig.add_subplot()
    y = list(range(len(layers)))
    ax.barh(y, values, color="#4C72B0")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    peak = max(values)
    for yi, v in zip(y, values, strict=True):
        ax.text(v + peak * 0.01, yi, _kib(v), va="center", fontsize=8)
    ax.set_xlim(0, peak * 1.18)
    ax.set_xlabel("constant bytes (weights + biases)")
    _thousands(ax, "x")
    title = f"Size by layer: {fmt_bytes(model['weight_bytes'])} of constants in a {fmt_bytes(model['size_bytes'])} file"
    if total > top:
        title += f" ({top} largest of {total} layers)"
    ax.set_title(label(title, 120), fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def accuracy_stages(target: dict[str, Any]) -> bytes | None:
    """Bars of accuracy per stage (float, quantized in LiteRT, TFLM) with 95 % interval error bars."""
    acc = target.get("accuracy")
    stages = [s for s in (acc or {}).get("stages") or [] if isinstance(s.get("accuracy_pct"), (int, float))]
    if not stages:
        return None
    names = [label(s["name"], 20) for s in stages]
    values = [float(s["accuracy_pct"]) for s in stages]
    lows = [
        float(s["ci_low"]) if isinstance(s.get("ci_low"), (int, float)) else v
        for s, v in zip(stages, values, strict=True)
    ]
    highs = [
        float(s["ci_high"]) if isinstance(s.get("ci_high"), (int, float)) else v
        for s, v in zip(stages, values, strict=True)
    ]
    err = [
        [max(v - lo, 0.0) for v, lo in zip(values, lows, strict=True)],
        [max(hi - v, 0.0) for v, hi in zip(values, highs, strict=True)],
    ]
    minimum = next(
        (
            i.get("limit")
            for i in target.get("items", [])
            if i.get("check") == "accuracy" and isinstance(i.get("limit"), (int, float))
        ),
        None,
    )
    fig = _figure(3.4)
    ax = fig.add_subplot()
    colors = ["#55A868" if "float" in n.lower() or "keras" in n.lower() else "#4C72B0" for n in names]
    x = list(range(len(stages)))
    ax.bar(x, values, yerr=err, capsize=6, color=colors, width=0.55)
    ax.set_xticks(x, [f"{n}\n{v:.2f} %" for n, v in zip(names, values, strict=True)])
    floor = min(lows + ([minimum] if minimum is not None else []))
    bottom = max(0.0, floor - max(2.0, (100 - floor) * 0.5))
    ax.set_ylim(bottom, 100.5)
    if minimum is not None:
        ax.axhline(minimum, color="#C44E52", linestyle="--", linewidth=1)
        ax.text(
            0.01,
            minimum,
            f"minimum {minimum:g} %",
            color="#C44E52",
            va="bottom",
            ha="left",
            fontsize=8,
            transform=ax.get_yaxis_transform(),
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0, "alpha": 0.85},
        )
    n = next((s.get("n") for s in stages if isinstance(s.get("n"), int)), None)
    title = "Accuracy by stage (95 % interval)" + (f", {n:,} test images" if n else "")
    drop = (acc or {}).get("drop_points")
    if isinstance(drop, (int, float)):
        title += f"; quantization drop {drop:.2f} pt"
    ax.set_title(title, fontsize=10)
    ax.set_ylabel("accuracy (%)")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def arena_timeline(target: dict[str, Any], legend: int = 8) -> bytes | None:
    """Stacked bars per op (subgraph 0): bytes of the non-constant tensors live while the op runs."""
    model = target.get("model")
    if not model:
        return None
    ops = [layer for layer in model["layers"] if layer["subgraph"] == 0]
    tensors = [
        t
        for t in model["tensors"]
        if t["subgraph"] == 0
        and not t["is_constant"]
        and t["first_op"] is not None
        and t["last_op"] is not None
        and t["nbytes"] > 0
    ]
    if not ops or not tensors:
        return None
    from matplotlib import colormaps

    n = len(ops)
    cmap = colormaps["tab20"]
    bottom = [0.0] * n
    fig = _figure(4.2)
    ax = fig.add_subplot()
    ranked = sorted(tensors, key=lambda t: -t["nbytes"])
    named = {id(t) for t in ranked[:legend]}
    handles, names = [], []
    for k, t in enumerate(sorted(tensors, key=lambda t: (t["first_op"], t["index"]))):
        lo, hi = t["first_op"], min(t["last_op"], n - 1)
        xs = list(range(lo, hi + 1))
        if not xs:
            continue
        color = cmap(k % 20) if id(t) in named else "#B8B8B8"
        bars = ax.bar(
            xs,
            [t["nbytes"]] * len(xs),
            bottom=[bottom[x] for x in xs],
            color=color,
            edgecolor="white",
            linewidth=0.4,
            width=0.8,
        )
        for x in xs:
            bottom[x] += t["nbytes"]
        if id(t) in named:
            handles.append(bars[0])
            names.append(label(f"{short_name(t['name']) or '#' + str(t['index'])} ({_kib(t['nbytes'])})", 44))
    peak = max(bottom)
    peak_at = bottom.index(peak)
    arena = target.get("arena") or {}
    if isinstance(arena.get("bytes"), (int, float)):
        ax.axhline(arena["bytes"], color="#C44E52", linestyle="--", linewidth=1)
        handles.append(ax.lines[-1])
        names.append(f"TFLM arena {fmt_bytes(arena['bytes'])} (includes runtime overhead)")
    ax.annotate(
        f"peak {fmt_bytes(peak)}",
        (peak_at, peak),
        xytext=(0, 4),
        textcoords="offset points",
        ha="center",
        fontsize=8,
    )
    if n <= 40:
        ax.set_xticks(
            range(n),
            [label(f"{i} {op['op']}", 24) for i, op in enumerate(ops)],
            rotation=60,
            ha="right",
            fontsize=7,
        )
    ax.set_xlabel("operator (execution order)")
    ax.set_ylabel("live tensor bytes")
    _thousands(ax)
    ax.set_ylim(0, max(peak, arena.get("bytes") or 0) * 1.15)
    ax.set_title("Arena use along the op sequence (live activations; grey: smaller tensors)", fontsize=10)
    ax.legend(handles, names, fontsize=7, loc="upper right", framealpha=0.9)
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def mode_comparison(targets: list[dict[str, Any]]) -> bytes | None:
    """Size and accuracy of the quantization modes of one spec, side by side."""
    rows = [t for t in targets if t.get("mode")]
    if len(rows) < 2:
        return None
    modes = [label(t["mode"], 16).replace("_", "\n") for t in rows]  # dynamic_range: two lines, no overlap
    sizes = [t["metrics"].get("size_bytes") for t in rows]
    accs = [t["metrics"].get("accuracy_pct") for t in rows]
    if not any(isinstance(s, (int, float)) for s in sizes) and not any(
        isinstance(a, (int, float)) for a in accs
    ):
        return None
    fig = _figure(3.4)
    ax1, ax2 = fig.subplots(1, 2)
    x = list(range(len(rows)))
    size_vals = [float(s) if isinstance(s, (int, float)) else 0.0 for s in sizes]
    ax1.bar(x, size_vals, color="#4C72B0", width=0.6)
    ax1.set_xticks(x, modes)
    top = max(size_vals) or 1.0
    for xi, s in zip(x, sizes, strict=True):
        ax1.text(
            xi,
            (s or 0) + top * 0.02,
            _kib(s) if isinstance(s, (int, float)) else "n/a",
            ha="center",
            fontsize=8,
        )
    ax1.set_ylim(0, top * 1.15)
    ax1.set_title("Model size by quantization mode", fontsize=10)
    ax1.set_ylabel("bytes")
    _thousands(ax1)
    ax1.grid(axis="y", alpha=0.3)
    vals, lo_err, hi_err = [], [], []
    for t, a in zip(rows, accs, strict=True):
        v = float(a) if isinstance(a, (int, float)) else 0.0
        stage = next(
            (s for s in (t.get("accuracy") or {}).get("stages") or [] if s.get("accuracy_pct") == a), None
        )
        lo = stage.get("ci_low") if stage else None
        hi = stage.get("ci_high") if stage else None
        vals.append(v)
        lo_err.append(max(v - lo, 0.0) if isinstance(lo, (int, float)) else 0.0)
        hi_err.append(max(hi - v, 0.0) if isinstance(hi, (int, float)) else 0.0)
    known = [v - e for v, e, a in zip(vals, lo_err, accs, strict=True) if isinstance(a, (int, float))]
    ax2.bar(x, vals, yerr=[lo_err, hi_err], capsize=6, color="#55A868", width=0.6)
    ax2.set_xticks(
        x,
        [
            f"{m}\n{a:.2f} %" if isinstance(a, (int, float)) else f"{m}\nn/a"
            for m, a in zip(modes, accs, strict=True)
        ],
    )
    if known:
        floor = min(known)
        ax2.set_ylim(max(0.0, floor - max(2.0, (100 - floor) * 0.5)), 100.5)
    ax2.set_title("Accuracy by quantization mode (95 % interval)", fontsize=10)
    ax2.set_ylabel("accuracy (%)")
    ax2.grid(axis="y", alpha=0.3)
    return _png(fig)
