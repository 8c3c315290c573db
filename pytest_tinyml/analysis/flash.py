"""Flash estimate: the model's bytes plus the TFLM code the firmware links to run it.

Method. Every TFLM source file was compiled for Cortex-M4 with ``arm-none-eabi-g++`` 12.2 at ``-Os``
(``-mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16 -ffunction-sections -fno-rtti -fno-exceptions``,
``TF_LITE_STATIC_MEMORY``, ``TF_LITE_STRIP_ERROR_STRINGS``, reference kernels, tflite-micro commit
90b983c2b) and ``text + data`` of each object file was recorded with ``arm-none-eabi-size``; the numbers
are kept below as data.

- Runtime core (:data:`CORE_OBJECT_BYTES`): interpreter, graph, contexts, allocator, allocation info,
  arena allocators, greedy memory planner, op resolver, flatbuffer-to-params conversions, quantization
  and kernel utilities: 21,706 bytes. (TFLM's README quotes "about 16 KB on a Cortex-M3" for the core;
  the figure here includes the op-parameter parsers and quantization helpers.)
- Each op adds the objects of its reference kernel (:data:`OP_KERNEL_OBJECTS`, e.g. ``CONV_2D`` =
  ``conv`` + ``conv_common`` = 3,692 bytes); objects shared by several ops (``pooling_common`` for
  ``MAX_POOL_2D`` and ``AVERAGE_POOL_2D``) count once.

Limits: object sizes are an upper bound for what the linker keeps (``--gc-sections`` drops functions no
registered op reaches, typically the type variants the model does not use); the C/C++ runtime
(``memcpy``, soft-float helpers, ``libm``), startup code and the application are not included;
CMSIS-NN optimized kernels differ in size. Ops missing from the table count
:data:`DEFAULT_KERNEL_BYTES`, the median of the measured kernels.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from pytest_tinyml.analysis.modelinfo import ModelInfo

#: Object code (text + data, bytes) of TFLM's runtime core, per source file, Cortex-M4 -Os.
CORE_OBJECT_BYTES: dict[str, int] = {
    "micro_interpreter": 1528,
    "micro_interpreter_graph": 1350,
    "micro_interpreter_context": 286,
    "micro_context": 374,
    "micro_allocator": 2860,
    "micro_allocation_info": 1664,
    "memory_helpers": 460,
    "micro_op_resolver": 80,
    "micro_utils": 364,
    "micro_resource_variable": 376,
    "flatbuffer_utils": 331,
    "memory_planner/greedy_memory_planner": 918,
    "arena_allocator/single_arena_buffer_allocator": 622,
    "arena_allocator/persistent_arena_buffer_allocator": 82,
    "arena_allocator/non_persistent_arena_buffer_allocator": 398,
    "core/api/flatbuffer_conversions": 5962,
    "tflite_bridge/flatbuffer_conversions_bridge": 56,
    "tflite_bridge/micro_error_reporter": 58,
    "kernels/internal/quantization_util": 1532,
    "lite/kernels/kernel_util": 1379,
    "kernels/internal/tensor_ctypes": 54,
    "debug_log": 2,
    "kernels/kernel_util": 806,
    "kernels/micro_tensor_utils": 164,
}

#: Object code (text + data, bytes) of each reference-kernel source file, Cortex-M4 -Os.
KERNEL_OBJECT_BYTES: dict[str, int] = {
    "activations": 618,
    "activations_common": 666,
    "add": 4422,
    "add_common": 540,
    "add_n": 990,
    "arg_min_max": 952,
    "assign_variable": 272,
    "batch_matmul": 3026,
    "batch_matmul_common": 1244,
    "batch_to_space_nd": 902,
    "broadcast_args": 524,
    "broadcast_to": 1064,
    "call_once": 140,
    "cast": 1298,
    "ceil": 276,
    "circular_buffer": 268,
    "circular_buffer_common": 204,
    "comparisons": 22172,
    "concatenation": 2108,
    "conv": 2518,
    "conv_common": 1174,
    "cumsum": 1080,
    "decode": 552,
    "decode_state": 148,
    "decode_state_huffman": 690,
    "decode_state_lut": 4124,
    "decode_state_prune": 774,
    "depth_to_space": 868,
    "depthwise_conv": 1900,
    "depthwise_conv_common": 1192,
    "dequantize": 358,
    "dequantize_common": 126,
    "detection_postprocess": 5440,
    "div": 4244,
    "dynamic_update_slice": 1852,
    "elementwise": 2428,
    "elu": 458,
    "embedding_lookup": 696,
    "exp": 290,
    "expand_dims": 398,
    "fill": 490,
    "floor": 134,
    "floor_div": 1174,
    "floor_mod": 1146,
    "fully_connected": 2636,
    "fully_connected_common": 468,
    "gather": 1040,
    "gather_nd": 756,
    "hard_swish": 546,
    "hard_swish_common": 260,
    "if": 352,
    "kernel_util": 806,
    "l2_pool_2d": 1192,
    "l2norm": 1058,
    "leaky_relu": 540,
    "leaky_relu_common": 224,
    "log_softmax": 2232,
    "logical": 80,
    "logical_common": 898,
    "logistic": 1958,
    "logistic_common": 334,
    "lstm_eval": 2590,
    "lstm_eval_common": 1358,
    "maximum_minimum": 4728,
    "micro_tensor_utils": 164,
    "mirror_pad": 658,
    "mul": 180,
    "mul_common": 4446,
    "neg": 144,
    "pack": 862,
    "pad": 1776,
    "pad_common": 512,
    "pooling": 2092,
    "pooling_common": 1662,
    "prelu": 1818,
    "prelu_common": 792,
    "quantize": 46,
    "quantize_common": 1466,
    "read_variable": 118,
    "reduce": 270,
    "reduce_common": 4420,
    "reshape": 102,
    "reshape_common": 240,
    "resize_bilinear": 1844,
    "resize_nearest_neighbor": 1196,
    "reverse": 2004,
    "round": 336,
    "select": 4162,
    "shape": 128,
    "slice": 1922,
    "softmax": 2420,
    "softmax_common": 1024,
    "space_to_batch_nd": 922,
    "space_to_depth": 870,
    "split": 894,
    "split_v": 998,
    "squared_difference": 4144,
    "squeeze": 366,
    "strided_slice": 3286,
    "strided_slice_common": 684,
    "sub": 4622,
    "sub_common": 430,
    "svdf": 298,
    "svdf_common": 2602,
    "tanh": 2162,
    "transpose": 844,
    "transpose_common": 176,
    "transpose_conv": 3304,
    "unidirectional_sequence_lstm": 3038,
    "unpack": 710,
    "var_handle": 122,
    "while": 342,
    "zeros_like": 248,
}

#: The kernel objects each op links (TFLite schema names; custom ops by their custom code).
OP_KERNEL_OBJECTS: dict[str, tuple[str, ...]] = {
    "ABS": ("elementwise",),
    "ADD": ("add", "add_common"),
    "ADD_N": ("add_n",),
    "ARG_MAX": ("arg_min_max",),
    "ARG_MIN": ("arg_min_max",),
    "ASSIGN_VARIABLE": ("assign_variable",),
    "AVERAGE_POOL_2D": ("pooling", "pooling_common"),
    "BATCH_MATMUL": ("batch_matmul", "batch_matmul_common"),
    "BATCH_TO_SPACE_ND": ("batch_to_space_nd",),
    "BROADCAST_ARGS": ("broadcast_args",),
    "BROADCAST_TO": ("broadcast_to",),
    "CALL_ONCE": ("call_once",),
    "CAST": ("cast",),
    "CEIL": ("ceil",),
    "CIRCULAR_BUFFER": ("circular_buffer", "circular_buffer_common"),
    "CONCATENATION": ("concatenation",),
    "CONV_2D": ("conv", "conv_common"),
    "COS": ("elementwise",),
    "CUMSUM": ("cumsum",),
    "DEPTH_TO_SPACE": ("depth_to_space",),
    "DEPTHWISE_CONV_2D": ("depthwise_conv", "depthwise_conv_common"),
    "DEQUANTIZE": ("dequantize", "dequantize_common"),
    "DIV": ("div",),
    "DYNAMIC_UPDATE_SLICE": ("dynamic_update_slice",),
    "ELU": ("elu",),
    "EMBEDDING_LOOKUP": ("embedding_lookup",),
    "EQUAL": ("comparisons",),
    "EXP": ("exp",),
    "EXPAND_DIMS": ("expand_dims",),
    "FILL": ("fill",),
    "FLOOR": ("floor",),
    "FLOOR_DIV": ("floor_div",),
    "FLOOR_MOD": ("floor_mod",),
    "FULLY_CONNECTED": ("fully_connected", "fully_connected_common"),
    "GATHER": ("gather",),
    "GATHER_ND": ("gather_nd",),
    "GREATER": ("comparisons",),
    "GREATER_EQUAL": ("comparisons",),
    "HARD_SWISH": ("hard_swish", "hard_swish_common"),
    "IF": ("if",),
    "L2_NORMALIZATION": ("l2norm",),
    "L2_POOL_2D": ("l2_pool_2d",),
    "LEAKY_RELU": ("leaky_relu", "leaky_relu_common"),
    "LESS": ("comparisons",),
    "LESS_EQUAL": ("comparisons",),
    "LOG": ("elementwise",),
    "LOG_SOFTMAX": ("log_softmax",),
    "LOGICAL_AND": ("logical", "logical_common"),
    "LOGICAL_NOT": ("elementwise",),
    "LOGICAL_OR": ("logical", "logical_common"),
    "LOGISTIC": ("logistic", "logistic_common"),
    "MAX_POOL_2D": ("pooling", "pooling_common"),
    "MAXIMUM": ("maximum_minimum",),
    "MEAN": ("reduce", "reduce_common"),
    "MINIMUM": ("maximum_minimum",),
    "MIRROR_PAD": ("mirror_pad",),
    "MUL": ("mul", "mul_common"),
    "NEG": ("neg",),
    "NOT_EQUAL": ("comparisons",),
    "PACK": ("pack",),
    "PAD": ("pad", "pad_common"),
    "PADV2": ("pad", "pad_common"),
    "PRELU": ("prelu", "prelu_common"),
    "QUANTIZE": ("quantize", "quantize_common"),
    "READ_VARIABLE": ("read_variable",),
    "REDUCE_ALL": ("reduce", "reduce_common"),
    "REDUCE_MAX": ("reduce", "reduce_common"),
    "REDUCE_MIN": ("reduce", "reduce_common"),
    "RELU": ("activations", "activations_common"),
    "RELU6": ("activations", "activations_common"),
    "RESHAPE": ("reshape", "reshape_common"),
    "RESIZE_BILINEAR": ("resize_bilinear",),
    "RESIZE_NEAREST_NEIGHBOR": ("resize_nearest_neighbor",),
    "REVERSE_V2": ("reverse",),
    "ROUND": ("round",),
    "RSQRT": ("elementwise",),
    "SELECT_V2": ("select",),
    "SHAPE": ("shape",),
    "SIN": ("elementwise",),
    "SLICE": ("slice",),
    "SOFTMAX": ("softmax", "softmax_common"),
    "SPACE_TO_BATCH_ND": ("space_to_batch_nd",),
    "SPACE_TO_DEPTH": ("space_to_depth",),
    "SPLIT": ("split",),
    "SPLIT_V": ("split_v",),
    "SQRT": ("elementwise",),
    "SQUARE": ("elementwise",),
    "SQUARED_DIFFERENCE": ("squared_difference",),
    "SQUEEZE": ("squeeze",),
    "STRIDED_SLICE": ("strided_slice", "strided_slice_common"),
    "SUB": ("sub", "sub_common"),
    "SUM": ("reduce", "reduce_common"),
    "SVDF": ("svdf", "svdf_common"),
    "TANH": ("tanh",),
    "TFLite_Detection_PostProcess": ("detection_postprocess",),
    "TRANSPOSE": ("transpose", "transpose_common"),
    "TRANSPOSE_CONV": ("transpose_conv",),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ("unidirectional_sequence_lstm", "lstm_eval", "lstm_eval_common"),
    "UNPACK": ("unpack",),
    "VAR_HANDLE": ("var_handle",),
    "WHILE": ("while",),
    "ZEROS_LIKE": ("zeros_like",),
}

#: Bytes counted for an op the table does not know (median measured kernel).
DEFAULT_KERNEL_BYTES: int = int(statistics.median(KERNEL_OBJECT_BYTES.values()))

CORE_BYTES: int = sum(CORE_OBJECT_BYTES.values())


@dataclass(frozen=True)
class FlashEstimate:
    model_bytes: int
    runtime_code_bytes: int  # core + kernels of the model's ops
    per_op: dict[str, int]  # op -> kernel bytes attributed to it (shared objects to the first op using them)
    method: str
    core_bytes: int = CORE_BYTES
    unknown_ops: tuple[str, ...] = field(default=())

    @property
    def total_bytes(self) -> int:
        return self.model_bytes + self.runtime_code_bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_bytes": self.model_bytes,
            "runtime_code_bytes": self.runtime_code_bytes,
            "core_bytes": self.core_bytes,
            "per_op": dict(self.per_op),
            "unknown_ops": list(self.unknown_ops),
            "total_bytes": self.total_bytes,
            "method": self.method,
        }


def estimate_flash(info: ModelInfo) -> FlashEstimate:
    """Flash the deployed model needs: ``len(model)`` plus TFLM core and the kernels of its ops."""
    linked: set[str] = set()
    per_op: dict[str, int] = {}
    unknown: list[str] = []
    for name in info.ops_by_name:
        objects = OP_KERNEL_OBJECTS.get(name)
        if objects is None:
            unknown.append(name)
            per_op[name] = DEFAULT_KERNEL_BYTES
            continue
        new = [o for o in objects if o not in linked]
        linked.update(new)
        per_op[name] = sum(KERNEL_OBJECT_BYTES.get(o, DEFAULT_KERNEL_BYTES) for o in new)
    kernels = sum(per_op.values())
    method = (
        f"model file {info.size_bytes} B + TFLM core {CORE_BYTES} B + {len(per_op)} reference kernels "
        f"{kernels} B (object code measured for Cortex-M4, arm-none-eabi-g++ -Os; upper bound of the "
        "linked size, C library and application not included)"
    )
    if unknown:
        method += f"; {len(unknown)} op(s) without a measured kernel counted {DEFAULT_KERNEL_BYTES} B each"
    return FlashEstimate(
        model_bytes=info.size_bytes,
        runtime_code_bytes=CORE_BYTES + kernels,
        per_op=per_op,
        method=method,
        unknown_ops=tuple(unknown),
    )
