"""Multiply-accumulates of one operator from its tensor shapes (the rules are in
:mod:`pytest_tinyml.analysis.model`'s doc)."""

from __future__ import annotations

from typing import Any

from pytest_tinyml.analysis.modelinfo import TensorInfo


def _dims(t: TensorInfo | None) -> tuple[int, ...] | None:
    if t is None:
        return None
    return tuple(max(d, 1) for d in t.shape)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def op_macs(
    name: str,
    inputs: list[TensorInfo | None],
    outputs: list[TensorInfo | None],
    options: dict[str, Any],
) -> int:
    """Multiply-accumulates of one op from its tensor shapes (0 for ops not counted or odd shapes)."""
    out = _dims(outputs[0]) if outputs else None
    if out is None:
        return 0
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(inputs) >= 2:
        w = _dims(inputs[1])
        if w is None or len(w) != 4 or len(out) != 4:
            return 0
        _, kh, kw, in_c = w
        if name == "DEPTHWISE_CONV_2D":
            return _numel(out) * kh * kw
        return _numel(out) * kh * kw * in_c
    if name == "FULLY_CONNECTED" and len(inputs) >= 2:
        w = _dims(inputs[1])
        if w is None or len(w) != 2:
            return 0
        return _numel(out) * w[1]
    if name == "TRANSPOSE_CONV" and len(inputs) >= 3:
        w, x = _dims(inputs[1]), _dims(inputs[2])
        if w is None or x is None or len(w) != 4:
            return 0
        out_c, kh, kw, _ = w
        return _numel(x) * kh * kw * out_c
    if name == "BATCH_MATMUL" and len(inputs) >= 2:
        a = _dims(inputs[0])
        if a is None or len(a) < 2:
            return 0
        k = a[-2] if options.get("adj_x") else a[-1]
        return _numel(out) * k
    return 0
