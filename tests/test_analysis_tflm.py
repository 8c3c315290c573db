"""Host TFLM in a child process: allocation verdicts, TFLM's own reasons, crashes, timeouts, inference."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from pytest_tinyml.analysis._tflm_child import FAULT_ENV
from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.analysis.tflm import (
    FIX_REQUANTIZE,
    TflmError,
    allocate,
    arena_32bit,
    invoke,
    parse_print_allocations,
    tflm_op_report,
)


@pytest.fixture(scope="module")
def cnn(tflite_factory: ModuleType) -> bytes:
    return tflite_factory.int8_cnn()


def test_allocate_int8_ok(cnn: bytes) -> None:
    alloc = allocate(cnn, find_min_arena=True)
    assert alloc.ok and alloc.reason is None and alloc.signal is None and not alloc.timed_out
    assert alloc.host_arena_bytes is not None and alloc.host_arena_bytes > 0
    d = alloc.details
    assert d["total"] == alloc.host_arena_bytes == d["head"] + d["tail"]
    assert d["nodes_count"] == 6 and d["eval_tensors_count"] == len(parse_model(cnn, "cnn").tensors)
    assert d["host_min_arena_bytes"] >= alloc.host_arena_bytes


def test_allocate_dynamic_range_fails_with_tflm_reason(tflite_factory: ModuleType) -> None:
    alloc = allocate(tflite_factory.dynamic_range_conv())
    assert not alloc.ok and alloc.host_arena_bytes is None and alloc.signal is None
    assert "Hybrid models are not supported on TFLite Micro." in (alloc.reason or "")
    report = tflm_op_report(parse_model(tflite_factory.dynamic_range_conv(), "d"), alloc)
    (conv,) = [r for r in report if r.op == "CONV_2D"]
    assert conv.status == "rejected" and conv.fix is not None and FIX_REQUANTIZE in conv.fix


def test_allocate_float16_fails(tflite_factory: ModuleType) -> None:
    data = tflite_factory.float16_fc()
    alloc = allocate(data)
    assert not alloc.ok
    assert "Node DEQUANTIZE (number 0) failed to prepare" in (alloc.reason or "")
    report = {r.op: r for r in tflm_op_report(parse_model(data, "h"), alloc)}
    assert report["DEQUANTIZE"].status == "rejected"
    assert "float16" in (report["DEQUANTIZE"].fix or "")
    assert report["FULLY_CONNECTED"].status == "ok"


def test_allocate_unknown_custom_op_names_it(tflite_factory: ModuleType) -> None:
    data = tflite_factory.custom_op_model("MyFancyOp")
    alloc = allocate(data)
    assert not alloc.ok and "Failed to get registration from op code CUSTOM" in (alloc.reason or "")
    (entry,) = tflm_op_report(parse_model(data, "c"), alloc)
    assert entry.op == "MyFancyOp" and entry.status == "unsupported" and entry.custom
    assert entry.fix == "register custom op MyFancyOp in the firmware's op resolver, or convert without it"


def test_signal_op_is_flagged_for_registration(tflite_factory: ModuleType) -> None:
    info = parse_model(tflite_factory.custom_op_model("SignalWindow"), "s")
    (entry,) = tflm_op_report(info, None)
    assert entry.status == "register" and "firmware must register" in (entry.reason or "")


def test_real_crash_is_reported_with_signal(tflite_factory: ModuleType) -> None:
    # A SignalWindow op without its inputs and options: TFLM dereferences missing data and segfaults.
    alloc = allocate(tflite_factory.custom_op_model("SignalWindow"), timeout=60)
    assert not alloc.ok and alloc.signal == "SIGSEGV"
    assert "crashed with SIGSEGV" in (alloc.reason or "")


def test_fault_injection_segv_and_timeout(cnn: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAULT_ENV, "segv")
    alloc = allocate(cnn)
    assert not alloc.ok and alloc.signal == "SIGSEGV"
    monkeypatch.setenv(FAULT_ENV, "hang")
    alloc = allocate(cnn, timeout=2)
    assert not alloc.ok and alloc.timed_out and "timed out after 2 s" in (alloc.reason or "")
    monkeypatch.setenv(FAULT_ENV, "segv:invoke")
    with pytest.raises(TflmError) as exc:
        invoke(cnn, [np.zeros((8, 8, 1), np.int8)])
    assert exc.value.stage == "invoke" and "SIGSEGV" in exc.value.reason


def test_invoke_matches_across_workers_and_shapes(cnn: bytes) -> None:
    rng = np.random.default_rng(0)
    samples = [rng.integers(-128, 128, (8, 8, 1), dtype=np.int8) for _ in range(6)]
    out1 = invoke(cnn, samples)
    out2 = invoke(cnn, [s.reshape(1, 8, 8, 1) for s in samples], workers=2)
    assert len(out1) == 6 and out1[0].shape == (1, 10) and out1[0].dtype == np.int8
    for a, b in zip(out1, out2, strict=True):
        np.testing.assert_array_equal(a, b)
    assert len({a.tobytes() for a in out1}) > 1  # different inputs give different outputs


def test_invoke_float_matches_numpy(tflite_factory: ModuleType) -> None:
    data = tflite_factory.float_fc(seed=3)
    gen = np.random.default_rng(3)  # the factory draws the weights, then the bias, from this seed
    weights = gen.normal(0, 0.3, (8, 16)).astype(np.float32)
    bias = gen.normal(0, 0.1, (8,)).astype(np.float32)
    x = np.random.default_rng(1).normal(size=(1, 16)).astype(np.float32)
    (y,) = invoke(data, [x])
    assert y.shape == (1, 8) and y.dtype == np.float32
    np.testing.assert_allclose(y, x @ weights.T + bias, rtol=1e-5, atol=1e-5)


def test_invoke_errors(tflite_factory: ModuleType, cnn: bytes) -> None:
    with pytest.raises(ValueError, match="dtype float32"):
        invoke(cnn, [np.zeros((8, 8, 1), np.float32)])
    with pytest.raises(ValueError, match=r"shape \(4, 4, 1\)"):
        invoke(cnn, [np.zeros((4, 4, 1), np.int8)])
    with pytest.raises(TflmError) as exc:
        invoke(tflite_factory.dynamic_range_conv(), [np.zeros((5, 5, 1), np.float32)])
    assert exc.value.stage == "allocate" and "Hybrid models" in exc.value.reason
    assert invoke(cnn, []) == []


def test_arena_32bit_is_below_host(cnn: bytes) -> None:
    info = parse_model(cnn, "cnn")
    alloc = allocate(cnn, find_min_arena=True)
    arena = arena_32bit(info, alloc)
    assert arena.host_bytes == alloc.host_arena_bytes
    assert arena.head_bytes == alloc.details["head"]
    assert arena.bytes == arena.head_bytes + arena.tail_bytes
    # Pointer-bearing structs halve: 12 eval tensors x 12 B + 6 nodes x 32 B + allocator objects.
    assert alloc.host_arena_bytes - arena.bytes >= 12 * len(info.tensors) + 32 * 6 + 300
    assert arena.bytes < alloc.host_arena_bytes
    assert arena.required_bytes is not None and arena.required_bytes >= arena.bytes
    assert "TfLiteEvalTensor" in arena.method


def test_arena_32bit_refuses_failed_allocation(tflite_factory: ModuleType) -> None:
    alloc = allocate(tflite_factory.custom_op_model("MyFancyOp"))
    with pytest.raises(TflmError):
        arena_32bit(parse_model(tflite_factory.custom_op_model("MyFancyOp"), "c"), alloc)


def test_parse_print_allocations() -> None:
    text = (
        "[RecordingMicroAllocator] Arena allocation total 1504 bytes\n"
        "[RecordingMicroAllocator] Arena allocation head 32 bytes\n"
        "[RecordingMicroAllocator] Arena allocation tail 1472 bytes\n"
        "[RecordingMicroAllocator] 'TfLiteEvalTensor data' used 240 bytes with alignment overhead "
        "(requested 240 bytes for 10 allocations)\n"
        "[RecordingMicroAllocator] 'NodeAndRegistration struct' used 192 bytes with alignment overhead "
        "(requested 192 bytes for 3 NodeAndRegistration structs)\n"
    )
    d = parse_print_allocations(text)
    assert d == {"total": 1504, "head": 32, "tail": 1472, "eval_tensors_used": 240,
                 "eval_tensors_requested": 240, "eval_tensors_count": 10, "nodes_used": 192,
                 "nodes_requested": 192, "nodes_count": 3}


def test_arena_32bit_for_cmsis_nn_adds_its_fully_connected_data(cnn: bytes) -> None:
    info = parse_model(cnn, "cnn")
    alloc = allocate(cnn)
    ref, cm = arena_32bit(info, alloc), arena_32bit(info, alloc, kernels="cmsis_nn")
    n_fc = sum(op.name == "FULLY_CONNECTED" for op in info.ops)
    assert n_fc and cm.bytes - ref.bytes == 32 * n_fc
    assert "cmsis_nn kernels" in cm.method
