"""The NPU section of report.md/html: Vela's per-layer estimate from the ``npu_latency`` item's record
(``extra.layers``), labelled as Vela's estimate with no NPU emulator run. Targets without that item get
nothing (their reports are unchanged)."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any


def _npu_extra(items: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    for item in items:
        extra = item.get("extra")
        if item.get("check") == "npu_latency" and isinstance(extra, Mapping) and isinstance(extra.get("layers"), list):
            return extra
    return None


def headline(extra: Mapping[str, Any]) -> str:
    seconds = float(extra.get("npu_latency_seconds") or 0.0)
    return (f"NPU latency, Vela's estimate: {seconds * 1e3:.4f} ms per inference "
            f"({int(extra.get('cycles_total') or 0):,} cycles at {float(extra.get('npu_clock_hz') or 0) / 1e6:g} MHz; "
            f"{extra.get('accelerator', '')}, {extra.get('system_config', '')}, {extra.get('memory_mode', '')})")


def _rows(extra: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for i, layer in enumerate(extra.get("layers") or []):
        if isinstance(layer, Mapping):
            rows.append((str(i), str(layer.get("original_op", "")), str(layer.get("npu_op", "")),
                         f"{int(layer.get('cycles') or 0):,}", f"{float(layer.get('share') or 0) * 100:.1f} %",
                         f"{int(layer.get('macs') or 0):,}", str(layer.get("name", ""))))
    return rows


_HEAD = ("#", "operator", "NPU operation", "cycles", "share", "MACs", "name")


def markdown_lines(items: list[Mapping[str, Any]]) -> list[str]:
    extra = _npu_extra(items)
    if extra is None:
        return []
    lines = [f"**{headline(extra)}**", "", f"Note: {extra.get('limits_note', '')}", ""]
    rows = _rows(extra)
    if rows:
        lines.append("| " + " | ".join(_HEAD) + " |")
        lines.append("|" + "---|" * len(_HEAD))
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        lines.append("")
    return lines


def terminal_lines(verdicts: list[Any], indent: str = "  ") -> list[str]:
    """The NPU headline and Vela's five slowest NPU operations under a target's table in the terminal."""
    extra = _npu_extra([{"check": v.get("name"), "extra": v.get("extra")} for v in verdicts if isinstance(v, Mapping)])
    if extra is None:
        return []
    lines = [indent + headline(extra), indent + f"({extra.get('limits_note', '')})"]
    rows = sorted(_rows(extra), key=lambda r: -int(r[3].replace(",", "")))[:5]
    if rows:
        table = [_HEAD, *rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(_HEAD))]
        lines.append(indent + f"slowest NPU operations ({len(rows)} of {len(_rows(extra))}):")
        lines += [indent + "  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in table]
    return lines


def html_section(items: list[Mapping[str, Any]]) -> str:
    extra = _npu_extra(items)
    if extra is None:
        return ""
    esc = html.escape
    parts = [f"<h3>{esc(headline(extra))}</h3>", f"<p class='method'>{esc(str(extra.get('limits_note', '')))}</p>",
             "<table class='profile'><tr>" + "".join(f"<th>{esc(h)}</th>" for h in _HEAD) + "</tr>"]
    parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in _rows(extra)]
    parts.append("</table>")
    return "\n".join(parts)


__all__ = ["html_section", "markdown_lines", "terminal_lines"]
