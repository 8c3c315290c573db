"""Parsing .tflite files without TensorFlow: structure, MACs, and one-line errors on bad files."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_tinyml.analysis._fb import Reader
from pytest_tinyml.analysis.model import load_model, load_model_bytes, parse_model
from pytest_tinyml.errors import ModelFileError


@pytest.fixture(scope="module")
def cnn_bytes(tflite_factory: ModuleType) -> bytes:
    return tflite_factory.int8_cnn()


def write(tmp_path: Path, data: bytes, name: str = "m.tflite") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# -- parsing real models ------------------------------------------------------------------------


def test_int8_cnn_structure(cnn_bytes: bytes, tmp_path: Path) -> None:
    info = load_model(write(tmp_path, cnn_bytes))
    assert info.size_bytes == len(cnn_bytes)
    assert info.schema_version == 3
    assert info.description == "pytest-tinyml test model"
    assert [op.name for op in info.ops] == [
        "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED", "SOFTMAX",
    ]
    assert info.op_names == {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                             "SOFTMAX"}
    assert info.ops_by_name["CONV_2D"] == 1
    assert info.custom_ops == []
    assert info.quantization == "int8"
    (inp,) = info.inputs
    assert inp.name == "input" and inp.shape == (1, 8, 8, 1) and inp.shape_signature == (-1, 8, 8, 1)
    assert inp.dtype == "int8" and not inp.is_constant and inp.dynamic
    assert inp.scale == pytest.approx((1 / 255,)) and inp.zero_point == (-128,)
    (out,) = info.outputs
    assert out.name == "probs" and out.shape == (1, 10) and out.nbytes == 10


def test_options_and_quantization_details(cnn_bytes: bytes) -> None:
    info = parse_model(cnn_bytes, "cnn")
    conv, dw, pool = info.ops[:3]
    assert conv.options == {"padding": "VALID", "stride_w": 1, "stride_h": 1, "fused_activation": "RELU",
                            "dilation_w": 1, "dilation_h": 1}
    assert dw.options["padding"] == "SAME" and dw.options["depth_multiplier"] == 1
    assert pool.options["filter_w"] == 2 and pool.options["stride_h"] == 2
    conv_filter = info.tensor(0, conv.inputs[1])
    assert conv_filter.is_constant and conv_filter.per_channel and len(conv_filter.scale) == 4
    dw_filter = info.tensor(0, dw.inputs[1])
    assert dw_filter.quantized_dimension == 3
    assert conv.weight_bytes == 4 * 3 * 3 * 1 + 4 * 4  # int8 filter + int32 bias


def test_macs_of_known_cnn(cnn_bytes: bytes) -> None:
    info = parse_model(cnn_bytes, "cnn")
    by_op = {op.name: op.macs for op in info.ops}
    # Hand-computed (see tflite_factory.int8_cnn): 6*6*4*3*3*1, 6*6*4*3*3, 10*36.
    assert by_op["CONV_2D"] == 6 * 6 * 4 * 3 * 3 * 1 == 1296
    assert by_op["DEPTHWISE_CONV_2D"] == 6 * 6 * 4 * 3 * 3 == 1296
    assert by_op["FULLY_CONNECTED"] == 10 * 36 == 360
    assert by_op["MAX_POOL_2D"] == by_op["SOFTMAX"] == 0
    assert info.total_macs == 2952


def test_macs_scale_with_shapes(tflite_factory: ModuleType) -> None:
    info = parse_model(tflite_factory.int8_cnn(height=20, width=12, filters=8, fc_units=32), "big")
    conv = info.ops[0]
    assert conv.macs == 18 * 10 * 8 * 3 * 3 * 1
    fcs = [op.macs for op in info.ops if op.name == "FULLY_CONNECTED"]
    assert fcs == [32 * (9 * 5 * 8), 10 * 32]


def test_weight_bytes_and_largest_tensors(cnn_bytes: bytes) -> None:
    info = parse_model(cnn_bytes, "cnn")
    constants = [t for t in info.tensors if t.is_constant]
    assert info.weight_bytes == sum(t.nbytes for t in constants)
    assert info.weight_bytes == 36 + 16 + 36 + 16 + 8 + 360 + 40
    biggest = info.largest_tensors(1, constant=True)[0]
    assert biggest.name == "fc0/weights" and biggest.nbytes == 360
    acts = info.largest_tensors(2, constant=False)
    assert [t.nbytes for t in acts] == [144, 144]
    assert len(info.largest_tensors(3)) == 3


def test_quantization_kinds(tflite_factory: ModuleType) -> None:
    assert parse_model(tflite_factory.float_fc(), "f").quantization == "float32"
    assert parse_model(tflite_factory.dynamic_range_fc(), "d").quantization == "dynamic_range"
    assert parse_model(tflite_factory.float16_fc(), "h").quantization == "float16"


def test_custom_op_named_by_custom_code(tflite_factory: ModuleType) -> None:
    info = parse_model(tflite_factory.custom_op_model("MyFancyOp"), "c")
    (op,) = info.ops
    assert op.is_custom and op.name == "MyFancyOp" and op.code == 32
    assert info.custom_ops == ["MyFancyOp"]


def test_builtin_codes_above_127_and_unknown_codes(tflite_factory: ModuleType) -> None:
    g = tflite_factory.Graph()
    x = g.add(tflite_factory.Tensor("x", (1, 4), tflite_factory.FLOAT32))
    y = g.add(tflite_factory.Tensor("y", (1, 4), tflite_factory.FLOAT32))
    z = g.add(tflite_factory.Tensor("z", (1, 4), tflite_factory.FLOAT32))
    g.ops.append(tflite_factory.Op(150, [x], [y]))  # a real code above 127 (deprecated field holds 127)
    g.ops.append(tflite_factory.Op(1000, [y], [z]))  # a code newer than the tflite package
    g.inputs, g.outputs = [x], [z]
    info = parse_model(g.build(), "codes")
    assert [c.code for c in info.operator_codes] == [150, 1000]
    assert info.ops[0].name == "GELU"
    assert info.ops[1].name == "BUILTIN_1000"


def test_to_dict_is_json(cnn_bytes: bytes) -> None:
    d = json.loads(json.dumps(parse_model(cnn_bytes, "cnn").to_dict()))
    assert d["total_macs"] == 2952 and d["quantization"] == "int8"
    assert d["subgraphs"][0]["ops"][0]["name"] == "CONV_2D"


# -- bad files: one line, naming the file, the problem and the fix --------------------------------


def error_for(path: Path | str) -> str:
    with pytest.raises(ModelFileError) as exc:
        load_model_bytes(path)
    message = str(exc.value)
    assert "\n" not in message and "(fix: " in message
    assert str(path) in message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "model file not found" in error_for(tmp_path / "nope.tflite")


def test_directory(tmp_path: Path) -> None:
    assert "is a directory" in error_for(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    assert "file is empty (0 bytes)" in error_for(write(tmp_path, b""))


def test_not_a_flatbuffer(tmp_path: Path) -> None:
    msg = error_for(write(tmp_path, b"\x89HDF\r\n\x1a\n" + bytes(100), "model.h5"))
    assert "not a TFLite flatbuffer" in msg and "HDF5" in msg
    msg = error_for(write(tmp_path, b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n", "lfs.tflite"))
    assert "Git LFS pointer" in msg and "git lfs pull" in msg
    msg = error_for(write(tmp_path, bytes(range(7, 47)), "junk.tflite"))
    assert "not a TFLite flatbuffer" in msg
    assert "only 5 bytes" in error_for(write(tmp_path, b"abcde", "tiny.tflite"))


def test_wrong_identifier(tmp_path: Path, cnn_bytes: bytes) -> None:
    data = bytearray(cnn_bytes)
    data[4:8] = b"CIR0"
    msg = error_for(write(tmp_path, bytes(data)))
    assert "wrong file identifier" in msg and "b'CIR0'" in msg and "b'TFL3'" in msg


def test_truncated(tmp_path: Path, cnn_bytes: bytes) -> None:
    msg = error_for(write(tmp_path, cnn_bytes[: len(cnn_bytes) // 2]))
    assert "truncated or corrupted" in msg and "byte offset" in msg and "past the end" in msg


def test_tensor_index_out_of_range(tflite_factory: ModuleType, tmp_path: Path) -> None:
    g = tflite_factory.int8_cnn_graph_fc_only()
    g.ops[0].inputs[0] = 7
    msg = error_for(write(tmp_path, g.build()))
    assert "operator 0 inputs name tensor 7, but the subgraph has 3 tensors" in msg


def test_subgraph_input_out_of_range(tflite_factory: ModuleType, tmp_path: Path) -> None:
    g = tflite_factory.int8_cnn_graph_fc_only()
    g.inputs = [3]
    assert "subgraph 0 inputs name tensor 3" in error_for(write(tmp_path, g.build()))


def test_buffer_index_out_of_range(tflite_factory: ModuleType, tmp_path: Path) -> None:
    g = tflite_factory.int8_cnn_graph_fc_only()
    g.tensors[1].buffer = 40
    assert "uses buffer 40, but the model has 2 buffers" in error_for(write(tmp_path, g.build()))


def _tensors_vector_length_offset(data: bytes) -> int:
    root = Reader(data).root()
    subgraph = root.tables(2, "subgraphs")[0]
    start, _ = subgraph.vector(0, 4, "tensors")
    return start - 4


def test_huge_vector_length(tmp_path: Path, cnn_bytes: bytes) -> None:
    data = bytearray(cnn_bytes)
    at = _tensors_vector_length_offset(cnn_bytes)
    struct.pack_into("<I", data, at, 0x7FFFFFFF)
    start = time.perf_counter()
    msg = error_for(write(tmp_path, bytes(data)))
    assert time.perf_counter() - start < 1.0
    assert "vector claims 2147483647 elements" in msg and f"byte offset {at}" in msg


def test_opcode_index_out_of_range(tflite_factory: ModuleType) -> None:
    g = tflite_factory.int8_cnn_graph_fc_only()
    z = g.add(tflite_factory.Tensor("z", (1, 4), tflite_factory.INT8, scale=(0.1,), zero_point=(0,)))
    g.ops.append(tflite_factory.Op(tflite_factory.OP["SOFTMAX"], [g.outputs[0]], [z]))
    data = bytearray(g.build())
    root = Reader(bytes(data)).root()
    op = root.tables(2, "subgraphs")[0].tables(3, "operators")[1]
    pos = op._field(0, 4, "opcode_index")
    assert pos and struct.unpack_from("<I", data, pos)[0] == 1
    struct.pack_into("<I", data, pos, 9)
    with pytest.raises(ModelFileError, match="operator 1 uses operator code 9, but the model has 2"):
        parse_model(bytes(data), "m.tflite")


def test_vtable_pointing_outside(cnn_bytes: bytes) -> None:
    data = bytearray(cnn_bytes)
    root_pos = struct.unpack_from("<I", data, 0)[0]
    struct.pack_into("<i", data, root_pos, -0x10000000)
    with pytest.raises(ModelFileError, match="vtable offset .* is outside the file"):
        parse_model(bytes(data), "m.tflite")


@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_models_give_model_file_error_or_parse(
    tflite_factory: ModuleType, mutations: list[tuple[int, int]]
) -> None:
    data = bytearray(tflite_factory.int8_cnn_graph_fc_only().build())
    for pos, value in mutations:
        data[8 + pos % (len(data) - 8)] = value
    start = time.perf_counter()
    try:
        parse_model(bytes(data), "mutant.tflite")
    except ModelFileError as exc:
        assert "mutant.tflite" in str(exc) and "\n" not in str(exc)
    assert time.perf_counter() - start < 1.0
