"""``int8_io``: the model's inputs and outputs must have the dtype the firmware feeds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_tinyml.checks.base import CheckInfo, DeclaredCheck, Verdict

if TYPE_CHECKING:
    from pytest_tinyml.measurements import Measurements as Target
    from pytest_tinyml.spec.model import Constraints


def judge_io(want: str, inputs: list[tuple[str, str]], outputs: list[tuple[str, str]]) -> Verdict:
    wrong = [f"input {n} is {d}" for n, d in inputs if d != want]
    wrong += [f"output {n} is {d}" for n, d in outputs if d != want]
    measured = "in " + ",".join(d for _, d in inputs) + " / out " + ",".join(d for _, d in outputs)
    if not wrong:
        return Verdict("int8_io", True, measured, want, "dtype", f"int8_io: inputs and outputs are {want}")
    return Verdict(
        name="int8_io",
        passed=False,
        measured=measured,
        limit=want,
        unit="dtype",
        message=f"int8_io: {'; '.join(wrong)}, expected {want}",
        fix=f"convert with converter.inference_input_type = converter.inference_output_type = tf.{want} "
        "(quantization: {mode: int8} does this)",
    )


class IoCheck(DeclaredCheck):
    info = CheckInfo(name="int8_io", key="io_dtype", unit="dtype")

    def applies(self, constraints: Constraints) -> bool:
        return constraints.io_dtype not in (None, "any")

    def evaluate(self, m: Target) -> Verdict:
        info = m.model_info
        want = m.constraints.io_dtype
        assert want is not None
        return judge_io(
            want,
            [(t.name, t.dtype) for t in info.inputs],
            [(t.name, t.dtype) for t in info.outputs],
        )
