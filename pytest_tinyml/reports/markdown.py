"""``report.md``: a summary to post on a pull request (GitHub-flavoured Markdown).

Targets with failures come first, and in each target's table failed and errored items come first, with
the fix. Every text that comes from a model file or a message is escaped, so a tensor called
``<img src=x>`` or ``a|b`` cannot break the table or inject HTML into the comment.
"""

from __future__ import annotations

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
from pytest_tinyml.reports.npu import markdown_lines as npu_markdown_lines
from pytest_tinyml.reports.profile import markdown_lines as profile_markdown_lines
from pytest_tinyml.reports.terminal import skip_reason

#: GitHub refuses comments above 65,536 characters; stay below with room for a header the CI adds.
MAX_CHARS = 60_000

_ICON = {ItemStatus.FAILED: "❌ FAIL", ItemStatus.ERROR: "⚠️ ERROR", ItemStatus.PASSED: "✅ pass", ItemStatus.SKIPPED: "⏭️ skip"}
_SPECIAL = set("\\`*[]<>|#!~&")


def md(text: Any, limit: int | None = None) -> str:
    """Escape text for a Markdown table cell (one line; Markdown and HTML characters backslash-escaped)."""
    s = one_line(text, limit)
    return "".join("\\" + ch if ch in _SPECIAL else ch for ch in s)


def code(text: Any, limit: int | None = 120) -> str:
    """Inline code span that survives any content (no backticks or pipes can end it)."""
    s = one_line(text, limit).replace("`", "'").replace("|", "¦")
    return f"`{s}`" if s else ""


def _target_rank(t: dict[str, Any]) -> int:
    return min((STATUS_ORDER.get(i["status"], 9) for i in t["items"]), default=9)


def _counts(items: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for i in items:
        counts[i["status"]] = counts.get(i["status"], 0) + 1
    return ", ".join(f"{counts[s]} {s}" for s in ATTENTION if counts.get(s))


def _facts(t: dict[str, Any]) -> list[str]:
    out = []
    model = t.get("model")
    if model:
        ops = ", ".join(f"{md(o['name'])} ×{o['count']}" for o in model["ops"][:8])
        more = len(model["ops"]) - 8
        if more > 0:
            ops += f", +{more} more"
        params = sum(layer["params"] for layer in model["layers"])
        out.append(
            f"model: {model['num_ops']} ops ({ops}); {params:,} parameters; {model['total_macs']:,} MACs; "
            f"weights {fmt_bytes(model['weight_bytes'])}; {md(model['quantization'])}"
        )
    arena = t.get("arena")
    if arena:
        host = f" (host TFLM {fmt_bytes(arena['host_bytes'])})" if arena.get("host_bytes") else ""
        out.append(f"arena: {fmt_bytes(arena['bytes'])}{host}")
    acc = t.get("accuracy")
    if acc and acc.get("stages"):
        parts = []
        for s in acc["stages"]:
            a = s.get("accuracy_pct")
            if a is None:
                continue
            ci = (
                f" [{s['ci_low']:.2f}, {s['ci_high']:.2f}]"
                if s.get("ci_low") is not None and s.get("ci_high") is not None
                else ""
            )
            n = f" on {s['n']:,}" if isinstance(s.get("n"), int) else ""
            parts.append(f"{md(s['name'])} {a:.2f} %{ci}{n}")
        if acc.get("drop_points") is not None:
            parts.append(f"drop {acc['drop_points']:.2f} pt")
        if parts:
            out.append("accuracy (95 % CI): " + "; ".join(parts))
    return out


def _comparison(targets: list[dict[str, Any]], with_baseline: bool) -> list[str]:
    """One line per target: the comparison table (size, flash, arena, latency, verdicts)."""
    header, rows, title = compare_table.rows(targets)
    header = [*header, "vs baseline"] if with_baseline else header
    lines = [f"{md(title)}:", ""]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for t, row in zip(targets, rows, strict=True):
        icon = "❌" if compare_table.worst(t["items"]) in BAD else "✅"
        cells = [f"{icon} {md(row[0], 100)}", *(md(c, 80) for c in row[1:])]
        if with_baseline:
            deltas = (t.get("baseline") or {}).get("deltas") or []
            regs = [d for d in deltas if d.get("regression")]
            cells.append(f"**{len(regs)} regression{'s' if len(regs) != 1 else ''}**" if regs
                         else ("no regression" if t.get("baseline") else "not in baseline"))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _skips(targets: list[dict[str, Any]], shorts: dict[str, str]) -> list[str]:
    """Skipped items of targets without a section of their own, once per reason."""
    by_reason: dict[tuple[str, str], list[str]] = {}
    for t in targets:
        for i in t["items"]:
            if i["status"] == ItemStatus.SKIPPED:
                by_reason.setdefault((i["check"], skip_reason(i.get("message") or "", 160)), []).append(shorts[t["label"]])
    lines = []
    for (check, reason), labels in by_reason.items():
        where = f"{len(labels)} targets" if len(labels) > 2 else ", ".join(code(x) for x in labels)
        lines.append(f"- ⏭️ {md(check)} skipped on {where}: {md(reason)}")
    return lines + ([""] if lines else [])


def _target_section(t: dict[str, Any], with_baseline: bool, full: bool, vocab: Vocabulary, label: str) -> list[str]:
    items = sorted(t["items"], key=lambda i: STATUS_ORDER.get(i["status"], 9))
    bad = any(i["status"] in BAD for i in items)
    lines = [f"### {'❌' if bad else '✅'} {md(label)}", ""]
    meta = []
    if t.get("board"):
        meta.append(f"board {code(t['board'])}")
    if t.get("runtime"):
        meta.append(f"firmware runtime {code(t['runtime'])}" + (f" ({md(t['runtime_note'], 300)})" if t.get("runtime_note") else ""))
    if t.get("mode"):
        meta.append(f"mode {code(t['mode'])}")
    if t.get("model_path") and printable(t["model_path"]) != t["label"]:
        size = f" ({fmt_bytes(t['size_bytes'])})" if t.get("size_bytes") is not None else ""
        meta.append(f"model {code(printable(t['model_path']))}{size}")
    if t.get("sha256"):
        meta.append(f"sha256 {code(t['sha256'][:16])}")
    meta.append(_counts(items))
    lines += [" · ".join(meta), ""]
    deltas = {d["metric"]: d for d in ((t.get("baseline") or {}).get("deltas") or [])}
    header = (
        ["Status", "Constraint", "Measured", "Limit"]
        + (["vs baseline"] if with_baseline else [])
        + ["Fix / note"]
    )
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join("---" for _ in header) + "|")
    for i in items:
        if not full and i["status"] not in BAD:
            continue
        unit = i.get("unit")
        cells = [
            _ICON.get(i["status"], md(i["status"])),
            md(i["check"]),
            md(fmt_value(i.get("measured"), unit), 80),
            md(fmt_value(i.get("limit"), unit), 80),
        ]
        if with_baseline:
            metric = vocab.metric_of(i["check"])
            d = deltas.get(metric) if metric else None
            cell = md(fmt_delta(d["metric"], d["delta"])) if d else ""
            cells.append(f"**{cell} regression**" if d and d.get("regression") else cell)
        if i["status"] in BAD:
            note = md(i.get("message") or "", 300)
            if i.get("fix"):
                note += f" — **fix:** {md(i['fix'], 300)}"
        elif i["status"] == ItemStatus.SKIPPED:
            note = md(skip_reason(i.get("message") or "", 120))
        else:
            note = ""
        cells.append(note)
        lines.append("| " + " | ".join(cells) + " |")
    if not full:
        hidden = sum(1 for i in items if i["status"] not in BAD)
        if hidden:
            lines.append(f"\n{hidden} passed or skipped items not shown (see report.html)")
    lines.append("")
    shown = {vocab.metric_of(i["check"]) for i in items}
    rest = [d for m, d in deltas.items() if m not in shown]
    if with_baseline and rest:
        lines.append(
            "vs baseline: "
            + ", ".join(
                f"{vocab.word(d['metric'])} {md(fmt_delta(d['metric'], d['delta']))}"
                for d in rest
            )
        )
        lines.append("")
    if full and t.get("latency"):
        lines += profile_markdown_lines(t["latency"])
    if full:
        lines += npu_markdown_lines(t.get("npu"))
    if full:
        for fact in _facts(t):
            lines.append(f"- {fact}")
        for n in t.get("notes") or []:
            lines.append(f"- note: {md(n, 300)}")
        lines.append("")
    return lines


def render_markdown(report: dict[str, Any], *, full: bool = True) -> str:
    """The Markdown report for a report document (see :func:`pytest_tinyml.reports.collect.build_report`)."""
    text = _render(report, full)
    if full and len(text) > MAX_CHARS:
        text = _render(report, False)
    if len(text) > MAX_CHARS:
        text = (
            text[: MAX_CHARS - 80].rsplit("\n", 1)[0]
            + "\n\n… report cut to fit a pull-request comment (see report.html)\n"
        )
    return text


def _render(report: dict[str, Any], full: bool) -> str:
    summary = report.get("summary") or {}
    targets = sorted(report.get("targets") or [], key=_target_rank)
    failed = summary.get(ItemStatus.FAILED, 0) + summary.get(ItemStatus.ERROR, 0)
    icon = "❌" if failed else "✅"
    counts = ", ".join(
        f"{summary[s]} {s}" for s in ATTENTION if summary.get(s)
    )
    lines = [
        f"## {icon} pytest-tinyml: {counts or 'no items'} ({len(targets)} target{'s' if len(targets) != 1 else ''})",
        "",
    ]
    base = report.get("baseline")
    if base:
        regressions = base.get("regressions") or []
        if regressions:
            lines.append(
                f"**{len(regressions)} regression{'s' if len(regressions) != 1 else ''}** against baseline {code(printable(str(base.get('path'))))}:"
            )
            lines += [f"- {md(r, 400)}" for r in regressions]
        else:
            lines.append(f"No regressions against baseline {code(printable(str(base.get('path'))))}.")
        if base.get("missing_targets"):
            lines.append(
                f"- in the baseline but not in this run: {', '.join(code(x) for x in base['missing_targets'])}"
            )
        lines.append("")
    vocab = Vocabulary.of(report)
    shorts, _ = compare_table.short_labels(targets)
    if len(targets) > 1:
        # every target once in the comparison table; a section only for targets with a failure or error
        lines += _comparison(targets, bool(base))
        quiet = [t for t in targets if compare_table.worst(t["items"]) not in BAD]
        lines += _skips(quiet, shorts)
        targets = [t for t in targets if t not in quiet]
    for t in targets:
        lines += _target_section(t, bool(base), full, vocab, shorts[t["label"]])
    lines.append(
        f"<sub>pytest-tinyml {md((report.get('tool') or {}).get('version', ''))} · {md(report.get('generated', ''))}</sub>"
    )
    return "\n".join(lines) + "\n"
