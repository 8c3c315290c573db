"""Formatting for people, shared by checks, the terminal summary and the reports: one place for units."""

from __future__ import annotations

import math
from typing import Any

from pytest_tinyml._util.durations import format_seconds


def fmt_bytes(n: int | float) -> str:
    """``53936`` -> ``'53,936 B'``."""
    return f"{int(round(n)):,} B"


def fmt_value(value: Any, unit: str | None) -> str:
    """A measured value or limit with its unit, for people: bytes with separators, s as ms/µs, % and pt."""
    unit = unit or ""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return str(value)
        if unit == "B":
            return fmt_bytes(value)
        if unit == "s":
            return format_seconds(float(value))
        if unit == "%":
            return f"{value:.2f} %"
        if unit == "pt":
            return f"{value:.2f} pt"
        number = f"{value:,}" if isinstance(value, int) else f"{value:,.4g}"
        return f"{number} {unit}" if unit and unit != "dtype" else number
    return str(value)


def fmt_size_delta(delta: float) -> str:
    """``3277`` -> ``'+3.2 KiB'``; ``-512`` -> ``'-512 B'``."""
    sign = "+" if delta > 0 else "-" if delta < 0 else "±"
    a = abs(delta)
    if a >= 1024 * 1024:
        return f"{sign}{a / (1024 * 1024):.2f} MiB"
    if a >= 1024:
        return f"{sign}{a / 1024:.1f} KiB"
    return f"{sign}{int(round(a)):,} B"


def fmt_delta(metric: str, delta: float | None) -> str:
    """A change of one metric (``size_bytes``, ``latency_seconds``, ...) for people."""
    if delta is None:
        return "-"
    unit = metric_unit(metric)
    if unit == "B":
        return fmt_size_delta(delta)
    if unit == "s":
        text = format_seconds(abs(delta))
        return ("+" if delta > 0 else "-" if delta < 0 else "±") + text
    if unit in ("%", "pt"):
        return "±0.00 pt" if round(delta, 2) == 0 else f"{delta:+.2f} pt"
    return f"{delta:+g}"


def metric_unit(metric: str) -> str:
    if metric.endswith("_bytes"):
        return "B"
    if metric.endswith("_seconds"):
        return "s"
    if metric.endswith("_pct"):
        return "%"
    if metric.endswith("_pt"):
        return "pt"
    return ""


def one_line(text: Any, limit: int | None = None) -> str:
    """Collapse whitespace (and control characters) to single spaces; cut to ``limit`` characters."""
    s = "".join(ch if ch.isprintable() else " " for ch in str(text))
    s = " ".join(s.split())
    if limit is not None and len(s) > limit:
        s = s[: max(limit - 1, 0)].rstrip() + "…"
    return s


def fmt_limit_bytes(n: int, text: str | None = None) -> str:
    """``51200, '50 KiB'`` -> ``'51,200 B (50 KiB)'``."""
    base = fmt_bytes(n)
    if text and text.replace(" ", "") != str(n):
        return f"{base} ({text})"
    return base
