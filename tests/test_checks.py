"""The checks are pure functions from measurements to verdicts: each one passing and failing."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pytest_tinyml.checks.accuracy import judge_accuracy, judge_drop
from pytest_tinyml.checks.firmware import judge_bitexact, judge_latency
from pytest_tinyml.checks.io import judge_io
from pytest_tinyml.checks.memory import judge_bytes
from pytest_tinyml.checks.ops import judge_tflm_ops
from pytest_tinyml.checks.size import judge_size


def test_size_pass_and_fail() -> None:
    ok = judge_size(40_000, 51_200, "50 KiB", [("dense/w", 16_000)])
    assert ok.passed and ok.message == "size: 40,000 B <= limit 51,200 B (50 KiB)"
    bad = judge_size(53_936, 51_200, "50 KiB", [("dense/w", 16_000), ("conv/w", 9_216)])
    assert not bad.passed
    assert bad.message == "size: 53,936 B > limit 51,200 B (50 KiB); largest tensors: dense/w 16,000 B, conv/w 9,216 B"
    assert bad.fix and "int8" in bad.fix
    assert (bad.measured, bad.limit, bad.unit) == (53_936, 51_200, "B")
    already = judge_size(53_936, 51_200, "50 KiB", [("dense/w", 16_000)], "int8")
    assert already.fix is not None and already.fix.startswith("the model is already int8")


def test_io() -> None:
    assert judge_io("int8", [("in", "int8")], [("out", "int8")]).passed
    bad = judge_io("int8", [("in", "float32")], [("out", "int8")])
    assert not bad.passed and "input in is float32" in bad.message and "inference_input_type" in (bad.fix or "")


def _row(op: str, status: str, reason: str | None = None, fix: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        op=op, count=1, status=status, reason=reason, fix=fix,
        to_dict=lambda: {"op": op, "status": status, "reason": reason, "fix": fix},
    )


def test_tflm_ops_pass_note_and_fail() -> None:
    ok_alloc = SimpleNamespace(ok=True, signal=None, timed_out=False, reason=None)
    verdict = judge_tflm_ops(ok_alloc, [_row("CONV_2D", "ok"), _row("SignalWindow", "register")], ["CONV_2D", "SignalWindow"])
    assert verdict.passed and any("register it" in d for d in verdict.details)
    bad_alloc = SimpleNamespace(ok=False, signal=None, timed_out=False, reason="Hybrid models are not supported on TFLite Micro.")
    verdict = judge_tflm_ops(bad_alloc, [_row("CONV_2D", "rejected", "Hybrid models are not supported", "re-quantize")], ["CONV_2D"])
    assert not verdict.passed
    assert verdict.message == "tflm_ops: TFLM refused the model (CONV_2D): Hybrid models are not supported on TFLite Micro."
    assert verdict.fix == "re-quantize"
    crashed = SimpleNamespace(ok=False, signal="SIGSEGV", timed_out=False, reason=None)
    verdict = judge_tflm_ops(crashed, [], ["CONV_2D"])
    assert not verdict.passed and "crashed (SIGSEGV)" in verdict.message
    hung = SimpleNamespace(ok=False, signal=None, timed_out=True, reason=None)
    assert "timed out" in judge_tflm_ops(hung, [], []).message


def test_bytes_limits() -> None:
    assert judge_bytes("arena", 1000, 1000, "x", [], "fix").passed
    bad = judge_bytes("flash", 2_000_000, 943_719, "stm32f405: 1,048,576 B flash - 104,857 B reserve", [], "smaller")
    assert not bad.passed and bad.message.startswith("flash: 2,000,000 B > limit 943,719 B (stm32f405")


def _report(float_acc: float, quant_acc: float, drop: float, ci: tuple[float, float], n: int = 1000) -> SimpleNamespace:
    return SimpleNamespace(
        stages={"float": (float_acc, n, float_acc - 1, float_acc + 1), "litert": (quant_acc, n, quant_acc - 1, quant_acc + 1)},
        drop_points=drop,
        drop_ci=ci,
        n=n,
    )


def test_accuracy_and_drop() -> None:
    assert judge_accuracy(_report(97.5, 97.3, 0.2, (-0.2, 0.7)), 95.0).passed
    low = judge_accuracy(_report(90.0, 89.0, 1.0, (0.5, 1.5)), 95.0)
    assert not low.passed and "89.00 % (litert, 1,000 test images) < minimum 95 %" in low.message
    ok = judge_drop(_report(97.5, 97.3, 0.2, (-0.2, 0.7)), 1.0)
    assert ok.passed and not any("straddles" in d for d in ok.details)
    straddle = judge_drop(_report(97.5, 96.7, 0.8, (0.3, 1.4)), 1.0)
    assert straddle.passed and any("straddles the limit" in d for d in straddle.details)
    bad = judge_drop(_report(97.5, 95.0, 2.5, (1.8, 3.2)), 1.0)
    assert not bad.passed and "2.50 pt >= limit 1 pt" in bad.message and "qat" in (bad.fix or "")


def test_bitexact() -> None:
    a = [np.array([1, 2, 3], np.int8), np.array([4, 5, 6], np.int8)]
    assert judge_bitexact(a, [x.copy() for x in a], "mps2-an386").passed
    b = [a[0].copy(), np.array([4, 5, 9], np.int8)]
    bad = judge_bitexact(a, b, "mps2-an386")
    assert not bad.passed and bad.measured == 1 and "first: 1; largest difference 3 LSB" in bad.message
    short = judge_bitexact(a[:1], b, "mps2-an386")
    assert not short.passed and "returned 1 outputs for 2 inputs" in short.message


def test_latency() -> None:
    ok = judge_latency(0.0005, 0.001, 60_000, 1.3, 168_000_000, "m")
    assert ok.passed and ok.message.startswith("latency: 500 µs <= limit 1 ms")
    bad = judge_latency(0.243, 0.001, 31_400_000, 1.3, 168_000_000, "m")
    assert not bad.passed and "243 ms > limit 1 ms" in bad.message and "31,400,000 instructions" in bad.message


@pytest.mark.parametrize("name", ["size", "int8_io", "tflm_ops", "arena", "flash", "accuracy", "accuracy_drop", "latency",
                                  "firmware_bitexact", "firmware_ram"])
def test_builtin_checks_registered(name: str) -> None:
    from pytest_tinyml.builtin import pytest_tinyml_checks

    assert name in [c.name for c in pytest_tinyml_checks()]
