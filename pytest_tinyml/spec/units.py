"""Units used in specs, parsed strictly.

Sizes: a whole number of bytes (``51200``) or a number with a unit: ``B``, ``KB`` (1,000 B), ``KiB``
(1,024 B), ``MB`` (1,000,000 B), ``MiB`` (1,048,576 B). ``Kb``/``kb`` are refused: they read as kilobits.
Times: a number with ``s``, ``ms``, ``us`` (or ``µs``), ``ns``; a bare number is refused.
Accuracy differences: percentage points, a number or ``"1pt"``; ``"1%"`` is refused because it could be
relative. Accuracies: ``"95%"``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

_SIZE_UNITS = {"B": 1, "KB": 1000, "KIB": 1024, "MB": 1000**2, "MIB": 1024**2, "GB": 1000**3, "GIB": 1024**3}
_TIME_UNITS = {"S": 1.0, "MS": 1e-3, "US": 1e-6, "µS": 1e-6, "NS": 1e-9}
_NUM_UNIT = re.compile(r"^\s*((?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*([A-Za-zµ%]*)\s*$")


class UnitError(ValueError):
    """The value is not of the form the field wants; the message says the form."""


#: Bounds that keep every value a spec can write finite, convertible to int and printable: no
#: microcontroller memory reaches 1 TiB, no clock 1 THz, no latency budget a day.
MAX_SIZE_BYTES = 2**40
MAX_FREQUENCY_HZ = 10**12
MAX_SECONDS = 86_400.0


@dataclass(frozen=True)
class Size:
    bytes: int
    text: str

    def __str__(self) -> str:
        return self.text


def _short(value: object) -> str:
    """``repr(value)`` cut to 60 characters (a spec value can be megabytes long)."""
    if isinstance(value, int) and value.bit_length() > 200:  # repr() refuses ints over 4,300 digits
        return f"an integer of about {int(value.bit_length() * 0.30103):,} digits"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:60]}...({len(text) - 60:,} more)"


def _split(value: str) -> tuple[float, str]:
    if len(value) > 200:
        raise UnitError(f"{_short(value)} is not a number with a unit (too long)")
    m = _NUM_UNIT.match(value)
    if not m:
        raise UnitError(f"{_short(value)} is not a number with a unit")
    number = float(m.group(1))
    if not math.isfinite(number):
        raise UnitError(f"{_short(value)} is not a finite number")
    return number, m.group(2)


def parse_size(value: object) -> Size:
    """``51200`` / ``"50KiB"`` / ``"50 KB"`` -> :class:`Size`."""
    if isinstance(value, bool):
        raise UnitError("expected a size such as 50KiB or 51200 (bytes), got a boolean")
    if isinstance(value, int):
        if value < 0:
            raise UnitError("size is negative")
        if value > MAX_SIZE_BYTES:
            raise UnitError("size is larger than any microcontroller memory (over 1 TiB)")
        return Size(value, f"{value:,} B")
    if isinstance(value, float):
        raise UnitError(f"size {_short(value)} has no unit: write bytes as a whole number or add KiB/KB/MiB/MB")
    if not isinstance(value, str):
        raise UnitError(f"expected a size such as 50KiB, got {type(value).__name__}")
    number, unit = _split(value)
    if number > MAX_SIZE_BYTES:
        raise UnitError(f"{_short(value)} is larger than any microcontroller memory (over 1 TiB)")
    if unit in ("Kb", "kb", "Mb", "mb"):
        raise UnitError(
            f"{_short(value)}: '{unit}' reads as kilobits/megabits; write {number:g}KiB "
            f"({int(number * 1024):,} bytes) or {number:g}KB ({int(number * 1000):,} bytes)"
        )
    if unit == "":
        if number != int(number):
            raise UnitError(f"{_short(value)} has no unit: add KiB/KB/MiB/MB or write whole bytes")
        return Size(int(number), f"{int(number):,} B")
    factor = _SIZE_UNITS.get(unit.upper())
    if factor is None or unit.upper() == "KB" and unit not in ("KB", "kB"):
        raise UnitError(f"{_short(value)}: unknown size unit '{unit}' (use B, KB = 1000 B, KiB = 1024 B, MB, MiB)")
    total = number * factor
    if not math.isfinite(total) or total > MAX_SIZE_BYTES:
        raise UnitError(f"{_short(value)} is larger than any microcontroller memory (over 1 TiB)")
    if total != int(total):
        raise UnitError(f"{_short(value)} is not a whole number of bytes")
    return Size(int(total), f"{number:g} {unit}")


def parse_time(value: object) -> float:
    """``"1ms"`` -> ``0.001`` seconds. A bare number is refused."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UnitError(f"expected a time such as 1ms, got {type(value).__name__}")
    if not isinstance(value, str):
        raise UnitError(f"time {_short(value)} has no unit: write e.g. {_short(value)[:20]}ms")
    number, unit = _split(value)
    factor = _TIME_UNITS.get(unit.upper()) if unit != "µs" else 1e-6
    if factor is None:
        raise UnitError(f"{_short(value)}: unknown time unit '{unit}' (use s, ms, us, ns)")
    seconds = number * factor
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise UnitError(f"{_short(value)} is longer than a day; write a latency such as 10ms")
    return seconds


def parse_points(value: object) -> float:
    """Percentage points: ``1``, ``0.5``, ``"1pt"``. ``"1%"`` is refused (relative or absolute?)."""
    if isinstance(value, bool):
        raise UnitError("expected percentage points such as 1.0 or '1pt', got a boolean")
    if isinstance(value, int) and not -1000 <= value <= 1000:
        raise UnitError(f"{_short(value)} is not between 0 and 100 percentage points")
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    elif isinstance(value, str):
        number, unit = _split(value)
    else:
        raise UnitError(f"expected percentage points such as 1.0 or '1pt', got {type(value).__name__}")
    if unit == "%":
        raise UnitError(
            f"{_short(value)}: '%' is ambiguous for a difference; write {number:g}pt (percentage points)"
        )
    if unit not in ("", "pt", "pts", "pp"):
        raise UnitError(f"{_short(value)}: unknown unit '{unit}' (use percentage points: 1pt)")
    if not math.isfinite(number) or number < 0 or number > 100:
        raise UnitError(f"{_short(value)} is not between 0 and 100 percentage points")
    return number


def parse_percent(value: object) -> float:
    """``"95%"`` -> ``95.0``. Bare numbers are refused (fraction or percent?)."""
    if not isinstance(value, str):
        raise UnitError(f"write an accuracy as a percentage such as '95%', got {_short(value)}")
    number, unit = _split(value)
    if unit != "%":
        raise UnitError(f"{_short(value)}: write an accuracy as a percentage such as '95%'")
    if number > 100:
        raise UnitError(f"{_short(value)} is over 100%")
    return number


def parse_frequency(value: object) -> int:
    """``"168MHz"`` / ``168000000`` -> Hz."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 < value <= MAX_FREQUENCY_HZ:
            raise UnitError("clock must be between 1 Hz and 1 THz, such as 168MHz")
        return value
    if not isinstance(value, str):
        raise UnitError(f"expected a clock such as 168MHz, got {_short(value)}")
    number, unit = _split(value)
    factor = {"HZ": 1, "KHZ": 1e3, "MHZ": 1e6, "GHZ": 1e9}.get(unit.upper())
    if factor is None:
        raise UnitError(f"{_short(value)}: unknown frequency unit '{unit}' (use Hz, kHz, MHz)")
    hz = number * factor
    if not math.isfinite(hz) or not 1 <= hz <= MAX_FREQUENCY_HZ:
        raise UnitError(f"{_short(value)}: a clock must be between 1 Hz and 1 THz")
    return int(hz)
