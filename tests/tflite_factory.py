"""Small, real ``.tflite`` models for the analysis tests, written as flatbuffers (no TensorFlow).

The models follow the TFLite schema field by field with the raw ``flatbuffers.Builder`` API, so tests can
also produce deliberately broken files (an out-of-range tensor index, a huge vector length). They are
real models: host TFLM allocates and runs the integer ones.

Shapes and MACs of :func:`int8_cnn` (batch 1):

- CONV_2D 3x3, 1->4 channels, VALID, 8x8 input -> 6x6x4 output: 6*6*4*3*3*1 = 1,296 MACs
- DEPTHWISE_CONV_2D 3x3, 4 channels, SAME -> 6x6x4: 6*6*4*3*3 = 1,296 MACs
- MAX_POOL_2D 2x2 stride 2 -> 3x3x4; RESHAPE -> 1x36
- FULLY_CONNECTED 36 -> 10: 10*36 = 360 MACs; SOFTMAX
- total 2,952 MACs
"""

from __future__ import annotations

from dataclasses import dataclass, field

import flatbuffers
import numpy as np

# Schema enum values (TFLite schema.fbs).
FLOAT32, FLOAT16, INT32, UINT8, INT64, INT8 = 0, 1, 2, 3, 4, 9
OP = {
    "ADD": 0,
    "AVERAGE_POOL_2D": 1,
    "CONV_2D": 3,
    "DEPTHWISE_CONV_2D": 4,
    "DEQUANTIZE": 6,
    "FULLY_CONNECTED": 9,
    "MAX_POOL_2D": 17,
    "RESHAPE": 22,
    "SOFTMAX": 25,
    "CUSTOM": 32,
    "QUANTIZE": 114,
}
OPTION_TYPES = {"Conv2DOptions": 1, "DepthwiseConv2DOptions": 2, "Pool2DOptions": 5,
                "FullyConnectedOptions": 8, "SoftmaxOptions": 9, "ReshapeOptions": 17}
_NP = {FLOAT32: np.float32, FLOAT16: np.float16, INT32: np.int32, UINT8: np.uint8, INT64: np.int64,
       INT8: np.int8}


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: int
    data: bytes | None = None
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0
    shape_signature: tuple[int, ...] | None = None
    buffer: int | None = None  # force a buffer index (to write broken files)


@dataclass
class Op:
    code: int | str  # builtin code, or the custom op name
    inputs: list[int]
    outputs: list[int]
    options_type: int = 0
    options: list[tuple[int, str, float]] = field(default_factory=list)  # (slot, 'b'|'i'|'?'|'f', value)
    version: int = 1


@dataclass
class Graph:
    tensors: list[Tensor] = field(default_factory=list)
    ops: list[Op] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    description: str = "pytest-tinyml test model"

    def add(self, tensor: Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def const(self, name: str, array: np.ndarray, dtype: int, **quant: object) -> int:
        data = np.ascontiguousarray(array.astype(_NP[dtype])).tobytes()
        return self.add(Tensor(name, tuple(array.shape), dtype, data, **quant))  # type: ignore[arg-type]

    def build(self) -> bytes:
        return _serialize(self)


def _int_vector(b: flatbuffers.Builder, values: list[int] | tuple[int, ...], dtype: type = np.int32) -> int:
    return b.CreateNumpyVector(np.asarray(values, dtype=dtype))


def _serialize(g: Graph) -> bytes:
    b = flatbuffers.Builder(1024)
    # Buffers: 0 is the empty sentinel; one per constant tensor.
    buffer_data: list[bytes | None] = [None]
    tensor_buffer = []
    for t in g.tensors:
        if t.data is not None:
            buffer_data.append(t.data)
            tensor_buffer.append(len(buffer_data) - 1 if t.buffer is None else t.buffer)
        else:
            tensor_buffer.append(0 if t.buffer is None else t.buffer)
    buffer_offsets = []
    for data in buffer_data:
        vec = None
        if data:
            b.Prep(16, len(data))
            vec = b.CreateByteVector(data)
        b.StartObject(3)
        if vec is not None:
            b.PrependUOffsetTRelativeSlot(0, vec, 0)
        buffer_offsets.append(b.EndObject())

    codes: list[int | str] = []
    for op in g.ops:
        if op.code not in codes:
            codes.append(op.code)
    code_offsets = []
    for code in codes:
        name = b.CreateString(code) if isinstance(code, str) else None
        builtin = OP["CUSTOM"] if isinstance(code, str) else code
        b.StartObject(4)
        b.PrependInt8Slot(0, min(builtin, 127), 0)
        if name is not None:
            b.PrependUOffsetTRelativeSlot(1, name, 0)
        b.PrependInt32Slot(2, 1, 1)
        b.PrependInt32Slot(3, builtin, 0)
        code_offsets.append(b.EndObject())

    tensor_offsets = []
    for t, buf in zip(g.tensors, tensor_buffer, strict=True):
        name = b.CreateString(t.name)
        shape = _int_vector(b, t.shape)
        sig = _int_vector(b, t.shape_signature) if t.shape_signature is not None else None
        quant = None
        if t.scale:
            scale = b.CreateNumpyVector(np.asarray(t.scale, dtype=np.float32))
            zp = _int_vector(b, t.zero_point or (0,) * len(t.scale), np.int64)
            b.StartObject(7)
            b.PrependUOffsetTRelativeSlot(2, scale, 0)
            b.PrependUOffsetTRelativeSlot(3, zp, 0)
            b.PrependInt32Slot(6, t.quantized_dimension, 0)
            quant = b.EndObject()
        b.StartObject(8)
        b.PrependUOffsetTRelativeSlot(0, shape, 0)
        b.PrependInt8Slot(1, t.dtype, 0)
        b.PrependUint32Slot(2, buf, 0)
        b.PrependUOffsetTRelativeSlot(3, name, 0)
        if quant is not None:
            b.PrependUOffsetTRelativeSlot(4, quant, 0)
        if sig is not None:
            b.PrependUOffsetTRelativeSlot(7, sig, 0)
        tensor_offsets.append(b.EndObject())

    op_offsets = []
    for op in g.ops:
        ins = _int_vector(b, op.inputs)
        outs = _int_vector(b, op.outputs)
        opts = None
        if op.options_type:
            b.StartObject(max((s for s, _, _ in op.options), default=0) + 1)
            for slot, fmt, value in op.options:
                prepend = {"b": b.PrependInt8Slot, "i": b.PrependInt32Slot, "?": b.PrependBoolSlot,
                           "f": b.PrependFloat32Slot}[fmt]
                prepend(slot, value if fmt == "f" else int(value), 0)
            opts = b.EndObject()
        b.StartObject(7)
        b.PrependUint32Slot(0, codes.index(op.code), 0)
        b.PrependUOffsetTRelativeSlot(1, ins, 0)
        b.PrependUOffsetTRelativeSlot(2, outs, 0)
        if opts is not None:
            b.PrependUint8Slot(3, op.options_type, 0)
            b.PrependUOffsetTRelativeSlot(4, opts, 0)
        op_offsets.append(b.EndObject())

    def table_vector(offsets: list[int]) -> int:
        b.StartVector(4, len(offsets), 4)
        for off in reversed(offsets):
            b.PrependUOffsetTRelative(off)
        return b.EndVector()

    tensors_vec = table_vector(tensor_offsets)
    ops_vec = table_vector(op_offsets)
    sg_inputs = _int_vector(b, g.inputs)
    sg_outputs = _int_vector(b, g.outputs)
    sg_name = b.CreateString("main")
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(0, tensors_vec, 0)
    b.PrependUOffsetTRelativeSlot(1, sg_inputs, 0)
    b.PrependUOffsetTRelativeSlot(2, sg_outputs, 0)
    b.PrependUOffsetTRelativeSlot(3, ops_vec, 0)
    b.PrependUOffsetTRelativeSlot(4, sg_name, 0)
    subgraph = b.EndObject()

    codes_vec = table_vector(code_offsets)
    subgraphs_vec = table_vector([subgraph])
    buffers_vec = table_vector(buffer_offsets)
    desc = b.CreateString(g.description)
    b.StartObject(8)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(1, codes_vec, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs_vec, 0)
    b.PrependUOffsetTRelativeSlot(3, desc, 0)
    b.PrependUOffsetTRelativeSlot(4, buffers_vec, 0)
    model = b.EndObject()
    b.Finish(model, file_identifier=b"TFL3")
    return bytes(b.Output())


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------

RELU, NONE = 1, 0
SAME, VALID = 0, 1


def _conv_options(stride: int, padding: int, act: int) -> list[tuple[int, str, float]]:
    return [(0, "b", padding), (1, "i", stride), (2, "i", stride), (3, "b", act), (4, "i", 1), (5, "i", 1)]


def int8_cnn(seed: int = 0, *, height: int = 8, width: int = 8, filters: int = 4, classes: int = 10,
             fc_units: int | None = None, conv_stride: int = 1, float_output: bool = False) -> bytes:
    """Int8 CONV_2D -> DEPTHWISE_CONV_2D -> MAX_POOL_2D -> RESHAPE -> [FC ->] FC -> SOFTMAX.

    ``conv_stride``: the CONV_2D's stride. ``float_output``: a DEQUANTIZE to float32 after the SOFTMAX (TFLM
    runs it; Arm's Vela keeps it on the CPU, which makes a model with one NPU-to-CPU fallback)."""
    rng = np.random.default_rng(seed)
    g = Graph()
    s_in, s_act = 1 / 255, 0.05
    x = g.add(Tensor("input", (1, height, width, 1), INT8, scale=(s_in,), zero_point=(-128,),
                     shape_signature=(-1, height, width, 1)))
    w_scale = tuple(float(v) for v in rng.uniform(0.005, 0.02, filters))
    w1 = g.const("conv/filter", rng.integers(-127, 128, (filters, 3, 3, 1)), INT8, scale=w_scale,
                 zero_point=(0,) * filters, quantized_dimension=0)
    b1 = g.const("conv/bias", rng.integers(-100, 100, (filters,)), INT32,
                 scale=tuple(s_in * s for s in w_scale), zero_point=(0,) * filters)
    oh, ow = (height - 3) // conv_stride + 1, (width - 3) // conv_stride + 1
    c1 = g.add(Tensor("conv/out", (1, oh, ow, filters), INT8, scale=(s_act,), zero_point=(-128,)))
    g.ops.append(Op(OP["CONV_2D"], [x, w1, b1], [c1], OPTION_TYPES["Conv2DOptions"],
                    _conv_options(conv_stride, VALID, RELU)))
    w2 = g.const("dw/filter", rng.integers(-127, 128, (1, 3, 3, filters)), INT8, scale=w_scale,
                 zero_point=(0,) * filters, quantized_dimension=3)
    b2 = g.const("dw/bias", rng.integers(-100, 100, (filters,)), INT32,
                 scale=tuple(s_act * s for s in w_scale), zero_point=(0,) * filters)
    c2 = g.add(Tensor("dw/out", (1, oh, ow, filters), INT8, scale=(s_act,), zero_point=(-128,)))
    g.ops.append(Op(OP["DEPTHWISE_CONV_2D"], [c1, w2, b2], [c2], OPTION_TYPES["DepthwiseConv2DOptions"],
                    [(0, "b", SAME), (1, "i", 1), (2, "i", 1), (3, "i", 1), (4, "b", RELU),
                     (5, "i", 1), (6, "i", 1)]))
    ph, pw = oh // 2, ow // 2
    p = g.add(Tensor("pool/out", (1, ph, pw, filters), INT8, scale=(s_act,), zero_point=(-128,)))
    g.ops.append(Op(OP["MAX_POOL_2D"], [c2], [p], OPTION_TYPES["Pool2DOptions"],
                    [(0, "b", VALID), (1, "i", 2), (2, "i", 2), (3, "i", 2), (4, "i", 2), (5, "b", NONE)]))
    flat = ph * pw * filters
    shape_t = g.const("reshape/shape", np.array([1, flat]), INT32)
    r = g.add(Tensor("flatten", (1, flat), INT8, scale=(s_act,), zero_point=(-128,)))
    g.ops.append(Op(OP["RESHAPE"], [p, shape_t], [r]))
    prev, prev_n = r, flat
    layers = ([fc_units] if fc_units else []) + [classes]
    for i, units in enumerate(layers):
        ws = 0.01
        w = g.const(f"fc{i}/weights", rng.integers(-127, 128, (units, prev_n)), INT8, scale=(ws,),
                    zero_point=(0,))
        bias = g.const(f"fc{i}/bias", rng.integers(-100, 100, (units,)), INT32, scale=(s_act * ws,),
                       zero_point=(0,))
        out = g.add(Tensor(f"fc{i}/out", (1, units), INT8, scale=(0.1,), zero_point=(0,)))
        g.ops.append(Op(OP["FULLY_CONNECTED"], [prev, w, bias], [out], OPTION_TYPES["FullyConnectedOptions"],
                        [(0, "b", RELU if i < len(layers) - 1 else NONE)]))
        prev, prev_n = out, units
    y = g.add(Tensor("probs", (1, classes), INT8, scale=(1 / 256,), zero_point=(-128,)))
    g.ops.append(Op(OP["SOFTMAX"], [prev], [y], OPTION_TYPES["SoftmaxOptions"], [(0, "f", 1.0)]))
    if float_output:
        probs, y = y, g.add(Tensor("probs_float", (1, classes), FLOAT32))
        g.ops.append(Op(OP["DEQUANTIZE"], [probs], [y]))
    g.inputs, g.outputs = [x], [y]
    return g.build()


INT8_CNN_MACS = {"CONV_2D": 1296, "DEPTHWISE_CONV_2D": 1296, "FULLY_CONNECTED": 360}


def _float_fc_graph(weights_dtype: int, seed: int) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.add(Tensor("input", (1, 16), FLOAT32))
    wf = rng.normal(0, 0.3, (8, 16))
    if weights_dtype == INT8:
        w = g.const("weights", np.round(wf / 0.01).clip(-127, 127), INT8, scale=(0.01,), zero_point=(0,))
    elif weights_dtype == FLOAT16:
        w16 = g.const("weights_fp16", wf, FLOAT16)
        w = g.add(Tensor("weights", (8, 16), FLOAT32))
        g.ops.append(Op(OP["DEQUANTIZE"], [w16], [w]))
    else:
        w = g.const("weights", wf, FLOAT32)
    bias = g.const("bias", rng.normal(0, 0.1, (8,)), FLOAT32)
    y = g.add(Tensor("output", (1, 8), FLOAT32))
    g.ops.append(Op(OP["FULLY_CONNECTED"], [x, w, bias], [y], OPTION_TYPES["FullyConnectedOptions"],
                    [(0, "b", NONE)]))
    g.inputs, g.outputs = [x], [y]
    return g


def float_fc(seed: int = 0) -> bytes:
    """Float32 FULLY_CONNECTED 16 -> 8 (128 MACs)."""
    return _float_fc_graph(FLOAT32, seed).build()


def dynamic_range_fc(seed: int = 0) -> bytes:
    """Float activations with int8 weights: a hybrid (dynamic-range quantized) model."""
    return _float_fc_graph(INT8, seed).build()


def float16_fc(seed: int = 0) -> bytes:
    """Float16 weights expanded by DEQUANTIZE, float32 FULLY_CONNECTED (float16 quantization)."""
    return _float_fc_graph(FLOAT16, seed).build()


def custom_op_model(name: str = "MyFancyOp") -> bytes:
    """A float model whose only op is the custom op ``name``."""
    g = Graph()
    x = g.add(Tensor("input", (1, 4), FLOAT32))
    y = g.add(Tensor("output", (1, 4), FLOAT32))
    g.ops.append(Op(name, [x], [y]))
    g.inputs, g.outputs = [x], [y]
    return g.build()


def dynamic_range_conv(seed: int = 0) -> bytes:
    """Float CONV_2D with int8 filter (dynamic-range quantization): TFLM says hybrid is unsupported."""
    rng = np.random.default_rng(seed)
    g = Graph()
    x = g.add(Tensor("input", (1, 5, 5, 1), FLOAT32))
    w = g.const("filter", rng.integers(-127, 128, (2, 3, 3, 1)), INT8, scale=(0.01, 0.02), zero_point=(0, 0))
    bias = g.const("bias", rng.normal(0, 0.1, (2,)), FLOAT32)
    y = g.add(Tensor("output", (1, 3, 3, 2), FLOAT32))
    g.ops.append(Op(OP["CONV_2D"], [x, w, bias], [y], OPTION_TYPES["Conv2DOptions"],
                    _conv_options(1, VALID, NONE)))
    g.inputs, g.outputs = [x], [y]
    return g.build()


def int8_cnn_graph_fc_only(units: int = 4, features: int = 8) -> Graph:
    """A one-op int8 FULLY_CONNECTED graph, returned unbuilt so tests can break it."""
    g = Graph()
    x = g.add(Tensor("input", (1, features), INT8, scale=(0.05,), zero_point=(0,)))
    w = g.const("weights", np.ones((units, features)), INT8, scale=(0.01,), zero_point=(0,))
    y = g.add(Tensor("output", (1, units), INT8, scale=(0.1,), zero_point=(0,)))
    g.ops.append(Op(OP["FULLY_CONNECTED"], [x, w, -1], [y], OPTION_TYPES["FullyConnectedOptions"],
                    [(0, "b", NONE)]))
    g.inputs, g.outputs = [x], [y]
    return g
