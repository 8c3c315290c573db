"""The one seconds formatter: ``0.0123`` -> ``'12.3 ms'``."""

from __future__ import annotations

from typing import Literal


def format_seconds(seconds: float, *, smallest: Literal["ns", "µs"] = "ns") -> str:
    """Seconds for people, three significant digits in s, ms, µs or ns.

    ``smallest="ns"`` (reports, deltas): the unit follows the magnitude (sign kept), ``4.2e-8`` is
    ``'42 ns'``. ``smallest="µs"`` (the latency verdict's message): anything under a millisecond, including
    zero and negative values, is written in µs, as that message always has.
    """
    a = abs(seconds) if smallest == "ns" else seconds
    if a >= 1:
        return f"{seconds:.3g} s"
    if a >= 1e-3:
        return f"{seconds * 1e3:.3g} ms"
    if smallest == "µs" or a >= 1e-6 or a == 0:
        return f"{seconds * 1e6:.3g} µs"
    return f"{seconds * 1e9:.3g} ns"


__all__ = ["format_seconds"]
