"""``size``: the .tflite file must fit the size limit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_tinyml.checks.base import CheckInfo, DeclaredCheck, Verdict, fmt_bytes, fmt_limit_bytes
from pytest_tinyml.kinds import Direction

if TYPE_CHECKING:
    from pytest_tinyml.measurements import Measurements as Target
    from pytest_tinyml.spec.model import Constraints


def judge_size(
    size: int, limit: int, limit_text: str, largest: list[tuple[str, int]], quantization: str = "float32"
) -> Verdict:
    passed = size <= limit
    relation = "<=" if passed else ">"
    top = ", ".join(f"{name} {fmt_bytes(n)}" for name, n in largest[:3])
    message = f"size: {fmt_bytes(size)} {relation} limit {fmt_limit_bytes(limit, limit_text)}"
    if not passed and top:
        message += f"; largest tensors: {top}"
    return Verdict(
        name="size",
        passed=passed,
        measured=size,
        limit=limit,
        unit="B",
        message=message,
        fix=None if passed else _size_fix(quantization),
        extra={"largest_tensors": [[n, b] for n, b in largest[:10]]},
    )


def _size_fix(quantization: str) -> str:
    if quantization == "int8":
        return (
            "the model is already int8: shrink the largest layers listed above (fewer filters or units), "
            "or raise max_size if the board's flash allows it"
        )
    return "quantize to int8 (quantization: {mode: int8}), or shrink the largest layers listed above"


class SizeCheck(DeclaredCheck):
    info = CheckInfo(
        name="size",
        key="max_size",
        metric="size_bytes",
        unit="B",
        direction=Direction.LOWER,
        threshold="size_bytes",
    )

    def applies(self, constraints: Constraints) -> bool:
        return constraints.max_size is not None

    def evaluate(self, m: Target) -> Verdict:
        limit = m.constraints.max_size
        assert limit is not None
        largest = [(t.name, t.nbytes) for t in m.model_info.largest_tensors(10, constant=True)]
        info = m.model_info
        return judge_size(len(m.tflite_bytes), limit.bytes, limit.text, largest, info.quantization)
