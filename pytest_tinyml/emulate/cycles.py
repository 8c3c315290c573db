"""Cycles on the board from the executed instruction mix: Σ count × per-class cost, plus memory wait states.

The counts come from the QEMU plugin (:mod:`pytest_tinyml.emulate.insn_plugin`). Every cost below names the
document it comes from. None of them was fitted to a benchmark: where a manual gives a range, the value used
and why is stated; where Arm publishes no per-instruction timing for a core, that is said, and the figure
used is the one of the closest core that has a table, so the estimate is labelled accordingly.

Abbreviations in the Cortex-M3/M4 TRM tables: P = pipeline refill after a taken branch, 1 to 3 cycles
("depending on the alignment and width of the target instruction, and whether the processor manages to
speculate the address early"); N = registers transferred.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: P, the refill after a taken branch on Cortex-M3/M4: the TRMs give 1..3; the midpoint is used because
#: the alignment of branch targets is not recorded.
_P_M4 = 2.0


@dataclass(frozen=True)
class CoreTiming:
    core: str
    costs: Mapping[str, float]  # cycles per counted event of each plugin class
    source: str  # where the table comes from
    notes: Mapping[str, str] = field(default_factory=dict)  # per-class source or assumption
    exact: bool = True  # False: Arm publishes no per-instruction timing for this core


_M4_COSTS: dict[str, float] = {
    "alu": 1.0,  # TRM table 3-1: data processing, MOV, shifts, compares, extends 1
    "load": 2.0,  # LDR/LDRB/LDRH... 2
    "store": 2.0,  # STR 2 (the TRM notes a stalled STR normally takes two cycles thanks to the write buffer)
    "ldst_pipelined": -1.0,  # "neighboring load and store single instructions can pipeline": 1 instead of 2
    "load_dual": 3.0,  # LDRD 1 + N, N = 2
    "store_dual": 3.0,  # STRD 1 + N
    "ldm": 1.0,  # LDM/POP 1 + N: the 1 per instruction ...
    "ldm_regs": 1.0,  # ... plus N
    "stm": 1.0,  # STM/PUSH 1 + N
    "stm_regs": 1.0,
    "mul": 1.0,  # MUL, MLA, MLS 1
    "mul_long": 1.0,  # UMULL, SMULL, UMLAL, SMLAL 1
    "dsp_mac": 1.0,  # SMLAD, SMLABB, SMULBB, SMUAD, SMMLA... 1
    "dsp_simd": 1.0,  # SXTB16, PKHBT, SSAT, QADD, SADD16, SEL... 1
    "div": 7.0,  # SDIV/UDIV 2..12 ("depending on values"); midpoint
    "branch_taken": 1.0 + _P_M4,  # B, BL, BX, CBZ taken, POP {pc}: 1 + P
    "branch_not_taken": 1.0,  # conditional branch not taken 1
    "it": 1.0,  # IT 1 (the TRM allows folding it onto a preceding 16-bit instruction; not assumed)
    "fp": 1.0,  # FPU: VADD, VMUL, VMOV 1 (VDIV/VSQRT 14 are not separated; int8 inference uses FP rarely)
    "fp_ldst": 2.0,  # VLDR/VSTR 2
    "fp_ldm_regs": 1.0,  # VLDM/VSTM/VPUSH/VPOP 1 + N: N beyond the first register
    "mve": 1.0,  # no Helium on M4 (never counted)
}

_M3_COSTS = dict(_M4_COSTS)
_M3_COSTS.update(
    {
        "mul": 1.5,  # TRM DDI0337 table 18-1: MUL 1, MLA/MLS 2; the two are not separated, the mean is used
        "mul_long": 5.0,  # UMULL/SMULL 3..5, UMLAL/SMLAL 4..7 ("depending on values"); midpoints 4 and 5.5
        "dsp_mac": 1.0,  # no DSP extension on M3 (never counted)
        "dsp_simd": 1.0,  # SSAT/USAT 1 (the only ones M3 has)
        "fp": 1.0,  # no FPU (never counted)
    }
)

_M0P_COSTS: dict[str, float] = {
    "alu": 1.0,  # Cortex-M0+ TRM DDI0484C, table 3-1 "Cortex-M0+ instruction summary": data processing 1
    "load": 2.0,  # LDR 2
    "store": 2.0,  # STR 2
    "ldst_pipelined": 0.0,  # no load/store pipelining on the 2-stage pipeline
    "load_dual": 4.0,  # no LDRD on v6-M (never counted)
    "store_dual": 4.0,
    "ldm": 1.0,  # LDM/POP 1 + N
    "ldm_regs": 1.0,
    "stm": 1.0,  # STM/PUSH 1 + N
    "stm_regs": 1.0,
    "mul": 1.0,  # MULS 1 with the fast multiplier option (32 with the small one)
    "mul_long": 1.0,  # none on v6-M
    "dsp_mac": 1.0,
    "dsp_simd": 1.0,
    "div": 1.0,  # none on v6-M
    "branch_taken": 2.0,  # B taken 2 (BL 3, BX/BLX 2, POP {pc} 3 + N; 2 used for all taken branches)
    "branch_not_taken": 1.0,  # B<cond> not taken 1
    "it": 1.0,  # none on v6-M
    "fp": 1.0,
    "fp_ldst": 2.0,
    "fp_ldm_regs": 1.0,
    "mve": 1.0,
}

_M7_COSTS = dict(_M4_COSTS)
_M7_COSTS.update(
    {
        # Cortex-M7 TRM DDI0489 describes a 6-stage dual-issue pipeline with a branch predictor but gives no
        # per-instruction cycle table. One issue per instruction, single-cycle loads from TCM/cache and a
        # predicted branch costing one issue slot are used: an upper bound for dual-issue code.
        "load": 1.0,
        "store": 1.0,
        "ldst_pipelined": 0.0,
        "load_dual": 1.0,
        "store_dual": 1.0,
        "ldm": 0.0,
        "ldm_regs": 1.0,
        "stm": 0.0,
        "stm_regs": 1.0,
        "div": 7.0,
        "branch_taken": 1.0,
        "it": 0.0,
        "fp_ldst": 1.0,
    }
)

_M55_COSTS = dict(_M7_COSTS)
_M55_COSTS.update(
    {
        # Cortex-M55 TRM 101051 gives no per-instruction cycle table for scalar code. Scalar: one issue per
        # instruction (as for M7). Helium: a beat-wise vector unit that executes a 128-bit vector instruction
        # in 2 beats per cycle on the dual-beat configuration, i.e. 2 cycles each.
        "branch_taken": 2.0,
        "mve": 2.0,
    }
)

CORE_TIMINGS: dict[str, CoreTiming] = {
    "cortex-m0plus": CoreTiming(
        "cortex-m0plus", _M0P_COSTS, "Arm Cortex-M0+ TRM (DDI0484C), section 3.3, table 3-1 instruction summary"
    ),
    "cortex-m3": CoreTiming(
        "cortex-m3", _M3_COSTS, "Arm Cortex-M3 TRM (DDI0337), chapter 18, table 18-1 instruction timings"
    ),
    "cortex-m4": CoreTiming(
        "cortex-m4", _M4_COSTS, "Arm Cortex-M4 TRM (DDI0439B), section 3.3.1, table 3-1 instruction set summary"
    ),
    "cortex-m33": CoreTiming(
        "cortex-m33",
        _M4_COSTS,
        "Arm publishes no per-instruction timing for Cortex-M33 (TRM 100230); the Cortex-M4 TRM table 3-1 is used "
        "for its equally 3-stage in-order pipeline; M33's limited dual issue of 16-bit pairs is not modelled",
        exact=False,
    ),
    "cortex-m7": CoreTiming(
        "cortex-m7",
        _M7_COSTS,
        "Arm publishes no per-instruction timing for Cortex-M7 (TRM DDI0489); single issue with 1-cycle loads "
        "assumed (an upper bound: dual issue is not modelled)",
        exact=False,
    ),
    "cortex-m55": CoreTiming(
        "cortex-m55",
        _M55_COSTS,
        "Arm publishes no per-instruction timing for Cortex-M55 (TRM 101051); scalar single issue, Helium 2 cycles "
        "per vector instruction (dual-beat) assumed",
        exact=False,
    ),
}


@dataclass(frozen=True)
class MemoryTiming:
    """Wait states the board adds to the core's zero-wait-state timing."""

    flash_wait_states: int = 0  # added to each flash read that misses the read buffer/cache
    ram_wait_states: int = 0  # added to each RAM data read
    cache_line_bytes: int = 16  # the flash read buffer/cache the plugin models (bytes per line)
    cache_lines: int = 1
    cache_ways: int = 0  # 0: fully associative
    source: str = "zero wait states (no board memory timing given)"

    @property
    def plugin_cache(self) -> tuple[int, int, int]:
        return (self.cache_line_bytes, self.cache_lines, self.cache_ways)


ZERO_WAIT = MemoryTiming()


@dataclass
class CycleEstimate:
    cycles: float
    instructions: float
    core_cycles: float  # Σ count × core cost
    flash_wait_cycles: float
    ram_wait_cycles: float
    by_class: dict[str, float]  # cycles per class (core costs only)
    core: str
    exact_core_table: bool
    method: str

    def seconds(self, clock_hz: int) -> float:
        return self.cycles / float(clock_hz)

    def to_dict(self) -> dict[str, Any]:
        return {
            "cycles": self.cycles,
            "instructions": self.instructions,
            "core_cycles": self.core_cycles,
            "flash_wait_cycles": self.flash_wait_cycles,
            "ram_wait_cycles": self.ram_wait_cycles,
            "by_class": self.by_class,
            "core": self.core,
            "exact_core_table": self.exact_core_table,
            "method": self.method,
        }


def _ram_reads(counts: Mapping[str, float]) -> float:
    """Data reads that go to RAM: every load (LDRD two, LDM per register) minus the reads from flash."""
    reads = (
        counts.get("load", 0.0)
        + 2 * counts.get("load_dual", 0.0)
        + counts.get("ldm_regs", 0.0)
        + counts.get("fp_ldst", 0.0)
    )
    return max(0.0, reads - counts.get("flash_reads", 0.0))


def estimate_cycles(counts: Mapping[str, float], core: str, memory: MemoryTiming = ZERO_WAIT) -> CycleEstimate:
    """Cycles for one counts row (a whole inference or one operator)."""
    from pytest_tinyml.emulate.insn_plugin import instructions

    if core not in CORE_TIMINGS:
        raise ValueError(f"no timing table for core {core!r}; known: {', '.join(sorted(CORE_TIMINGS))}")
    timing = CORE_TIMINGS[core]
    by_class = {k: counts.get(k, 0.0) * cost for k, cost in timing.costs.items() if counts.get(k, 0.0)}
    core_cycles = sum(by_class.values())
    flash = counts.get("flash_misses", 0.0) * memory.flash_wait_states
    ram = _ram_reads(counts) * memory.ram_wait_states
    method = (
        f"executed instruction classes (QEMU plugin) x {timing.source}; memory: {memory.source}"
    )
    return CycleEstimate(
        cycles=core_cycles + flash + ram,
        instructions=instructions(dict(counts)),
        core_cycles=core_cycles,
        flash_wait_cycles=flash,
        ram_wait_cycles=ram,
        by_class=by_class,
        core=core,
        exact_core_table=timing.exact,
        method=method,
    )


def memory_timing(board: Any) -> MemoryTiming:
    """The board's memory timing from its ``boards.yaml`` fields (zero wait states when it has none)."""
    ws = getattr(board, "flash_wait_states", None)
    if ws is None:
        return MemoryTiming(source=f"board {getattr(board, 'name', '?')} gives no flash wait states: zero assumed")
    return MemoryTiming(
        flash_wait_states=int(ws),
        ram_wait_states=int(getattr(board, "ram_wait_states", 0) or 0),
        cache_line_bytes=int(getattr(board, "flash_cache_line", 0) or 16),
        cache_lines=int(getattr(board, "flash_cache_lines", 0) or 1),
        cache_ways=int(getattr(board, "flash_cache_ways", 0) or 0),
        source=str(getattr(board, "timing_source", "") or f"board {board.name}"),
    )


def operator_profile(info: Any, counts: Any, core: str, memory: MemoryTiming, clock_hz: int) -> dict[str, Any]:
    """Per-operator instructions and estimated cycles, with each operator's MACs, parameters and bytes.

    ``info`` is the model's :class:`~pytest_tinyml.analysis.modelinfo.ModelInfo`; ``counts`` the plugin's
    :class:`~pytest_tinyml.emulate.insn_plugin.ClassCounts`. Operators are matched by execution order with
    subgraph 0's operators (the order both firmware runtimes invoke them in).
    """
    total = estimate_cycles(counts.total, core, memory)
    ops = list(info.subgraphs[0].ops) if getattr(info, "subgraphs", None) else []
    tensors = info.subgraphs[0].tensors if ops else ()
    rows: list[dict[str, Any]] = []
    for k, row in enumerate(counts.ops):
        est = estimate_cycles(row, core, memory)
        entry: dict[str, Any] = {
            "index": k,
            "op": f"op {k}",
            "instructions": est.instructions,
            "cycles": est.cycles,
            "seconds": est.cycles / clock_hz if clock_hz else None,
            "share": est.cycles / total.cycles if total.cycles else 0.0,
            "classes": {name: value for name, value in row.items() if value},
        }
        if k < len(ops):
            op = ops[k]
            consts = [tensors[i] for i in op.inputs if 0 <= i < len(tensors) and tensors[i].is_constant]
            acts = [tensors[i] for i in (*op.inputs, *op.outputs) if 0 <= i < len(tensors) and not tensors[i].is_constant]
            entry.update(
                op=op.name,
                macs=op.macs,
                parameters=sum(t.num_elements for t in consts),
                weight_bytes=op.weight_bytes,
                activation_bytes=sum(t.nbytes for t in acts),
                cycles_per_mac=est.cycles / op.macs if op.macs else None,
            )
        rows.append(entry)
    ops_cycles = sum(r["cycles"] for r in rows)
    overhead = estimate_cycles(counts.overhead, core, memory)
    notes = []
    if ops and len(rows) != len(ops):
        notes.append(
            f"the firmware reported {len(rows)} operator invocations for {len(ops)} operators in subgraph 0 "
            "(subgraph calls or a runtime that splits ops): names are matched by position"
        )
    return {
        "operators": rows,
        "total_cycles": total.cycles,
        "total_instructions": total.instructions,
        "operators_cycles": ops_cycles,
        "overhead_cycles": overhead.cycles,
        "coverage": ops_cycles / total.cycles if total.cycles else 0.0,
        "notes": notes,
    }
