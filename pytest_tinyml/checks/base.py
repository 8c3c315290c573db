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
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pytest_tinyml.fmt import fmt_bytes, fmt_limit_bytes
from pytest_tinyml.kinds import Direction

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
    "npu_ops",
    "npu_sram",
    "npu_flash",
    "npu_latency",
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

    A check may declare these as plain attributes, or once as a :class:`CheckInfo` by deriving from
    :class:`DeclaredCheck` (the built-in checks do); :func:`check_info` reads either.
    """

    @property
    def name(self) -> str: ...

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
class CheckInfo:
    """What a check declares about itself, once: its item ``name``, the constraint ``key`` it judges, the
    ``metric`` it measures (None for pass/fail checks) in ``unit``, the ``direction`` that is better, the
    ``threshold`` (``RegressionSpec`` field) bounding the metric's regression and the ``markers`` of its
    items."""

    name: str
    key: str
    metric: str | None = None
    unit: str = ""
    direction: Direction = Direction.NONE
    threshold: str | None = None
    markers: tuple[str, ...] = ()
    npu: bool = False  # items only for boards with an Ethos-U NPU (``npu:`` in boards.yaml)


class DeclaredCheck:
    """Base of checks that declare their :class:`CheckInfo` once, as the class attribute ``info``; the plain
    attributes of :class:`Check` read it."""

    info: ClassVar[CheckInfo]

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def key(self) -> str:
        return self.info.key

    @property
    def metric(self) -> str | None:
        return self.info.metric

    @property
    def unit(self) -> str:
        return self.info.unit

    @property
    def direction(self) -> str:
        return self.info.direction

    @property
    def threshold(self) -> str | None:
        return self.info.threshold

    @property
    def markers(self) -> tuple[str, ...]:
        return self.info.markers


def check_info(check: Any) -> CheckInfo:
    """The declaration of any check: its ``info``, or one read from its plain attributes (plugins' checks
    written before :class:`CheckInfo`; their direction must already be one of :class:`Direction`'s)."""
    info = getattr(check, "info", None)
    if isinstance(info, CheckInfo):
        return info
    key = getattr(check, "key", None)
    return CheckInfo(
        name=str(check.name),
        key=key if isinstance(key, str) else "",
        metric=getattr(check, "metric", None),
        unit=str(getattr(check, "unit", "") or ""),
        direction=Direction(getattr(check, "direction", "") or ""),
        threshold=getattr(check, "threshold", None),
        markers=tuple(str(m) for m in getattr(check, "markers", ()) or ()),
    )


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
        info = check_info(check)
        if not info.metric or info.direction is Direction.NONE:
            continue
        out[info.metric] = Metric(
            name=info.metric,
            check=info.name,
            unit=info.unit,
            worse=+1 if info.direction is Direction.LOWER else -1,
            threshold=info.threshold,
        )
    return out


__all__ = [
    "CANONICAL_NAMES",
    "Check",
    "CheckInfo",
    "DeclaredCheck",
    "Metric",
    "Verdict",
    "check_info",
    "fmt_bytes",
    "fmt_limit_bytes",
    "metrics_of",
]
