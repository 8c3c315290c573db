"""``accuracy`` and ``accuracy_drop``: the deployed model's accuracy, and what quantization cost."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_tinyml.checks.base import CheckInfo, DeclaredCheck, Verdict
from pytest_tinyml.kinds import Direction

if TYPE_CHECKING:
    from pytest_tinyml.measurements import Measurements as Target
    from pytest_tinyml.spec.model import Constraints


def _stage_lines(report: Any) -> list[str]:
    lines = []
    for name, (acc, n, lo, hi) in report.stages.items():
        lines.append(f"{name}: {acc:.2f} % on {n:,} test images (95 % CI {lo:.2f}-{hi:.2f})")
    return lines


def _deployed_stage(report: Any) -> str:
    for name in ("tflm", "litert"):
        if name in report.stages:
            return name
    return next(iter(report.stages))


def judge_accuracy(report: Any, minimum: float) -> Verdict:
    stage = "litert" if "litert" in report.stages else _deployed_stage(report)
    acc, n, lo, hi = report.stages[stage]
    passed = acc >= minimum
    relation = ">=" if passed else "<"
    return Verdict(
        name="accuracy",
        passed=passed,
        measured=round(acc, 4),
        limit=minimum,
        unit="%",
        message=f"accuracy: {acc:.2f} % ({stage}, {n:,} test images) {relation} minimum {minimum:g} %",
        details=_stage_lines(report),
        fix=None if passed else "train longer or with more data, or enlarge the model",
        extra={"stages": {k: list(v) for k, v in report.stages.items()}},
    )


def judge_drop(report: Any, limit: float) -> Verdict:
    drop = report.drop_points
    lo, hi = report.drop_ci
    passed = drop < limit
    relation = "<" if passed else ">="
    message = f"accuracy_drop: {drop:.2f} pt {relation} limit {limit:g} pt (float -> quantized, paired on {report.n:,} images"
    message += f", 95 % CI {lo:.2f} to {hi:.2f} pt)"
    details = _stage_lines(report)
    if lo < limit <= hi:
        details.append(
            f"the 95 % interval straddles the limit of {limit:g} pt: the test set is too small to tell; "
            "evaluate on more images for a firm verdict"
        )
    return Verdict(
        name="accuracy_drop",
        passed=passed,
        measured=round(drop, 4),
        limit=limit,
        unit="pt",
        message=message,
        details=details,
        fix=None
        if passed
        else "use more representative samples (quantization.representative_samples), quantization-aware "
        "training (mode: qat), or avoid layers that quantize badly",
        extra={"ci": [lo, hi], "stages": {k: list(v) for k, v in report.stages.items()}},
    )


class AccuracyCheck(DeclaredCheck):
    info = CheckInfo(
        name="accuracy",
        key="min_accuracy",
        metric="accuracy_pct",
        unit="%",
        direction=Direction.HIGHER,
        threshold="accuracy_points",
    )

    def applies(self, constraints: Constraints) -> bool:
        return constraints.min_accuracy is not None

    def evaluate(self, m: Target) -> Verdict:
        assert m.constraints.min_accuracy is not None
        return judge_accuracy(m.accuracy, m.constraints.min_accuracy)


class AccuracyDropCheck(DeclaredCheck):
    info = CheckInfo(
        name="accuracy_drop",
        key="max_accuracy_drop",
        metric="accuracy_drop_pt",
        unit="pt",
        direction=Direction.LOWER,
    )

    def applies(self, constraints: Constraints) -> bool:
        return constraints.max_accuracy_drop is not None

    def evaluate(self, m: Target) -> Verdict:
        assert m.constraints.max_accuracy_drop is not None
        return judge_drop(m.accuracy, m.constraints.max_accuracy_drop)
