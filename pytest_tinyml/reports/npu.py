"""The NPU section of a report target (report.json's ``npu``) and its rendering in report.md/html and the
terminal: Vela's estimate (latency, cycles, per-layer rows) from the ``npu_latency`` item's record, which
operators ran on the NPU and which on the CPU from ``npu_ops``, Vela's SRAM and flash figures from
``npu_sram``/``npu_flash``; every figure labelled as Vela's estimate with no NPU emulator run. Built the way
the CPU ``latency`` section is (:mod:`pytest_tinyml.reports.profile`); targets without an NPU item get none
(their reports are unchanged)."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from typing import Any

#: What every NPU figure in a report is.
ESTIMATE = "Vela's estimate (no NPU emulator ran)"


def _extra(items: Iterable[Mapping[str, Any]], check: str) -> Mapping[str, Any] | None:
    for item in items:
        extra = item.get("extra")
        if item.get("check") == check and isinstance(extra, Mapping) and extra:
            return extra
    return None


def _item(items: Iterable[Mapping[str, Any]], check: str) -> Mapping[str, Any] | None:
    return next((i for i in items if i.get("check") == check), None)


def npu_section(items: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The ``npu`` section of a report target from its items (report.json's item dicts: ``check``, ``limit``,
    ``extra``), or None when no ``npu_*`` item recorded Vela's figures."""
    items = [i for i in items if isinstance(i, Mapping)]
    latency, ops = _extra(items, "npu_latency"), _extra(items, "npu_ops")
    sram, flash = _extra(items, "npu_sram"), _extra(items, "npu_flash")
    facts = latency or ops or sram or flash
    if facts is None:
        return None
    item = _item(items, "npu_latency")
    limit = item.get("limit") if item is not None and latency is not None else None
    layers = [dict(x) for x in (latency or {}).get("layers") or [] if isinstance(x, Mapping)]
    return {
        "estimate": ESTIMATE,
        "limits_note": facts.get("limits_note"),
        "accelerator": facts.get("accelerator"),
        "system_config": facts.get("system_config"),
        "memory_mode": facts.get("memory_mode"),
        "vela_version": facts.get("vela_version"),
        "clock_hz": facts.get("npu_clock_hz"),
        "seconds": latency.get("npu_latency_seconds") if latency else None,
        "judged": isinstance(limit, (int, float)) and not isinstance(limit, bool),
        "limit_seconds": limit if isinstance(limit, (int, float)) and not isinstance(limit, bool) else None,
        "cycles_total": latency.get("cycles_total") if latency else None,
        "macs": latency.get("macs") if latency else None,
        "method": latency.get("method") if latency else None,
        "layers": layers,
        "placement": ops.get("placement") if ops else None,
        "cpu_fallbacks": list(ops.get("cpu_fallbacks") or []) if ops else [],
        "sram_bytes": sram.get("npu_sram_bytes") if sram else None,
        "compiled_model_bytes": flash.get("compiled_model_bytes") if flash else None,
        "vela_flash_bytes": flash.get("vela_flash_bytes") if flash else None,
    }


def headline(section: Mapping[str, Any]) -> str:
    where = f"{section.get('accelerator') or ''}, {section.get('system_config') or ''}, {section.get('memory_mode') or ''}"
    if not isinstance(section.get("seconds"), (int, float)):
        return f"NPU, Vela's estimate: no latency estimate ({where})"
    judged = "judged by max_latency" if section.get("judged") else "information"
    return (f"NPU latency, Vela's estimate: {float(section['seconds']) * 1e3:.4f} ms per inference "
            f"({int(section.get('cycles_total') or 0):,} cycles at {float(section.get('clock_hz') or 0) / 1e6:g} MHz; "
            f"{where}; {judged})")


def _counted(ops: Any) -> str:
    if not isinstance(ops, Mapping) or not ops:
        return "none"
    return ", ".join(f"{op} x{n}" if isinstance(n, int) and n > 1 else str(op) for op, n in ops.items())


def placement_line(section: Mapping[str, Any]) -> str | None:
    where = section.get("placement")
    if not isinstance(where, Mapping):
        return None
    line = f"Ran where: NPU {_counted(where.get('npu'))}; CPU (TFLM) {_counted(where.get('cpu'))}"
    reasons = [f"{f.get('op')} ({f.get('tensor')}): {f.get('reason')}" for f in section.get("cpu_fallbacks") or []
               if isinstance(f, Mapping)]
    return line + (f". CPU fallbacks, Vela's reason: {'; '.join(reasons)}" if reasons else "")


def _memory_line(section: Mapping[str, Any]) -> str | None:
    parts = []
    if isinstance(section.get("sram_bytes"), int):
        parts.append(f"SRAM {section['sram_bytes']:,} B")
    if isinstance(section.get("compiled_model_bytes"), int):
        parts.append(f"compiled model {section['compiled_model_bytes']:,} B")
    if isinstance(section.get("vela_flash_bytes"), int):
        parts.append(f"flash for weights and command stream {section['vela_flash_bytes']:,} B")
    return f"Vela's memory figures: {', '.join(parts)}" if parts else None


def _rows(section: Mapping[str, Any]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for i, layer in enumerate(section.get("layers") or []):
        if isinstance(layer, Mapping):
            rows.append((str(i), str(layer.get("original_op", "")), str(layer.get("npu_op", "")),
                         f"{int(layer.get('cycles') or 0):,}", f"{float(layer.get('share') or 0) * 100:.1f} %",
                         f"{int(layer.get('macs') or 0):,}", str(layer.get("name", ""))))
    return rows


_HEAD = ("#", "operator", "NPU operation", "cycles", "share", "MACs", "name")


def _lines(section: Mapping[str, Any]) -> list[str]:
    lines = [line for line in (placement_line(section), _memory_line(section)) if line]
    lines.append(f"Note: {section.get('limits_note') or ESTIMATE}")
    return lines


def markdown_lines(section: Mapping[str, Any] | None) -> list[str]:
    if not section:
        return []
    lines = [f"**{headline(section)}**", ""]
    for line in _lines(section):
        lines += [line.replace("|", "\\|"), ""]
    rows = _rows(section)
    if rows:
        lines.append(f"Per NPU operation ({ESTIMATE}):")
        lines.append("")
        lines.append("| " + " | ".join(_HEAD) + " |")
        lines.append("|" + "---|" * len(_HEAD))
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        lines.append("")
    return lines


def terminal_lines(verdicts: list[Any], indent: str = "  ") -> list[str]:
    """The NPU headline, where the operators ran and Vela's five slowest NPU operations under a target's table
    in the terminal (from the target's verdict dicts)."""
    section = npu_section([{"check": v.get("name"), "limit": v.get("limit"), "extra": v.get("extra")}
                           for v in verdicts if isinstance(v, Mapping)])
    if section is None or section["seconds"] is None:
        return []
    lines = [indent + headline(section)]
    where = placement_line(section)
    if where:
        lines.append(indent + where)
    lines.append(indent + f"({section.get('limits_note') or ESTIMATE})")
    rows = sorted(_rows(section), key=lambda r: -int(r[3].replace(",", "")))[:5]
    if rows:
        table = [_HEAD, *rows]
        widths = [max(len(r[i]) for r in table) for i in range(len(_HEAD))]
        lines.append(indent + f"slowest NPU operations ({len(rows)} of {len(_rows(section))}):")
        lines += [indent + "  " + "  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip() for r in table]
    return lines


def html_section(section: Mapping[str, Any] | None) -> str:
    if not section:
        return ""
    esc = html.escape
    parts = [f"<h3>{esc(headline(section))}</h3>"]
    parts += [f"<p class='method'>{esc(line)}</p>" for line in _lines(section)]
    rows = _rows(section)
    if rows:
        parts.append(f"<p>Per NPU operation ({esc(ESTIMATE)}):</p>")
        parts.append("<table class='profile'><tr>" + "".join(f"<th>{esc(h)}</th>" for h in _HEAD) + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows]
        parts.append("</table>")
    return "\n".join(parts)


__all__ = ["ESTIMATE", "html_section", "markdown_lines", "npu_section", "placement_line", "terminal_lines"]
