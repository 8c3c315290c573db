"""Flash estimate: model bytes + measured TFLM core + per-op kernel code, shared objects counted once."""

from __future__ import annotations

from types import ModuleType

from pytest_tinyml.analysis.flash import (
    CORE_BYTES,
    DEFAULT_KERNEL_BYTES,
    KERNEL_OBJECT_BYTES,
    OP_KERNEL_OBJECTS,
    estimate_flash,
)
from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.analysis.tflm_ops import TFLM_BUILTIN_OPS


def test_table_is_consistent() -> None:
    assert all(o in KERNEL_OBJECT_BYTES for objs in OP_KERNEL_OBJECTS.values() for o in objs)
    assert 10_000 < CORE_BYTES < 40_000
    # every op with a measured kernel is one TFLM ships (builtin or custom)
    assert {op for op in OP_KERNEL_OBJECTS if op.isupper()} <= TFLM_BUILTIN_OPS | {"CIRCULAR_BUFFER"}


def test_estimate_for_cnn(tflite_factory: ModuleType) -> None:
    data = tflite_factory.int8_cnn()
    est = estimate_flash(parse_model(data, "cnn"))
    assert est.model_bytes == len(data)
    assert set(est.per_op) == {"CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED",
                               "SOFTMAX"}
    assert est.per_op["CONV_2D"] == KERNEL_OBJECT_BYTES["conv"] + KERNEL_OBJECT_BYTES["conv_common"]
    assert est.runtime_code_bytes == CORE_BYTES + sum(est.per_op.values())
    assert est.total_bytes == len(data) + est.runtime_code_bytes
    assert est.unknown_ops == () and "Cortex-M4" in est.method


def test_shared_objects_and_unknown_ops(tflite_factory: ModuleType) -> None:
    g = tflite_factory.Graph()
    x = g.add(tflite_factory.Tensor("x", (1, 4), tflite_factory.FLOAT32))
    y = g.add(tflite_factory.Tensor("y", (1, 4), tflite_factory.FLOAT32))
    z = g.add(tflite_factory.Tensor("z", (1, 4), tflite_factory.FLOAT32))
    w = g.add(tflite_factory.Tensor("w", (1, 4), tflite_factory.FLOAT32))
    g.ops += [tflite_factory.Op(tflite_factory.OP["MAX_POOL_2D"], [x], [y]), tflite_factory.Op(tflite_factory.OP["AVERAGE_POOL_2D"], [y], [z]),
              tflite_factory.Op("VendorOp", [z], [w])]
    g.inputs, g.outputs = [x], [w]
    est = estimate_flash(parse_model(g.build(), "g"))
    assert est.per_op["MAX_POOL_2D"] == KERNEL_OBJECT_BYTES["pooling"] + KERNEL_OBJECT_BYTES["pooling_common"]
    assert est.per_op["AVERAGE_POOL_2D"] == 0  # same objects, already linked
    assert est.per_op["VendorOp"] == DEFAULT_KERNEL_BYTES and est.unknown_ops == ("VendorOp",)
