"""The contract between measurements and verdicts.

A check is a plain object with a canonical ``name`` (the pytest item name), the constraint ``key`` it
judges, the report ``metric`` it measures (or None), its ``unit`` and ``direction``, ``applies(constraints)``
and ``evaluate(target) -> Verdict``. It knows nothing about pytest or TensorFlow. A check that cannot
be evaluated raises :class:`pytest_tinyml.errors.NotEvaluable`; a bad model or build raises a
:class:`pytest_tinyml.errors.TinyMLError`. Everything else is a :class:`Verdict`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pytest_tinyml.fmt import fmt_bytes, fmt_limit_bytes

if TYPE_CHECKING:
    from pytest_tinyml.measurements import Measurements as Target
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
    """What a constraint check provides (built-in ones and plugins' alike).

    ``key``: the field of ``constraints`` it judges (the item points at that spec line). ``metric``: the
    name of the number it measures in reports and baselines (``size_bytes``; None for pass/fail checks).
    ``unit``: the unit of ``Verdict.measured``. ``direction``: ``"lower"`` when smaller is better,
    ``"higher"`` when larger is better, ``""`` for neither. Optional: ``threshold`` (the
    ``RegressionSpec`` field that bounds the metric's regression against a baseline) and ``markers``
    (pytest markers its items carry, e.g. ``("firmware",)``).
    """

    name: str

    @property
    def key(self) -> str: ...

    @property
    def metric(self) -> str | None: ...

    @property
    def unit(self) -> str: ...

    @property
    def direction(self) -> str: ...

    def applies(self, constraints: Constraints) -> bool:
        """True when the spec (or audit defaults) asks for this constraint."""
        ...

    def evaluate(self, measurements: Target) -> Verdict:
        """Measure and judge. Raise NotEvaluable to skip with a reason."""
        ...


@dataclass(frozen=True)
class Metric:
    """A number reports show and baselines compare, as declared by the check that measures it."""

    name: str  # e.g. size_bytes
    check: str  # the check's name, e.g. size
    unit: str
    worse: int  # +1: growing is worse; -1: falling is worse
    threshold: str | None  # RegressionSpec field bounding its regression, or None

    @property
    def word(self) -> str:
        return self.check.replace("_", " ")

    @property
    def spec_key(self) -> str | None:
        return f"constraints.regression.{self.check}" if self.threshold else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def metrics_of(checks: Iterable[Any]) -> dict[str, Metric]:
    """The metrics the registered checks declare, in check order."""
    out: dict[str, Metric] = {}
    for check in checks:
        metric = getattr(check, "metric", None)
        direction = getattr(check, "direction", "")
        if not metric or direction not in ("lower", "higher"):
            continue
        out[metric] = Metric(
            name=metric,
            check=check.name,
            unit=str(getattr(check, "unit", "") or ""),
            worse=+1 if direction == "lower" else -1,
            threshold=getattr(check, "threshold", None),
        )
    return out


def builtin_metrics() -> dict[str, Metric]:
    """The metrics of the built-in checks (for documents written before metrics travelled in them)."""
    from pytest_tinyml.builtin import builtin_checks

    return metrics_of(builtin_checks())


__all__ = [
    "CANONICAL_NAMES",
    "Check",
    "Metric",
    "Verdict",
    "builtin_metrics",
    "fmt_bytes",
    "fmt_limit_bytes",
    "metrics_of",
]
