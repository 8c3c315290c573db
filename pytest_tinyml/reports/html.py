"""``report.html``: one self-contained page (inline CSS, charts as ``data:`` PNGs, no scripts, no fonts,
no network). A Content-Security-Policy in the page forbids loading anything else, and every text from a
model file, spec or message goes through :func:`html.escape`.
"""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Callable
from typing import Any

from pytest_tinyml._util.text import printable
from pytest_tinyml.kinds import ItemStatus
from pytest_tinyml.reports import compare_table
from pytest_tinyml.reports._format import (
    ATTENTION,
    BAD,
    STATUS_ORDER,
    fmt_bytes,
    fmt_delta,
    fmt_value,
    one_line,
)
from pytest_tinyml.reports.baseline import Vocabulary
from pytest_tinyml.reports.npu import html_section as npu_html_section
from pytest_tinyml.reports.profile import html_section as profile_html_section
from pytest_tinyml.reports.terminal import skip_reason

log = logging.getLogger(__name__)

_CSS = """
:root { --fail:#b42318; --pass:#067647; --skip:#6b7280; --err:#b54708; --line:#e5e7eb; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
       color:#111827; margin:0; background:#f9fafb; }
main { max-width: 1100px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 22px; margin: 8px 0 4px; } h2 { font-size: 18px; margin: 0 0 8px; word-break: break-all; }
h3 { font-size: 15px; margin: 16px 0 6px; }
section, .box { background:#fff; border:1px solid var(--line); border-radius:8px; padding:14px 18px; margin:14px 0; }
section.bad { border-left: 5px solid var(--fail); } section.good { border-left: 5px solid var(--pass); }
table { border-collapse: collapse; width: 100%; margin: 6px 0; }
th, td { text-align:left; padding:5px 8px; border-bottom:1px solid var(--line); vertical-align: top; }
th { background:#f3f4f6; font-weight:600; font-size:13px; }
td.num, th.num { text-align:right; font-variant-numeric: tabular-nums; white-space: nowrap; }
code, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; word-break: break-all; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-size:12px; font-weight:600; color:#fff; white-space:nowrap; }
.failed { background: var(--fail); } .passed { background: var(--pass); } .skipped { background: var(--skip); }
.error { background: var(--err); }
.fix { color: var(--fail); } .muted { color:#6b7280; } .reg { color: var(--fail); font-weight:600; }
dl.meta { display:grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 4px 0 10px; }
dl.meta dt { color:#6b7280; } dl.meta dd { margin:0; }
img.chart { display:block; max-width:100%; height:auto; margin: 10px 0; border:1px solid var(--line); border-radius:6px; }
details { margin: 6px 0; } summary { cursor: pointer; color:#374151; }
ul.notes { margin: 6px 0; padding-left: 20px; color:#6b7280; }
nav ul { margin: 4px 0; padding-left: 20px; }
td.nowrap code { white-space: nowrap; word-break: normal; }
"""

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def e(text: Any) -> str:
    """Escape any value for HTML text and attribute contexts."""
    return html.escape("" if text is None else str(text), quote=True)


def _name(text: Any) -> Any:
    """A file name or path through the one name sanitizer (control characters shown escaped)."""
    return printable(text) if isinstance(text, str) else text


def _badge(status: str, text: str | None = None) -> str:
    cls = status if status in ATTENTION else ItemStatus.SKIPPED
    return f'<span class="badge {cls}">{e(text or status)}</span>'


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="chart" alt="{e(alt)}" src="data:image/png;base64,{data}">'


def _chart(notes: list[str], what: str, fn: Callable[[], bytes | None]) -> str:
    try:
        png = fn()
    except Exception as exc:  # noqa: BLE001 - a chart must not cost the report
        log.warning("pytest-tinyml report: chart %s failed", what, exc_info=True)
        notes.append(f"chart '{what}' left out: {type(exc).__name__}: {one_line(exc, 160)}")
        return ""
    return _img(png, what) if png else ""


def _items_table(t: dict[str, Any], vocab: Vocabulary) -> str:
    deltas = {d["metric"]: d for d in ((t.get("baseline") or {}).get("deltas") or [])}
    with_base = t.get("baseline") is not None
    head = "<tr><th>status</th><th>constraint</th><th class=num>measured</th><th class=num>limit</th>"
    head += "<th class=num>vs baseline</th>" if with_base else ""
    head += "<th>message</th></tr>"
    rows = [head]
    for i in sorted(t["items"], key=lambda i: STATUS_ORDER.get(i["status"], 9)):
        unit = i.get("unit")
        cells = [
            f"<td>{_badge(i['status'])}</td>",
            f"<td class=nowrap><code>{e(i['check'])}</code></td>",
            f"<td class=num>{e(fmt_value(i.get('measured'), unit))}</td>",
            f"<td class=num>{e(fmt_value(i.get('limit'), unit))}</td>",
        ]
        if with_base:
            metric = vocab.metric_of(i["check"])
            d = deltas.get(metric) if metric else None
            text = fmt_delta(d["metric"], d["delta"]) if d else ""
            cls = "num reg" if d and d.get("regression") else "num"
            cells.append(
                f'<td class="{cls}">{e(text)}{" regression" if d and d.get("regression") else ""}</td>'
            )
        msg = i.get("message") or ""
        if i["status"] == ItemStatus.SKIPPED:
            body = f'<span class="muted">{e(skip_reason(msg, 300))}</span>'
        else:
            body = e(msg)
        if i.get("fix") and i["status"] in BAD:
            body += f'<div class="fix"><b>fix:</b> {e(i["fix"])}</div>'
        if i.get("details"):
            lines = "<br>".join(e(one_line(d, 400)) for d in i["details"][:30])
            body += f"<details><summary>details</summary><div class=mono>{lines}</div></details>"
        cells.append(f"<td>{body}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _meta(t: dict[str, Any]) -> str:
    pairs = [
        ("board", t.get("board")),
        ("firmware runtime", t.get("runtime")),
        ("why that runtime", t.get("runtime_note")),
        ("mode", t.get("mode")),
        ("spec", t.get("spec")),
        ("model", _name(t.get("model_path"))),
        ("size", fmt_bytes(t["size_bytes"]) if t.get("size_bytes") is not None else None),
        ("sha256", t.get("sha256")),
    ]
    model = t.get("model")
    if model:
        params = sum(layer["params"] for layer in model["layers"])
        pairs.append(
            (
                "model facts",
                f"{model['num_ops']} ops, {params:,} parameters, {model['total_macs']:,} MACs, "
                f"{fmt_bytes(model['weight_bytes'])} of constants, {model['quantization']}",
            )
        )
        for kind in ("inputs", "outputs"):
            for io in model[kind]:
                q = (
                    f", scale {io['scale'][0]:.6g} zero point {io['zero_point'][0]}"
                    if io["scale"] and io["zero_point"]
                    else ""
                )
                pairs.append((kind[:-1], f"{io['name']} {io['dtype']}{list(io['shape'])}{q}"))
    arena = t.get("arena")
    if arena:
        host = f" (host 64-bit TFLM: {fmt_bytes(arena['host_bytes'])})" if arena.get("host_bytes") else ""
        pairs.append(("arena", fmt_bytes(arena["bytes"]) + host))
    flash = t.get("flash")
    if flash:
        parts = ""
        if flash.get("model_bytes") is not None and flash.get("runtime_code_bytes") is not None:
            parts = f" (model {fmt_bytes(flash['model_bytes'])} + runtime {fmt_bytes(flash['runtime_code_bytes'])})"
        pairs.append(("flash", fmt_bytes(flash["bytes"]) + parts))
    rows = "".join(f"<dt>{e(k)}</dt><dd><code>{e(v)}</code></dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="meta">{rows}</dl>'


def _accuracy_table(t: dict[str, Any]) -> str:
    acc = t.get("accuracy")
    if not acc or not acc.get("stages"):
        return ""
    rows = [
        "<tr><th>stage</th><th class=num>accuracy</th><th class=num>95 % interval</th><th class=num>images</th></tr>"
    ]
    for s in acc["stages"]:
        a = s.get("accuracy_pct")
        ci = (
            f"{s['ci_low']:.2f} – {s['ci_high']:.2f} %"
            if isinstance(s.get("ci_low"), (int, float)) and isinstance(s.get("ci_high"), (int, float))
            else "-"
        )
        n = f"{s['n']:,}" if isinstance(s.get("n"), int) else "-"
        rows.append(
            f"<tr><td>{e(s['name'])}</td><td class=num>{e(fmt_value(a, '%'))}</td><td class=num>{e(ci)}</td><td class=num>{e(n)}</td></tr>"
        )
    if isinstance(acc.get("drop_points"), (int, float)):
        ci = acc.get("drop_ci")
        extra = (
            f" (95 % interval {ci[0]:.2f} to {ci[1]:.2f} pt)"
            if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci)
            else ""
        )
        rows.append(
            f"<tr><td>quantization drop</td><td class=num>{acc['drop_points']:.2f} pt</td><td colspan=2 class=muted>{e(extra)}</td></tr>"
        )
    return "<h3>Accuracy</h3><table>" + "".join(rows) + "</table>"


def _model_tables(t: dict[str, Any]) -> str:
    model = t.get("model")
    if not model:
        return ""
    out = []
    ops = "".join(
        f"<tr><td><code>{e(o['name'])}</code></td><td class=num>{o['count']:,}</td></tr>"
        for o in model["ops"]
    )
    out.append(
        f"<details><summary>Operators ({len(model['ops'])} types, {model['num_ops']} ops)</summary>"
        f"<table><tr><th>op</th><th class=num>count</th></tr>{ops}</table></details>"
    )
    rows = []
    for layer in model["layers"]:
        shape = "×".join(str(d) for d in layer["output_shape"])
        rows.append(
            f"<tr><td class=num>{layer['subgraph']}:{layer['index']}</td><td><code>{e(layer['op'])}</code></td>"
            f"<td><code>{e(one_line(layer.get('output') or '', 60))}</code></td><td class=num>{e(shape)} {e(layer.get('output_dtype') or '')}</td>"
            f"<td class=num>{layer['params']:,}</td><td class=num>{layer['macs']:,}</td><td class=num>{layer['weight_bytes']:,}</td></tr>"
        )
    out.append(
        "<details><summary>Layers: parameters, MACs, weight bytes</summary><table><tr><th class=num>#</th><th>op</th>"
        "<th>output</th><th class=num>shape</th><th class=num>params</th><th class=num>MACs</th><th class=num>weight bytes</th></tr>"
        + "".join(rows)
        + "</table></details>"
    )
    for constant, title in ((False, "Largest activations"), (True, "Largest constant tensors")):
        pool = sorted(
            (x for x in model["tensors"] if x["is_constant"] == constant), key=lambda x: -x["nbytes"]
        )[:10]
        if not pool:
            continue
        trs = "".join(
            f"<tr><td><code>{e(one_line(x['name'] or '#' + str(x['index']), 80))}</code></td><td class=num>{e('×'.join(map(str, x['shape'])))} {e(x['dtype'])}</td>"
            f"<td class=num>{x['nbytes']:,} B</td>"
            + (
                ""
                if constant
                else f"<td class=num>{'' if x['first_op'] is None else str(x['first_op']) + '–' + str(x['last_op'])}</td>"
            )
            + "</tr>"
            for x in pool
        )
        live = "" if constant else "<th class=num>live during ops</th>"
        out.append(
            f"<details><summary>{title}</summary><table><tr><th>tensor</th><th class=num>shape</th><th class=num>bytes</th>{live}</tr>{trs}</table></details>"
        )
    return "<h3>Model</h3>" + "".join(out)


def _target_section(idx: int, t: dict[str, Any], plots: bool, charts: Any, vocab: Vocabulary) -> str:
    notes = list(t.get("notes") or [])
    bad = any(i["status"] in BAD for i in t["items"])
    counts: dict[str, int] = {}
    for i in t["items"]:
        counts[i["status"]] = counts.get(i["status"], 0) + 1
    badges = " ".join(
        _badge(s, f"{counts[s]} {s}") for s in ATTENTION if counts.get(s)
    )
    parts = [
        f'<section id="t{idx}" class="{"bad" if bad else "good"}"><h2>{e(t["label"])} {badges}</h2>',
        _meta(t),
        _items_table(t, vocab),
    ]
    base = t.get("baseline")
    if base:
        shown = {vocab.metric_of(i["check"]) for i in t["items"]}
        rest = [d for d in base.get("deltas") or [] if d["metric"] not in shown]
        if rest:
            text = ", ".join(
                f"{vocab.word(d['metric'])} {fmt_delta(d['metric'], d['delta'])}"
                + (" (regression)" if d.get("regression") else "")
                for d in rest
            )
            parts.append(f"<p>vs baseline <code>{e(base.get('label'))}</code>: {e(text)}</p>")
    if plots and charts is not None:
        imgs = [
            _chart(notes, "size by layer", lambda: charts.size_by_layer(t)),
            _chart(notes, "accuracy by stage", lambda: charts.accuracy_stages(t)),
            _chart(notes, "arena use along the op sequence", lambda: charts.arena_timeline(t)),
        ]
        parts.append("".join(imgs))
    parts.append(_accuracy_table(t))
    if t.get("latency"):
        parts.append(profile_html_section(t["latency"]))
    parts.append(npu_html_section(t.get("npu")))
    parts.append(_model_tables(t))
    if notes:
        parts.append("<ul class=notes>" + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    parts.append("</section>")
    return "".join(parts)


def render_html(report: dict[str, Any], *, plots: bool = True) -> tuple[str, list[str]]:
    """The HTML page for a report document, and notes on what was left out (e.g. no matplotlib)."""
    notes: list[str] = []
    charts: Any = None
    if plots:
        from pytest_tinyml.reports import plots as charts_module

        why = charts_module.available()
        if why is None:
            charts = charts_module
        else:
            notes.append(f"charts left out: {why}")
    summary = report.get("summary") or {}
    targets = sorted(
        report.get("targets") or [],
        key=lambda t: min((STATUS_ORDER.get(i["status"], 9) for i in t["items"]), default=9),
    )
    index = {id(t): k for k, t in enumerate(targets)}
    badges = " ".join(
        _badge(s, f"{summary[s]} {s}") for s in ATTENTION if summary.get(s)
    )
    body = [
        "<header><h1>pytest-tinyml report</h1>",
        f'<p>{badges} <span class="muted">{len(targets)} target(s) · generated {e(report.get("generated"))} · '
        f"pytest-tinyml {e((report.get('tool') or {}).get('version'))}</span></p></header>",
    ]
    base = report.get("baseline")
    if base:
        regs = base.get("regressions") or []
        inner = f"<h3>Baseline <code>{e(_name(base.get('path')))}</code>"
        inner += (
            f" <span class=muted>({e(base.get('generated'))})</span></h3>"
            if base.get("generated")
            else "</h3>"
        )
        if regs:
            inner += "<ul>" + "".join(f'<li class="reg">{e(r)}</li>' for r in regs) + "</ul>"
        else:
            inner += "<p>No regressions.</p>"
        if base.get("missing_targets"):
            inner += (
                "<p class=muted>In the baseline but not in this run: "
                + ", ".join(f"<code>{e(x)}</code>" for x in base["missing_targets"])
                + "</p>"
            )
        body.append(f'<div class="box">{inner}</div>')
    if len(targets) > 1:  # the comparison table across targets, each row linking to its section
        header, rows, title = compare_table.rows(targets)
        text_cols = 1 + sum(h in ("board", "runtime") for h in header)
        head = "".join(f"<th{'' if k < text_cols or k == len(header) - 1 else ' class=num'}>{e(h)}</th>"
                       for k, h in enumerate(header))
        trs = []
        for t, row in zip(targets, rows, strict=True):
            cells = [f'<td><a href="#t{index[id(t)]}">{e(row[0])}</a></td>']
            cells += [f"<td>{e(c)}</td>" for c in row[1:text_cols]]
            cells += [f"<td class=num>{e(c)}</td>" for c in row[text_cols:-1]]
            cells.append(f"<td>{_badge(compare_table.worst(t['items']), row[-1])}</td>")
            trs.append("<tr>" + "".join(cells) + "</tr>")
        body.append(f'<nav class="box"><b>{e(title)}</b><table><tr>{head}</tr>{"".join(trs)}</table></nav>')
    if charts is not None:
        groups: dict[str, list[dict[str, Any]]] = {}
        for t in report.get("targets") or []:
            if t.get("spec") and t.get("mode"):
                groups.setdefault(t["spec"], []).append(t)
        for spec, members in groups.items():
            if len(members) < 2:
                continue
            img = _chart(notes, f"quantization modes of {spec}", lambda m=members: charts.mode_comparison(m))  # type: ignore[misc]
            if img:
                body.append(
                    f'<div class="box"><h3>Quantization modes of <code>{e(spec)}</code></h3>{img}</div>'
                )
    for t in targets:
        body.append(_target_section(index[id(t)], t, plots, charts, Vocabulary.of(report)))
    if notes:
        body.append(
            '<div class="box"><ul class=notes>' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul></div>"
        )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<title>pytest-tinyml report</title>"
        f"<style>{_CSS}</style></head><body><main>" + "\n".join(body) + "</main></body></html>\n"
    )
    return page, notes
