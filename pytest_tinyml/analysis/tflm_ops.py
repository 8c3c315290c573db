"""Which operators TensorFlow Lite for Microcontrollers ships, as data.

Compiled by reading tflite-micro's op resolver (``micro_mutable_op_resolver.h``: one ``Add<Op>()`` per
kernel) and the resolver of the PyPI ``tflite-micro`` interpreter (``python_ops_resolver.cc``), at
tflite-micro commit 90b983c2b (2025). The names are TFLite schema operator names; custom ops are listed
by the ``custom_code`` string the resolver matches.

This table only *explains*: TFLM checks tensor types in each kernel's Prepare, so a listed op can still
be rejected (float16, hybrid int8-weights/float-activations, int4 in some kernels). The host runtime's
allocation verdict is authoritative.
"""

from __future__ import annotations

#: Builtin operators TFLM has a kernel for (the firmware must still add each one to its op resolver,
#: e.g. ``MicroMutableOpResolver::AddConv2D()``).
TFLM_BUILTIN_OPS: frozenset[str] = frozenset(
    """
    ABS ADD ADD_N ARG_MAX ARG_MIN ASSIGN_VARIABLE AVERAGE_POOL_2D BATCH_MATMUL BATCH_TO_SPACE_ND
    BROADCAST_ARGS BROADCAST_TO CALL_ONCE CAST CEIL CONCATENATION CONV_2D COS CUMSUM DEPTH_TO_SPACE
    DEPTHWISE_CONV_2D DEQUANTIZE DIV DYNAMIC_UPDATE_SLICE ELU EMBEDDING_LOOKUP EQUAL EXP EXPAND_DIMS
    FILL FLOOR FLOOR_DIV FLOOR_MOD FULLY_CONNECTED GATHER GATHER_ND GREATER GREATER_EQUAL HARD_SWISH
    IF L2_NORMALIZATION L2_POOL_2D LEAKY_RELU LESS LESS_EQUAL LOG LOGICAL_AND LOGICAL_NOT LOGICAL_OR
    LOGISTIC LOG_SOFTMAX MAXIMUM MAX_POOL_2D MEAN MINIMUM MIRROR_PAD MUL NEG NOT_EQUAL PACK PAD PADV2
    PRELU QUANTIZE READ_VARIABLE REDUCE_ALL REDUCE_MAX REDUCE_MIN RELU RELU6 RESHAPE RESIZE_BILINEAR
    RESIZE_NEAREST_NEIGHBOR REVERSE_V2 ROUND RSQRT SELECT_V2 SHAPE SIN SLICE SOFTMAX SPACE_TO_BATCH_ND
    SPACE_TO_DEPTH SPLIT SPLIT_V SQRT SQUARE SQUARED_DIFFERENCE SQUEEZE STRIDED_SLICE SUB SUM SVDF TANH
    TRANSPOSE TRANSPOSE_CONV UNIDIRECTIONAL_SEQUENCE_LSTM UNPACK VAR_HANDLE WHILE ZEROS_LIKE
    """.split()
)

#: Custom ops of TFLM's signal library (audio front ends). The host interpreter registers them; a
#: firmware build must add each with ``MicroMutableOpResolver::Add<Name>()``.
TFLM_SIGNAL_OPS: frozenset[str] = frozenset(
    """
    SignalDelay SignalEnergy SignalFftAutoScale SignalFilterBank SignalFilterBankLog
    SignalFilterBankSpectralSubtraction SignalFilterBankSquareRoot SignalFramer SignalIrfft
    SignalOverlapAdd SignalPCAN SignalRfft SignalStacker SignalWindow
    """.split()
)

#: Other custom ops TFLM ships a kernel for, with the resolver method that registers them.
TFLM_OTHER_CUSTOM_OPS: dict[str, str] = {
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess()",
    "CIRCULAR_BUFFER": "AddCircularBuffer()",
    "TFLM_DECODE": "AddDecode()",
}

#: Custom ops that need vendor hardware/software outside TFLM's reference build.
VENDOR_CUSTOM_OPS: dict[str, str] = {
    "ethos-u": "Arm Ethos-U NPU command stream (needs the Ethos-U driver and an Ethos-U build of TFLM)",
}

#: Well-known ops TFLite has and TFLM does not, with a replacement hint.
REPLACEMENT_HINTS: dict[str, str] = {
    "GELU": "use RELU or HARD_SWISH, or an int8 LOGISTIC/TANH approximation",
    "LOCAL_RESPONSE_NORMALIZATION": "remove LRN or replace it with batch normalization folded into the conv",
    "RANGE": "precompute the range as a constant tensor",
    "TOPK_V2": "take ARG_MAX on device, or do the top-k in application code",
    "NON_MAX_SUPPRESSION_V4": "use the TFLite_Detection_PostProcess custom op TFLM ships",
    "NON_MAX_SUPPRESSION_V5": "use the TFLite_Detection_PostProcess custom op TFLM ships",
    "BIDIRECTIONAL_SEQUENCE_LSTM": "use two UNIDIRECTIONAL_SEQUENCE_LSTM layers",
    "LSTM": "convert with the fused UNIDIRECTIONAL_SEQUENCE_LSTM (keras LSTM with unroll=False)",
    "RNN": "use UNIDIRECTIONAL_SEQUENCE_LSTM or SVDF",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "use UNIDIRECTIONAL_SEQUENCE_LSTM or SVDF",
    "CONV_3D": "reshape to CONV_2D over stacked frames",
    "RESIZE_BICUBIC": "use RESIZE_BILINEAR",
    "SELECT": "use SELECT_V2",
    "POW": "use MUL for integer powers, or EXP/LOG",
    "ATAN2": "precompute or approximate in application code",
    "FlexOps": "remove SELECT_TF_OPS from the converter: TFLM cannot run TensorFlow (Flex) ops",
}

HOST_REGISTERED_CUSTOM_OPS: frozenset[str] = TFLM_SIGNAL_OPS | frozenset(TFLM_OTHER_CUSTOM_OPS)


def is_flex_op(name: str) -> bool:
    """TensorFlow ops embedded through SELECT_TF_OPS appear as custom ops named ``Flex<Op>``."""
    return name.startswith("Flex")
