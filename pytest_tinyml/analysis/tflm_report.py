"""What host TFLM says of each operator of a model (:func:`tflm_op_report` -> :class:`OpSupport`): TFLM's
op table combined with the host allocation's failure, which is authoritative."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_tinyml.analysis.tflm_host import TflmAllocation, reason_lines
from pytest_tinyml.boards import npu_board_names
from pytest_tinyml.kinds import OpStatus

if TYPE_CHECKING:
    from pytest_tinyml.analysis.model import ModelInfo

FIX_REQUANTIZE = (
    "re-quantize with a representative dataset and int8-only ops "
    "(converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8])"
)


@dataclass(frozen=True)
class OpSupport:
    op: str
    count: int
    status: OpStatus  # ok | register (TFLM ships it, the firmware must add it) | unsupported | rejected
    reason: str | None = None  # TFLM's words when the runtime rejected it, else the table's explanation
    fix: str | None = None
    custom: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "count": self.count,
            "status": self.status,
            "reason": self.reason,
            "fix": self.fix,
            "custom": self.custom,
        }


_PREPARE_FAIL_RE = re.compile(r"Node (\S+) \(number (\d+)\) failed to (?:prepare|invoke)")
_NOT_FOUND_RE = re.compile(r"Didn't find op for builtin opcode '([^']+)'")
_CUSTOM_FAIL_RE = re.compile(r"Failed to get registration from op code (\S+)")


def _failure_fix(info: ModelInfo, op: str, lines: list[str]) -> str:
    text = " ".join(lines)
    if "Hybrid models are not supported" in text or re.search(
        r"Input type: FLOAT32 with filter type: INT", text
    ):
        return FIX_REQUANTIZE + " (hybrid/dynamic-range models run float activations against int8 weights)"
    if info.quantization == "float16" or "kTfLiteFloat16" in text or "FLOAT16" in text:
        return FIX_REQUANTIZE + " (float16 weights are not supported by TFLM)"
    if info.quantization == "dynamic_range":
        return FIX_REQUANTIZE
    if re.search(r"Type (\w+) \(\d+\) not supported|not supported|was not true", text):
        return (
            f"make {op} run on tensor types TFLM implements for it (int8/int16 or float32): "
            "convert with full-integer quantization or change the layer"
        )
    return f"check the {op} layer's configuration against TFLM's kernel (see TFLM's message)"


def tflm_op_report(info: ModelInfo, alloc: TflmAllocation | None = None) -> list[OpSupport]:
    """One :class:`OpSupport` per distinct op of the model, in order of first use.

    Combines the op table of :mod:`pytest_tinyml.analysis.tflm_ops` (what TFLM ships; signal-library and
    other custom kernels are ``"register"``: TFLM has them but the firmware's op resolver must add them)
    with the host runtime's allocation failure, which is authoritative: an op TFLM named in its failure
    is ``"rejected"`` with TFLM's lines as the reason and a fix for the failure class (hybrid or float16
    quantization, unregistered custom op, op missing from TFLM, unsupported tensor types).
    """
    from pytest_tinyml.analysis import tflm_ops

    failed = alloc is not None and not alloc.ok
    lines = reason_lines(alloc.stderr) if alloc is not None and failed else []
    failed_text = (
        "; ".join(lines) if lines else ((alloc.reason or "") if alloc is not None and failed else "")
    )
    rejected: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = _PREPARE_FAIL_RE.search(line)
        if m:
            context = [x for x in lines[max(0, i - 3) : i + 1]]
            rejected.setdefault(m.group(1), "; ".join(context))
        m = _NOT_FOUND_RE.search(line)
        if m:
            rejected.setdefault(m.group(1), line)
    custom_failed = any(_CUSTOM_FAIL_RE.search(x) for x in lines)

    report: list[OpSupport] = []
    counts = info.ops_by_name
    customs = set(info.custom_ops)
    for name, count in counts.items():
        custom = name in customs
        if name in rejected:
            reason = rejected[name]
            if _NOT_FOUND_RE.search(reason):
                hint = tflm_ops.REPLACEMENT_HINTS.get(name, "use ops TFLM implements")
                fix = f"replace op {name}: {hint}"
            else:
                fix = _failure_fix(info, name, lines)
            report.append(OpSupport(name, count, OpStatus.REJECTED, reason, fix, custom))
            continue
        if custom:
            if tflm_ops.is_flex_op(name):
                report.append(
                    OpSupport(
                        name,
                        count,
                        OpStatus.UNSUPPORTED,
                        "a TensorFlow (Flex) op embedded with SELECT_TF_OPS; TFLM cannot run TensorFlow ops",
                        tflm_ops.REPLACEMENT_HINTS["FlexOps"],
                        True,
                    )
                )
            elif name in tflm_ops.TFLM_SIGNAL_OPS:
                report.append(
                    OpSupport(
                        name,
                        count,
                        OpStatus.REGISTER,
                        "TFLM ships it (signal library) but the firmware must register it",
                        f"call MicroMutableOpResolver::Add{name.removeprefix('Signal')}() (signal op {name}) "
                        "in the firmware's op resolver",
                        True,
                    )
                )
            elif name in tflm_ops.TFLM_OTHER_CUSTOM_OPS:
                method = tflm_ops.TFLM_OTHER_CUSTOM_OPS[name]
                report.append(
                    OpSupport(
                        name,
                        count,
                        OpStatus.REGISTER,
                        "TFLM ships it but the firmware must register it",
                        f"call MicroMutableOpResolver::{method} in the firmware's op resolver",
                        True,
                    )
                )
            else:
                what = tflm_ops.VENDOR_CUSTOM_OPS.get(name, "a custom op TFLM does not ship")
                reason = what
                if custom_failed:
                    reason = f"{what}; TFLM: {'; '.join(x for x in lines if _CUSTOM_FAIL_RE.search(x))}"
                fix = f"register custom op {name} in the firmware's op resolver, or convert without it"
                if name == "ethos-u":  # the command stream Arm's Vela compiler writes
                    reason = ("the model was compiled by Arm's Vela for an Ethos-U NPU: it needs a board with an "
                              "Ethos-U NPU and TFLM built with the Ethos-U driver; " + reason)
                    fix = (f"judge it on a board with an Ethos-U NPU (--tinyml-board with one of {npu_board_names()}), "
                           "or audit the model as it was before Vela compiled it")
                report.append(OpSupport(name, count, OpStatus.UNSUPPORTED, reason, fix, True))
            continue
        if name not in tflm_ops.TFLM_BUILTIN_OPS:
            hint = tflm_ops.REPLACEMENT_HINTS.get(
                name, "use ops TFLM implements, or write and register a kernel"
            )
            report.append(
                OpSupport(
                    name,
                    count,
                    OpStatus.UNSUPPORTED,
                    f"TFLM has no kernel for builtin op {name}",
                    f"replace op {name}: {hint}",
                )
            )
            continue
        report.append(OpSupport(name, count, OpStatus.OK))

    if failed_text and not any(r.status in (OpStatus.REJECTED, OpStatus.UNSUPPORTED) for r in report):
        # TFLM failed without naming an op of the model: attach its words to the model as a whole.
        model_fix: str | None = _failure_fix(info, "the model", lines) if lines else None
        report.append(OpSupport("(model)", 1, OpStatus.REJECTED, failed_text, model_fix))
    return report
