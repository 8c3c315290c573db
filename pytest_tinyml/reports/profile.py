"""The latency estimate and the per-operator profile in the terminal, report.md and report.html.

Input is the ``latency`` section of a report target (:func:`latency_section`), built from the ``extra`` of
the ``latency`` verdict, or of the ``firmware_bitexact`` verdict when the spec sets no ``max_latency`` (then
the estimate is information, not a judged item).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

TOP_N = 10


def latency_section(verdicts: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The ``latency`` section of a report target from its verdict dicts, or None."""
    found: dict[str, Any] | None = None
    for v in verdicts:
        extra = v.get("extra") or {}
        if not isinstance(extra, Mapping) or not isinstance(extra.get("latency_seconds"), (int, float)):
            continue
        judged = v.get("name") == "latency"
        if found is None or judged:
            found = {
                "seconds": float(extra["latency_seconds"]),
                "judged": judged,
                "limit_seconds": v.get("limit") if judged else None,
                "cycles": extra.get("cycles"),
                "instructions": extra.get("instructions"),
                "clock_hz": extra.get("clock_hz"),
                "core": extra.get("core"),
                "runtime": extra.get("runtime"),
                "note": None if judged else extra.get("latency_note"),
                "method": extra.get("method"),
                "instruction_classes": extra.get("instruction_classes"),
                "cycle_breakdown": extra.get("cycle_breakdown"),
                "profile": extra.get("profile"),
            }
            if isinstance(extra.get("ran_where"), str):  # on a board with an Ethos-U NPU: a CPU-only run
                found["ran_where"] = extra["ran_where"]
    return found


def target_latency(rows: Iterable[Any]) -> dict[str, Any] | None:
    """The ``latency`` section of one target from its item records (:class:`~pytest_tinyml.records.ItemRecord`):
    the judged ``latency`` verdict, else the estimate another item carried as information (``firmware_bitexact``
    without ``max_latency``; a ``latency`` item skipped because the project's runtime ran)."""
    rows = list(rows)
    shown: list[Mapping[str, Any]] = [r.verdict for r in rows if isinstance(r.verdict, dict)]
    shown += [{"name": f"{r.check} (information)", "extra": r.information} for r in rows
              if isinstance(getattr(r, "information", None), dict)]
    return latency_section(shown)


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms" if seconds < 10 else f"{seconds:,.2f} s"


def _num(value: Any) -> str:
    return f"{float(value):,.0f}" if isinstance(value, (int, float)) else "-"


def headline(section: Mapping[str, Any]) -> str:
    clock = section.get("clock_hz") or 0
    note = section.get("note") or "information; no max_latency set"
    what = "latency" if section.get("judged") else f"estimated latency ({note})"
    return (
        f"{what}: {_ms(float(section['seconds']))} per inference at {clock / 1e6:g} MHz "
        f"({_num(section.get('cycles'))} cycles, {_num(section.get('instructions'))} instructions)"
    )


def top_operators(section: Mapping[str, Any], n: int = TOP_N) -> list[dict[str, Any]]:
    profile = section.get("profile") or {}
    ops = [dict(o) for o in profile.get("operators") or [] if isinstance(o, Mapping)]
    return sorted(ops, key=lambda o: -float(o.get("cycles") or 0.0))[:n]


def _op_rows(ops: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = [("#", "operator", "cycles", "share", "instructions", "MACs", "cycles/MAC", "params", "act. bytes")]
    for o in ops:
        cpm = o.get("cycles_per_mac")
        rows.append(
            (
                str(o.get("index", "")),
                str(o.get("op", "")),
                _num(o.get("cycles")),
                f"{float(o.get('share') or 0) * 100:.1f} %",
                _num(o.get("instructions")),
                _num(o.get("macs")),
                f"{cpm:.2f}" if isinstance(cpm, (int, float)) else "-",
                _num(o.get("parameters")),
                _num(o.get("activation_bytes")),
            )
        )
    return rows


def terminal_lines(section: Mapping[str, Any], indent: str = "  ") -> list[str]:
    lines = [indent + headline(section)]
    if section.get("ran_where"):
        lines.append(indent + f"({section['ran_where']})")
    ops = top_operators(section)
    if ops:
        total = len((section.get("profile") or {}).get("operators") or [])
        lines.append(indent + f"slowest operators ({len(ops)} of {total}):")
        rows = _op_rows(ops)
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += [indent + "  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    return lines


def markdown_lines(section: Mapping[str, Any]) -> list[str]:
    lines = [f"**{headline(section)}**", ""]
    if section.get("ran_where"):
        lines += [f"Ran where: {section['ran_where']}", ""]
    if section.get("method"):
        lines += [f"Method: {section['method']}", ""]
    ops = (section.get("profile") or {}).get("operators") or []
    if ops:
        rows = _op_rows(list(ops))
        lines.append("| " + " | ".join(rows[0]) + " |")
        lines.append("|" + "---|" * len(rows[0]))
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows[1:]]
        lines.append("")
    return lines


def html_section(section: Mapping[str, Any]) -> str:
    """A heading line and one horizontal bar per operator (cycles), widths relative to the slowest."""
    esc = html.escape
    parts = [f"<h3>{esc(headline(section))}</h3>"]
    if section.get("ran_where"):
        parts.append(f"<p class='method'>Ran where: {esc(str(section['ran_where']))}</p>")
    if section.get("method"):
        parts.append(f"<p class='method'>{esc(str(section['method']))}</p>")
    ops = [o for o in (section.get("profile") or {}).get("operators") or [] if isinstance(o, Mapping)]
    if ops:
        most = max(float(o.get("cycles") or 0.0) for o in ops) or 1.0
        parts.append("<table class='profile'><tr><th>#</th><th>operator</th><th>cycles</th><th></th>"
                     "<th>MACs</th><th>params</th><th>act. bytes</th></tr>")
        for o in ops:
            cycles = float(o.get("cycles") or 0.0)
            width = max(0.5, 100.0 * cycles / most)
            parts.append(
                f"<tr><td>{esc(str(o.get('index', '')))}</td><td>{esc(str(o.get('op', '')))}</td>"
                f"<td>{_num(cycles)}</td>"
                f"<td style='width:40%'><div style='background:#4a7bd0;height:0.9em;width:{width:.1f}%' "
                f"title='{float(o.get('share') or 0) * 100:.1f} %'></div></td>"
                f"<td>{_num(o.get('macs'))}</td><td>{_num(o.get('parameters'))}</td>"
                f"<td>{_num(o.get('activation_bytes'))}</td></tr>"
            )
        parts.append("</table>")
    return "\n".join(parts)
