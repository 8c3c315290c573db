"""The contract between measurements and verdicts.

A check is a plain object with a canonical ``name`` (the pytest item name), ``applies(constraints)`` and
``evaluate(measurements) -> Verdict``. It knows nothing about pytest or TensorFlow. A check that cannot
be evaluated raises :class:`pytest_tinyml.errors.NotEvaluable`; a bad model or build raises a
:class:`pytest_tinyml.errors.TinyMLError`. Everything else is a :class:`Verdict`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pytest_tinyml.measure import Measurements
    from pytest_tinyml.spec.model import Constraints

#: Canonical item names, in the order items are collected and reported.
CANONICAL_NAMES = (
    "size",
    "int8_io",
    "tflm_ops",
    "arena",
    "flash",
    "accuracy",
    "accuracy_drop",
    "latency",
    "firmware_bitexact",
    "firmware_ram",
)


@dataclass
class Verdict:
    """The outcome of one constraint on one model.

    ``message`` is the one-line summary shown first on failure, e.g.
    ``size: 53,936 B > limit 51,200 B (50 KiB)``; ``details`` are further lines (largest tensors, per-op
    reasons); ``fix`` says what to do when it fails. ``extra`` carries structured data for reports
    (confidence intervals, per-op tables).
    """

    name: str
    passed: bool
    measured: float | int | str | None
    limit: float | int | str | None
    unit: str
    message: str
    details: list[str] = field(default_factory=list)
    fix: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def failure_text(self) -> str:
        lines = [self.message, *self.details]
        if self.fix:
            lines.append(f"fix: {self.fix}")
        return "\n".join(lines)


class Check(Protocol):
    """What a constraint check provides (built-in ones and plugins' alike)."""

    name: str

    def applies(self, constraints: Constraints) -> bool:
        """True when the spec (or audit defaults) asks for this constraint."""
        ...

    def evaluate(self, measurements: Measurements) -> Verdict:
        """Measure and judge. Raise NotEvaluable to skip with a reason."""
        ...


def fmt_bytes(n: int | float) -> str:
    """``53936`` -> ``'53,936 B'``."""
    return f"{int(round(n)):,} B"


def fmt_limit_bytes(n: int, text: str | None = None) -> str:
    """``51200, '50 KiB'`` -> ``'51,200 B (50 KiB)'``."""
    base = fmt_bytes(n)
    if text and text.replace(" ", "") != str(n):
        return f"{base} ({text})"
    return base
