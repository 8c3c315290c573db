"""The Ethos-U NPU items, judged from Arm's Vela compiler (``analysis/vela.py``), on boards with an ``npu:``.

``npu_ops``: every operator on the NPU, else the CPU fallbacks with Vela's reason (they must then pass
``tflm_ops``: the CPU runs them with TFLM). ``npu_sram``: Vela's SRAM use <= the board's NPU SRAM − the RAM
reserve. ``npu_flash``: the compiled model (command stream, weights, CPU part) <= the board's NPU flash − the
flash reserve. ``npu_latency``: Vela's cycle estimate at the board's NPU clock, information unless
``max_latency`` is set. No NPU emulator runs: the NPU's outputs are not checked bit-exact, its latency is
Vela's estimate, and every message says so.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_tinyml.analysis.vela import placement
from pytest_tinyml.checks.base import CheckInfo, DeclaredCheck, Verdict, fmt_bytes
from pytest_tinyml.errors import NotEvaluable

if TYPE_CHECKING:
    from pytest_tinyml.analysis.vela import VelaResult
    from pytest_tinyml.measurements import Measurements as Target
    from pytest_tinyml.spec.model import Constraints

#: Said wherever an NPU figure is shown.
NPU_LIMITS = ("no NPU emulator ran: the NPU's outputs are not checked bit-exact and its latency is Vela's "
              "estimate")


def _vela_facts(v: VelaResult, board_npu: Any) -> dict[str, Any]:
    return {
        "accelerator": v.accelerator, "system_config": v.system_config, "memory_mode": v.memory_mode,
        "vela_version": v.vela_version, "npu_clock_hz": board_npu.clock_hz, "limits_note": NPU_LIMITS,
    }


def _where(v: VelaResult) -> str:
    if v.precompiled:
        return "[a model Vela had already compiled: figures read from its ethos-u operators]"
    return f"[Vela {v.vela_version}, {v.accelerator}, {v.system_config}, {v.memory_mode}]"


def _placement_line(where: dict[str, dict[str, int]]) -> str:
    def counted(ops: dict[str, int]) -> str:
        return ", ".join(f"{op} x{n}" if n > 1 else op for op, n in ops.items()) or "none"

    return f"ran where: NPU {counted(where['npu'])}; CPU (TFLM) {counted(where['cpu'])}"


def judge_npu_ops(v: VelaResult, board_npu: Any, where: dict[str, dict[str, int]] | None = None) -> Verdict:
    """``where``: which of the model's operators run on the NPU and which on the CPU
    (:func:`~pytest_tinyml.analysis.vela.placement`), recorded in ``extra.placement`` and shown."""
    fallbacks = [f"{f.op} ({f.tensor}): {f.reason}" for f in v.fallbacks]
    if where is None:  # a compiled model: the NPU part is its ethos-u operator(s)
        where = {"npu": {"ethos-u": v.npu_ops} if v.npu_ops else {}, "cpu": dict(v.cpu_op_counts)}
    extra = _vela_facts(v, board_npu) | {
        "npu_operations": v.npu_ops, "cpu_operations": v.cpu_ops,
        "cpu_fallbacks": [{"op": f.op, "tensor": f.tensor, "reason": f.reason} for f in v.fallbacks],
        "cpu_op_types": list(v.cpu_op_types), "placement": where,
    }
    cpu = max(v.cpu_ops, len(v.fallbacks))
    if cpu == 0:
        return Verdict("npu_ops", True, 0, 0, "CPU fallbacks",
                       f"npu_ops: every operator runs on the NPU ({v.npu_ops} NPU operations) {_where(v)}",
                       details=[_placement_line(where)], extra=extra)
    names = ", ".join(sorted({f.op for f in v.fallbacks} | set(v.cpu_op_types)))
    if v.precompiled:
        fallbacks = [f"{op}: on the CPU in the compiled model (Vela's reason is not stored in the file)"
                     for op in v.cpu_op_types]
    return Verdict(
        "npu_ops", False, cpu, 0, "CPU fallbacks",
        f"npu_ops: {cpu} operator(s) fall back to the CPU ({names}); {v.npu_ops} NPU operations {_where(v)}",
        details=[f"CPU fallback: {line}" for line in fallbacks]
        + [_placement_line(where), "the CPU part runs with TFLM: see the tflm_ops item for these operators"],
        fix="replace the CPU operators with ones Vela places on the NPU (its reason is given per operator; "
            "`vela --supported-ops-report` lists the constraints), or accept the fallback with ops: any",
        extra=extra,
    )


def judge_npu_sram(v: VelaResult, board_npu: Any, limit: int, reserve: int) -> Verdict:
    passed = v.sram_bytes <= limit
    relation = "<=" if passed else ">"
    return Verdict(
        "npu_sram", passed, v.sram_bytes, limit, "B",
        f"npu_sram: Vela's SRAM use {fmt_bytes(v.sram_bytes)} {relation} limit {fmt_bytes(limit)} (NPU SRAM "
        f"{fmt_bytes(board_npu.sram_bytes)} − reserve {fmt_bytes(reserve)}) {_where(v)}",
        fix=None if passed else "shrink the largest feature maps (fewer channels, smaller input), or use a memory "
        "mode that keeps the arena in larger memory",
        extra=_vela_facts(v, board_npu) | {"npu_sram_bytes": v.sram_bytes},
    )


def judge_npu_flash(v: VelaResult, board_npu: Any, limit: int, reserve: int) -> Verdict:
    passed = v.compiled_model_bytes <= limit
    relation = "<=" if passed else ">"
    return Verdict(
        "npu_flash", passed, v.compiled_model_bytes, limit, "B",
        f"npu_flash: compiled model {fmt_bytes(v.compiled_model_bytes)} (Vela's flash use for weights and command "
        f"stream {fmt_bytes(v.flash_bytes)}) {relation} limit {fmt_bytes(limit)} (NPU flash "
        f"{fmt_bytes(board_npu.flash_bytes)} − reserve {fmt_bytes(reserve)}) {_where(v)}",
        fix=None if passed else "shrink the largest layers (fewer filters or units)",
        extra=_vela_facts(v, board_npu) | {"compiled_model_bytes": v.compiled_model_bytes,
                                           "vela_flash_bytes": v.flash_bytes},
    )


def judge_npu_latency(v: VelaResult, board_npu: Any, limit: float | None) -> Verdict:
    if v.precompiled:
        raise NotEvaluable("the model was compiled by Vela before this run and Vela's cycle estimate is not stored "
                           "in it; no NPU emulator runs here",
                           "judge the model as it was before Vela compiled it to get Vela's estimate")
    seconds = v.cycles_total / board_npu.clock_hz
    ms = seconds * 1e3
    layers = [{"original_op": x.original_op, "npu_op": x.npu_op, "cycles": x.cycles, "macs": x.macs,
               "name": x.name, "share": (x.cycles / v.cycles_total) if v.cycles_total else 0.0} for x in v.layers]
    extra = _vela_facts(v, board_npu) | {
        "npu_latency_seconds": seconds, "cycles_total": v.cycles_total, "macs": v.macs,
        "vela_inference_seconds": v.inference_seconds, "vela_clock_hz": v.vela_clock_hz,
        "method": "Vela's estimate: cycles_total of its summary CSV at the board's NPU clock (Vela ran with its "
                  "system configuration's memory timings and core_clock set to that clock)",
        "layers": layers,
    }
    head = (f"Vela's estimate {ms:.4f} ms per inference on the NPU ({v.cycles_total:,} cycles at "
            f"{board_npu.clock_hz / 1e6:g} MHz; {v.macs:,} MACs); {NPU_LIMITS}")
    if limit is None:
        return Verdict("npu_latency", True, seconds, "information", "s",
                       f"npu_latency: {head} (information; no max_latency set) {_where(v)}", extra=extra)
    passed = seconds <= limit
    relation = "<=" if passed else ">"
    return Verdict(
        "npu_latency", passed, seconds, limit, "s",
        f"npu_latency: {ms:.4f} ms {relation} limit {limit * 1e3:g} ms: {head} {_where(v)}",
        fix=None if passed else "shrink the slowest NPU layers (see report.json's npu_latency layers), or pick "
        "a larger accelerator configuration",
        extra=extra,
    )


# No metric: the NPU figures are not (yet) baseline metrics, so report.json's metrics stay those of the
# CPU checks on every board.
class _NpuCheck(DeclaredCheck):
    def applies(self, constraints: Constraints) -> bool:
        return True


class NpuOpsCheck(_NpuCheck):
    info = CheckInfo(name="npu_ops", key="ops", unit="CPU fallbacks", npu=True)

    def applies(self, constraints: Constraints) -> bool:
        return constraints.ops == "tflm"

    def evaluate(self, m: Target) -> Verdict:
        npu = m.board.npu
        assert npu is not None
        v = m.vela
        return judge_npu_ops(v, npu, None if v.precompiled else placement(m.model_info, v))


class NpuSramCheck(_NpuCheck):
    info = CheckInfo(name="npu_sram", key="arena", unit="B", npu=True)

    def evaluate(self, m: Target) -> Verdict:
        npu = m.board.npu
        assert npu is not None
        reserve = m.constraints.ram_reserve.bytes if m.constraints.ram_reserve is not None else m.board.ram_reserve
        return judge_npu_sram(m.vela, npu, max(0, npu.sram_bytes - reserve), reserve)


class NpuFlashCheck(_NpuCheck):
    info = CheckInfo(name="npu_flash", key="flash", unit="B", npu=True)

    def evaluate(self, m: Target) -> Verdict:
        npu = m.board.npu
        assert npu is not None
        reserve = m.board.flash_reserve
        return judge_npu_flash(m.vela, npu, max(0, npu.flash_bytes - reserve), reserve)


class NpuLatencyCheck(_NpuCheck):
    info = CheckInfo(name="npu_latency", key="max_latency", unit="s", npu=True)

    def evaluate(self, m: Target) -> Verdict:
        npu = m.board.npu
        assert npu is not None
        return judge_npu_latency(m.vela, npu, m.constraints.max_latency)


__all__ = ["NPU_LIMITS", "NpuFlashCheck", "NpuLatencyCheck", "NpuOpsCheck", "NpuSramCheck", "judge_npu_flash",
           "judge_npu_latency", "judge_npu_ops", "judge_npu_sram"]
