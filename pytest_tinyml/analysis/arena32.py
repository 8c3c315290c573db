"""The tensor arena a 32-bit Cortex-M TFLM build needs, derived from the 64-bit host allocation
(:func:`arena_32bit`; the method is in its docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from pytest_tinyml.analysis.tflm_host import TflmAllocation, TflmError
from pytest_tinyml.kinds import KernelSet

if TYPE_CHECKING:
    from pytest_tinyml.analysis.model import ModelInfo

# sizeof() of TFLM's allocator structs and objects, measured by compiling tflite-micro's own headers
# (commit 90b983c2b, TF_LITE_STATIC_MEMORY) with g++ for x86-64 and with arm-none-eabi-g++ 12.2
# -mcpu=cortex-m4 (AAPCS, short enums).                                        (64-bit, 32-bit)
_SIZEOF = {
    "TfLiteEvalTensor": (24, 12),
    "TfLiteTensor": (64, 32),
    "NodeAndRegistration": (64, 32),
    "TfLiteAffineQuantization": (24, 12),
    "SubgraphAllocations": (16, 8),
    "MicroBuiltinDataAllocator": (16, 8),  # vtable pointer + allocator pointer
}
# Objects the allocator places at the top of the arena before the model. The host wrapper uses the
# recording variants (RecordingSingleArenaBufferAllocator 104 + GreedyMemoryPlanner 72 +
# RecordingMicroAllocator 248); a firmware MicroInterpreter(model, resolver, arena, size) creates
# SingleArenaBufferAllocator 36 + GreedyMemoryPlanner 44 + MicroAllocator 36 (32-bit).
_HOST_FIXED_OBJECTS = 104 + 72 + 248
_TARGET_FIXED_OBJECTS = 36 + 44 + 36
# Tail bytes outside the recorded categories that the host allocates and a firmware build does not, beyond
# the allocator objects, the builtin-data allocator and the subgraph records above: 32 B, measured as the
# constant part of (host tail - Cortex-M4 tail) on TFLM's hello_world, micro_speech and person_detect and
# seed 001's CNN (real TFLM 90b983c built for Cortex-M4 with a RecordingMicroInterpreter under QEMU).
_HOST_UNRECORDED = 32
# Kernel persistent data with pointers, per operator (TFLM 90b983c headers compiled for x86-64 and
# Cortex-M4, rounded to the 16-byte persistent-buffer alignment): OpDataConv 72 -> 56 B (CONV_2D,
# DEPTHWISE_CONV_2D), OpDataFullyConnected 64 -> 48 B, SoftmaxParams 80 -> 56 B: 16 B each once aligned.
# The kernels' two input/output pointer arrays: 32 B in all. Builtin options of FULLY_CONNECTED
# (TfLiteFullyConnectedParams 16 -> 5 B with short enums, plus the alignment of what follows): 27 B
# measured per operator.
_OPDATA_SAVING = {"CONV_2D": 16, "DEPTHWISE_CONV_2D": 16, "FULLY_CONNECTED": 16 + 27, "SOFTMAX": 16}
_POINTER_ARRAYS_SAVING = 32
# CMSIS-NN's FULLY_CONNECTED keeps 32 B more persistent data than the reference kernel (measured on
# hello_world: 3 ops, +96 B); other CMSIS-NN kernels changed arena_used_bytes() by at most 32 B in all on the
# models above.
_CMSIS_NN_EXTRA = {"FULLY_CONNECTED": 32}


@dataclass(frozen=True)
class Arena32:
    bytes: int  # estimated arena_used_bytes() of a 32-bit Cortex-M build
    host_bytes: int  # "Arena allocation total" printed by the 64-bit host runtime
    method: str
    required_bytes: int | None = None  # smallest tensor_arena that allocates, when the host minimum is known
    head_bytes: int = 0  # activation plan + scratch buffers (same on both targets)
    tail_bytes: int = 0  # persistent part, 32-bit estimate


def _align16(n: int) -> int:
    return (n + 15) // 16 * 16


def arena_32bit(info: ModelInfo, alloc: TflmAllocation, kernels: str = "reference") -> Arena32:
    """Arena a 32-bit Cortex-M TFLM build needs, derived from the 64-bit host allocation.

    Method. TFLM splits its arena into a *head* (the greedy memory plan of activation tensors plus
    kernel scratch buffers) and a *tail* (persistent data). The head holds tensor bytes only, and its
    plan is computed from tensor sizes and lifetimes, so it is the same on a 32-bit target as on the
    64-bit host (with the same reference kernels). The tail is rebuilt category by category from the
    host's ``print_allocations()`` record, replacing each pointer-bearing struct by its 32-bit size
    (sizes measured by compiling TFLM's headers for x86-64 and for Cortex-M4):

    - ``TfLiteEvalTensor`` 24 -> 12 bytes per tensor, ``NodeAndRegistration`` 64 -> 32 per operator,
      persistent ``TfLiteTensor`` (model inputs/outputs) 64 -> 32, ``TfLiteAffineQuantization``
      24 -> 12 (half of the recorded quantization allocations; the zero-point arrays are int32 on
      both);
    - the allocator objects the host wrapper puts in the arena (recording allocator, planner: 424
      bytes) become the firmware's plain ones (116 bytes), the builtin-data allocator 16 -> 8 and the
      per-subgraph allocation records 16 -> 8 each;
    - kernel persistent buffers (OpData, per-channel multipliers and shifts), builtin option structs
      and variable buffers are pointer-free or int32 arrays and are kept as they are.

    ``bytes`` estimates ``MicroInterpreter::arena_used_bytes()`` on the target. ``required_bytes``
    (only when :func:`allocate` ran with ``find_min_arena=True``) adds the temporary allocations made
    while kernels prepare (host minimum minus host total, halved because they are mostly
    ``TfLiteTensor`` structs) and 16 bytes for aligning the arena start.

    Accuracy. Against hand-derived 32-bit layouts this is exact for the struct categories; the
    remaining error comes from per-allocation alignment padding that differs between the targets
    (8-byte versus 4-byte alignment), at most a few bytes per persistent allocation. Reference points:
    TFLM's hello_world int8 model prints 1,504 bytes on the host and is estimated at 868 bytes here
    (its example reserves 3,000); for person detection see the package report.
    """
    if not alloc.ok or alloc.host_arena_bytes is None:
        raise TflmError(alloc.reason or "allocation failed", stage="allocate")
    d = alloc.details
    host_total = alloc.host_arena_bytes
    head = d.get("head", 0)
    tail = d.get("tail", host_total - head)

    def per_item(key: str, struct: str) -> int:
        count = d.get(f"{key}_count", 0)
        size64, size32 = _SIZEOF[struct]
        return min(d.get(f"{key}_used", 0), count * (size64 - size32))

    saving = per_item("eval_tensors", "TfLiteEvalTensor")
    saving += per_item("nodes", "NodeAndRegistration")
    saving += per_item("persistent_tensors", "TfLiteTensor")
    quant_structs = d.get("quantization_count", 0) // 2
    saving += quant_structs * (
        _SIZEOF["TfLiteAffineQuantization"][0] - _SIZEOF["TfLiteAffineQuantization"][1]
    )
    saving += _HOST_FIXED_OBJECTS - _TARGET_FIXED_OBJECTS + _HOST_UNRECORDED
    saving += _SIZEOF["MicroBuiltinDataAllocator"][0] - _SIZEOF["MicroBuiltinDataAllocator"][1]
    n_subgraphs = len(info.subgraphs)
    saving += n_subgraphs * (_SIZEOF["SubgraphAllocations"][0] - _SIZEOF["SubgraphAllocations"][1])
    op_names = [op.name for op in info.ops]
    op_saving = _POINTER_ARRAYS_SAVING + sum(_OPDATA_SAVING.get(name, 0) for name in op_names)
    if kernels == KernelSet.CMSIS_NN:
        op_saving -= sum(_CMSIS_NN_EXTRA.get(name, 0) for name in op_names)
    saving += op_saving
    tail32 = max(tail - saving, 0)
    total32 = head + tail32
    required = None
    host_min = d.get("host_min_arena_bytes")
    if host_min is not None:
        # Kernels' Prepare() temporaries (measured: hello_world needs 396 B above arena_used_bytes() on
        # Cortex-M4 where the host needs 432 B): taken at their host size, an upper bound.
        temp64 = max(host_min - host_total, 0)
        required = _align16(total32 + temp64) + 64  # 64 B: the estimate's error on the models above
    method = (
        f"host head {head} B kept (tensor plan, pointer-free); host tail {tail} B rebuilt with 32-bit "
        f"struct sizes: -{saving} B for {d.get('eval_tensors_count', 0)} TfLiteEvalTensor, "
        f"{d.get('nodes_count', 0)} NodeAndRegistration, {d.get('persistent_tensors_count', 0)} "
        f"TfLiteTensor, {quant_structs} TfLiteAffineQuantization, allocator objects, "
        f"{n_subgraphs} subgraph record(s), {op_saving} B of per-operator data ({kernels} kernels)"
    )
    return Arena32(
        bytes=total32,
        host_bytes=host_total,
        method=method,
        required_bytes=required,
        head_bytes=head,
        tail_bytes=tail32,
    )
