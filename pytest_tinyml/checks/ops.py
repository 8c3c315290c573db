"""``tflm_ops``: TFLM itself must accept every op (its kernels' Prepare checks tensor types too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_tinyml.analysis.vela import ETHOS_U_OP
from pytest_tinyml.checks.base import CheckInfo, DeclaredCheck, Verdict
from pytest_tinyml.errors import NotEvaluable
from pytest_tinyml.kinds import OpStatus

if TYPE_CHECKING:
    from pytest_tinyml.measurements import Measurements as Target
    from pytest_tinyml.spec.model import Constraints


def judge_tflm_ops(alloc: Any, report: list[Any], op_names: list[str]) -> Verdict:
    """``alloc``: TflmAllocation; ``report``: OpSupport rows (op, count, status, reason, fix).

    ``status`` is ok, register (TFLM ships the op but the firmware must register it: a note, not a
    failure), unsupported (TFLM has no kernel) or rejected (TFLM's kernel refused the tensor types).
    """
    failing = [r for r in report if r.status in (OpStatus.UNSUPPORTED, OpStatus.REJECTED)]
    notes = [
        f"note: {r.op} is a custom op TFLM ships (signal library): register it in the firmware's op resolver"
        + (f" ({r.reason})" if r.reason else "")
        for r in report
        if r.status == OpStatus.REGISTER
    ]
    extra = {"ops": sorted(set(op_names)), "report": [r.to_dict() for r in report]}
    if alloc.ok and not failing:
        message = f"tflm_ops: TFLM allocates the model; {len(set(op_names))} op types: {', '.join(sorted(set(op_names)))}"
        return Verdict("tflm_ops", True, 0, 0, "unsupported ops", message, details=notes, extra=extra)
    if alloc.signal:
        why = f"TFLM crashed ({alloc.signal}) while allocating the model"
    elif alloc.timed_out:
        why = "TFLM did not finish allocating the model (timed out)"
    else:
        names = ", ".join(r.op for r in failing)
        why = f"TFLM refused the model{f' ({names})' if names else ''}: " + " ".join(
            (alloc.reason or "no reason printed").split()
        )
    details = [f"{r.op} x{r.count}: {r.status}: {r.reason or 'no reason given'}" for r in failing]
    fixes = sorted({r.fix for r in failing if r.fix})
    if alloc.timed_out:
        fixes = ["if the model is only slow to allocate, raise the ini option tinyml_tflm_timeout; a model that "
                 "hangs TFLM is corrupt or hostile: do not deploy it"]
    elif alloc.signal:
        fixes = [f"TFLM itself crashed ({alloc.signal}) on this model: it is corrupt or hits a TFLM bug; do not deploy it"]
    return Verdict(
        name="tflm_ops",
        passed=False,
        measured=max(1, len(failing)),
        limit=0,
        unit="unsupported ops",
        message=f"tflm_ops: {why}",
        details=details + notes,
        fix="; ".join(fixes) if fixes else "convert with int8-only builtin ops that TFLM registers",
        extra=extra,
    )


class TflmOpsCheck(DeclaredCheck):
    info = CheckInfo(name="tflm_ops", key="ops", unit="unsupported ops")

    def applies(self, constraints: Constraints) -> bool:
        return constraints.ops == "tflm"

    def evaluate(self, m: Target) -> Verdict:
        info = m.model_info
        if m.board.npu is not None and ETHOS_U_OP in info.op_names:
            return judge_compiled_for_npu(m.tflm_ops, [op.name for op in info.ops])
        return judge_tflm_ops(m.tflm_allocation, m.tflm_ops, [op.name for op in info.ops])


def judge_compiled_for_npu(report: list[Any], op_names: list[str]) -> Verdict:
    """A model Vela already compiled, on a board with an Ethos-U NPU: host TFLM has no Ethos-U driver, so it
    cannot allocate the model here; the operators left on the CPU are judged by name (TFLM has a kernel for
    each, or not), and the item skips when they all have one."""
    cpu = [r for r in report if r.op != ETHOS_U_OP]
    missing = [r for r in cpu if r.status == OpStatus.UNSUPPORTED]
    names = ", ".join(sorted({r.op for r in cpu})) or "none"
    if missing:
        return Verdict(
            "tflm_ops", False, len(missing), 0, "unsupported ops",
            f"tflm_ops: the CPU part of the Vela-compiled model has operators TFLM lacks: "
            f"{', '.join(r.op for r in missing)}",
            details=[f"{r.op} x{r.count}: {r.status}: {r.reason or 'no reason given'}" for r in missing],
            fix="; ".join(sorted({r.fix for r in missing if r.fix})) or "convert with ops TFLM registers",
            extra={"ops": sorted(set(op_names)), "report": [r.to_dict() for r in report]},
        )
    raise NotEvaluable(
        f"the model was compiled by Vela (ethos-u operator) and host TFLM has no Ethos-U driver, so it cannot "
        f"allocate it here; the operators left on the CPU ({names}) all have TFLM kernels",
        "judge the model as it was before Vela compiled it for TFLM's own allocation",
    )
