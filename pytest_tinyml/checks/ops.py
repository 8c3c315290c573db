"""``tflm_ops``: TFLM itself must accept every op (its kernels' Prepare checks tensor types too)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_tinyml.analysis.vela import ETHOS_U_OP, placement
from pytest_tinyml.boards import npu_board_names
from pytest_tinyml.checks.base import CheckInfo, DeclaredCheck, Verdict
from pytest_tinyml.errors import NotEvaluable, TinyMLError
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
        names = [op.name for op in info.ops]
        if ETHOS_U_OP in info.op_names:
            if m.board.npu is not None:
                return judge_compiled_for_npu(m.tflm_ops, names)
            return judge_needs_npu(m.tflm_ops, names, m.board.name)
        if m.board.npu is None:
            return judge_tflm_ops(m.tflm_allocation, m.tflm_ops, names)
        try:
            vela = m.vela
        except (NotEvaluable, TinyMLError) as exc:  # no Vela, or Vela refused the model: all of it is judged
            verdict = judge_tflm_ops(m.tflm_allocation, m.tflm_ops, names)
            why = exc.reason if isinstance(exc, NotEvaluable) else exc.message
            verdict.details.append(f"note: every operator is judged as if it ran on the CPU, as Vela did not place "
                                   f"them ({why})")
            return verdict
        return judge_cpu_part(m.tflm_allocation, m.tflm_ops, names, placement(info, vela), m.board.name)


def _counted(ops: dict[str, int]) -> str:
    return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in ops.items()) or "none"


def judge_cpu_part(alloc: Any, report: list[Any], op_names: list[str], where: dict[str, dict[str, int]],
                   board: str) -> Verdict:
    """A model (not yet compiled by Vela) on a board with an Ethos-U NPU: the operators Vela leaves on the CPU
    run with TFLM, so they are the ones judged; those Vela puts into the NPU's command stream need no TFLM
    kernel. ``where``: :func:`~pytest_tinyml.analysis.vela.placement` (``{"npu": {op: n}, "cpu": {op: n}}``).
    A TFLM failure that names no operator, a crash or a timeout of host TFLM still fails the item."""
    whole = judge_tflm_ops(alloc, report, op_names)
    cpu, npu = where["cpu"], where["npu"]
    ran = (f"on {board} the NPU runs {sum(npu.values())} operator(s) ({_counted(npu)}) and the CPU runs "
           f"{sum(cpu.values())} with TFLM ({_counted(cpu)}), as Vela placed them")
    extra = whole.extra | {"placement": where, "judged_on_cpu": sorted(cpu)}
    on_npu_only = set(npu) - set(cpu)
    failing = [r for r in report if r.status in (OpStatus.UNSUPPORTED, OpStatus.REJECTED)]
    cpu_failing = [r for r in failing if r.op not in on_npu_only]
    npu_notes = [f"note: {r.op} runs on the NPU, so TFLM's {r.status} ({r.reason or 'no reason given'}) does not "
                 "stop the deployment" for r in failing if r.op in on_npu_only]
    crashed = bool(alloc.signal or alloc.timed_out)
    if whole.passed or (not cpu_failing and not crashed):
        notes = [d for d in whole.details if d.startswith("note:")]
        return Verdict("tflm_ops", True, 0, 0, "unsupported ops",
                       f"tflm_ops: {ran}: TFLM has a kernel for each CPU operator"
                       if cpu else f"tflm_ops: {ran}: no operator is left for TFLM",
                       details=npu_notes + notes, extra=extra)
    details = [f"{r.op} x{r.count}: {r.status}: {r.reason or 'no reason given'} (on the CPU)" for r in cpu_failing]
    return Verdict(
        "tflm_ops", False, max(1, len(cpu_failing)), 0, "unsupported ops",
        whole.message + f" ({ran})",
        details=details + npu_notes + [d for d in whole.details if d.startswith("note:")],
        fix=whole.fix, extra=extra,
    )


def judge_needs_npu(report: list[Any], op_names: list[str], board: str) -> Verdict:
    """A model Vela already compiled (``ethos-u`` operator) on a board without an NPU: it needs an Ethos-U NPU,
    whatever TFLM says of the operators Vela left on the CPU (named too, with their TFLM status)."""
    npu_rows = [r for r in report if r.op == ETHOS_U_OP]
    cpu_rows = [r for r in report if r.op != ETHOS_U_OP]
    count = sum(r.count for r in npu_rows) or op_names.count(ETHOS_U_OP)
    cpu_missing = [r for r in cpu_rows if r.status in (OpStatus.UNSUPPORTED, OpStatus.REJECTED)]
    cpu_names = ", ".join(r.op for r in cpu_rows) or "none"
    details = [f"{r.op} x{r.count}: {r.status}: {r.reason or 'no reason given'}" for r in npu_rows + cpu_missing]
    details.append(f"operators Vela left on the CPU: {cpu_names}"
                   + (f" (TFLM lacks {', '.join(r.op for r in cpu_missing)})" if cpu_missing else ""))
    return Verdict(
        "tflm_ops", False, count + len(cpu_missing), 0, "unsupported ops",
        f"tflm_ops: the model needs an Arm Ethos-U NPU: it was compiled by Arm's Vela for an Ethos-U NPU (custom "
        f"operator {ETHOS_U_OP!r} x{count}, the NPU's command stream), and board {board} has none; boards with "
        f"one: {npu_board_names()}",
        details=details,
        fix=f"judge it on a board with an Ethos-U NPU (--tinyml-board with one of {npu_board_names()}), or audit "
            "the model as it was before Vela compiled it (TFLM then runs every operator on the CPU)",
        extra={"ops": sorted(set(op_names)), "report": [r.to_dict() for r in report], "needs_npu": True},
    )


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
