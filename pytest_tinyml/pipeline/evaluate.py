"""Accuracy of converted models on the test split, and the paired float -> quantized drop. No TensorFlow.

Stages:

- ``float``: the Keras model in inference mode (predictions computed at build time and cached with the
  build entry), or the float32 conversion for a SavedModel.
- ``litert``: the ``.tflite`` file in ``ai_edge_litert``'s interpreter with the reference kernels
  (``OpResolverType.BUILTIN_REF``), one image at a time. Reference kernels are what TFLM's arithmetic follows;
  the default XNNPACK path rounds differently on int8 models (NOTES).
- ``tflm``: host TFLM (PyPI ``tflite-micro``) through :func:`pytest_tinyml.analysis.tflm.invoke`, in child
  processes, the test split cut in two halves to use both cores.

Inputs of int8/uint8 models are quantized with the input tensor's own scale and zero point,
``q = clamp(round_half_away(x / scale) + zero_point)``, as TFLite's QUANTIZE kernel does (not seed 001's
``(x * 127).astype(int8)``, which is wrong for a scale of 1/255 and a zero point of -128).

The drop is paired: the same images through both models. With ``b`` images that only the float model gets
right and ``c`` that only the quantized one does, the drop is ``(b - c) / n`` in percentage points. Its 95 %
interval (``drop_ci``) is Newcombe's hybrid score interval for paired proportions (1998, method 10), which
accounts for the correlation of the two models' errors and stays informative when b or c is 0. The exact
McNemar-style interval conditional on the ``b + c`` discordant pairs (Clopper-Pearson for ``b / (b + c)``
mapped to ``(b + c) / n * (2 p - 1)``) is kept as ``PairedDrop.conditional_ci``; it ignores the uncertainty in
how many images change class, so with ``c = 0`` its upper end equals the observed drop.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from pytest_tinyml.errors import BuildError

EVAL_FORMAT = 1
Z95 = 1.959963984540054
Progress = Callable[[str], None] | None


class StageAccuracy(NamedTuple):
    accuracy: float  # percent
    n: int
    ci_low: float  # 95 % Wilson interval, percent
    ci_high: float


@dataclass(frozen=True)
class PairedDrop:
    points: float  # float accuracy minus quantized accuracy, percentage points (positive = worse)
    ci_low: float
    ci_high: float
    n: int
    float_only: int  # images only the float model classifies correctly
    quant_only: int  # images only the quantized model classifies correctly
    # exact interval given the b + c discordant pairs (Clopper-Pearson on b / (b + c)); ignores the
    # uncertainty of how many pairs are discordant, so its bound can equal the point estimate
    conditional_ci: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class AccuracyReport:
    mode: str
    stages: dict[str, StageAccuracy]
    drop_points: float | None  # on ``reference_stage``
    drop_ci: tuple[float, float] | None
    n: int
    discordant: tuple[int, int]  # (float only correct, quantized only correct) on ``reference_stage``
    predictions_hash: dict[str, str]
    reference_stage: str | None = None
    drops: dict[str, PairedDrop] = field(default_factory=dict)
    disagreements: dict[str, int] = field(default_factory=dict)  # "litert/tflm": images classified differently
    unavailable: dict[str, str] = field(default_factory=dict)  # stage -> why it could not run
    from_cache: bool = False
    seconds: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------------
# statistics


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return 0.0, 100.0
    p = correct / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half) * 100.0, min(1.0, centre + half) * 100.0


def _binom_cdf(k: int, m: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(m, p)."""
    if k < 0:
        return 0.0
    if k >= m:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) + i * lp + (m - i) * lq for i in range(k + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def clopper_pearson(k: int, m: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided interval for a binomial proportion k/m."""
    if m == 0:
        return 0.0, 1.0

    def solve(f: Callable[[float], float]) -> float:  # f increasing in p, find f(p) = 0
        lo, hi = 0.0, 1.0
        for _ in range(80):
            mid = (lo + hi) / 2
            if f(mid) < 0:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(lambda p: (1.0 - _binom_cdf(k - 1, m, p)) - alpha / 2)
    upper = 1.0 if k == m else solve(lambda p: (alpha / 2) - _binom_cdf(k, m, p))
    return lower, upper


def newcombe_paired_interval(both: int, b: int, c: int, neither: int, z: float = Z95) -> tuple[float, float]:
    """95 % interval (fractions) for p1 - p2 of paired proportions: Newcombe (1998) method 10, the hybrid
    score interval built from the Wilson intervals of both accuracies and their phi correlation."""
    n = both + b + c + neither
    if n == 0:
        return -1.0, 1.0
    p1, p2 = (both + b) / n, (both + c) / n
    l1, u1 = (v / 100.0 for v in wilson_interval(both + b, n, z))
    l2, u2 = (v / 100.0 for v in wilson_interval(both + c, n, z))
    denom = math.sqrt(float(both + b) * (c + neither) * (both + c) * (b + neither))
    phi = (both * neither - b * c) / denom if denom > 0 else 0.0
    d = p1 - p2
    low = d - math.sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = d + math.sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return max(-1.0, low), min(1.0, high)


def paired_drop(y: np.ndarray, float_pred: np.ndarray, quant_pred: np.ndarray) -> PairedDrop:
    n = len(y)
    fc = float_pred == y
    qc = quant_pred == y
    both = int(np.sum(fc & qc))
    b = int(np.sum(fc & ~qc))
    c = int(np.sum(~fc & qc))
    neither = n - both - b - c
    m = b + c
    points = (b - c) / n * 100.0 if n else 0.0
    lo, hi = newcombe_paired_interval(both, b, c, neither)
    lo_p, hi_p = clopper_pearson(b, m)
    scale = m / n * 100.0 if n else 0.0
    return PairedDrop(points, lo * 100.0, hi * 100.0, n, b, c,
                      conditional_ci=(scale * (2 * lo_p - 1), scale * (2 * hi_p - 1)))


def stage_accuracy(y: np.ndarray, pred: np.ndarray) -> StageAccuracy:
    correct = int(np.sum(pred == y))
    n = len(y)
    lo, hi = wilson_interval(correct, n)
    return StageAccuracy(correct / n * 100.0 if n else 0.0, n, lo, hi)


def predictions_digest(pred: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(pred, dtype=np.int16).tobytes()).hexdigest()


# ------------------------------------------------------------------------------------------------------
# running models


class TensorParams(NamedTuple):
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    scale: float
    zero_point: int


def _round_half_away(v: np.ndarray) -> np.ndarray:
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def quantize(x: np.ndarray, params: TensorParams) -> np.ndarray:
    """Float inputs to the input tensor's dtype (quantized with its scale / zero point when integer)."""
    dtype = np.dtype(params.dtype)
    if not np.issubdtype(dtype, np.integer):
        return np.asarray(x, dtype=dtype)
    if params.scale == 0:
        raise BuildError("the model's integer input tensor has no quantization parameters (scale 0)",
                         fix="convert with inference_input_type set and a representative dataset")
    info = np.iinfo(dtype)
    q = _round_half_away(np.asarray(x, dtype=np.float64) / params.scale) + params.zero_point
    return np.clip(q, info.min, info.max).astype(dtype)


def _interpreter(model: bytes, reference: bool = True) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs: dict[str, Any] = {"model_content": bytes(model)}
    if reference:
        kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
    try:
        it = Interpreter(**kwargs)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise BuildError(f"LiteRT cannot load the model: {str(exc).strip().splitlines()[0][:300]}") from None
    return it


def input_params(model: bytes) -> TensorParams:
    """Shape, dtype, scale and zero point of the model's first input tensor (read with LiteRT)."""
    it = _interpreter(model, reference=True)
    d = it.get_input_details()[0]
    scale, zp = d.get("quantization", (0.0, 0))
    return TensorParams(tuple(int(s) for s in d["shape"]), np.dtype(d["dtype"]), float(scale), int(zp))


def prepare_inputs(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    """One array per image, shaped and typed like the model's input tensor (batch 1)."""
    params = input_params(model)
    q = quantize(x, params)
    shape = params.shape if params.shape and params.shape[0] == 1 else (1, *q.shape[1:])
    return [q[i].reshape(shape) for i in range(len(q))]


def run_litert(model: bytes, x: np.ndarray, *, reference: bool = True) -> np.ndarray:
    """Predicted class per image with LiteRT, one image at a time."""
    it = _interpreter(model, reference=reference)
    inp = it.get_input_details()[0]
    out = it.get_output_details()[0]
    scale, zero_point = inp["quantization"]
    params = TensorParams(tuple(int(s) for s in inp["shape"]), np.dtype(inp["dtype"]), float(scale), int(zero_point))
    q = quantize(x, params)
    shape = tuple(int(s) for s in inp["shape"])
    pred = np.empty(len(q), dtype=np.int16)
    index_in, index_out = inp["index"], out["index"]
    for i in range(len(q)):
        it.set_tensor(index_in, q[i].reshape(shape))
        it.invoke()
        pred[i] = int(np.argmax(it.get_tensor(index_out).reshape(-1)))
    return pred


def run_tflm(model: bytes, x: np.ndarray, *, workers: int = 2, timeout: float | None = None) -> np.ndarray:
    """Predicted class per image with host TFLM (child processes; the images split over ``workers``;
    ``timeout``: the allocation timeout, ini ``tinyml_tflm_timeout``)."""
    from pytest_tinyml.analysis import tflm

    inputs = prepare_inputs(model, x)
    outs = tflm.invoke(model, inputs, workers=max(1, min(workers, len(inputs) // 50 or 1)), period=timeout)
    return np.asarray([int(np.argmax(np.asarray(o).reshape(-1))) for o in outs], dtype=np.int16)


def _run_litert(model: bytes, x: np.ndarray, timeout: float | None) -> np.ndarray:
    return run_litert(model, x)


def _run_tflm(model: bytes, x: np.ndarray, timeout: float | None) -> np.ndarray:
    return run_tflm(model, x, timeout=timeout)


STAGE_RUNNERS: dict[str, Callable[[bytes, np.ndarray, float | None], np.ndarray]] = {
    "litert": _run_litert, "tflm": _run_tflm}


def eval_key(tflite_sha256: str, dataset_checksum: str, stage: str) -> str:
    blob = json.dumps({"f": EVAL_FORMAT, "tflite": tflite_sha256, "data": dataset_checksum, "stage": stage,
                       "resolver": "BUILTIN_REF" if stage == "litert" else None}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def stage_predictions(model: bytes, x: np.ndarray, stage: str, tflm_timeout: float | None = None) -> np.ndarray:
    try:
        runner = STAGE_RUNNERS[stage]
    except KeyError:
        raise BuildError(f"unknown accuracy stage {stage!r}", fix=f"use {', '.join(STAGE_RUNNERS)}") from None
    return runner(model, x, tflm_timeout)


def make_report(mode: str, y: np.ndarray, float_pred: np.ndarray | None, preds: dict[str, np.ndarray],
                unavailable: dict[str, str], order: Sequence[str], *, from_cache: bool,
                seconds: dict[str, float]) -> AccuracyReport:
    stages: dict[str, StageAccuracy] = {}
    hashes: dict[str, str] = {}
    if float_pred is not None:
        stages["float"] = stage_accuracy(y, float_pred)
        hashes["float"] = predictions_digest(float_pred)
    drops: dict[str, PairedDrop] = {}
    for name in order:
        if name not in preds:
            continue
        stages[name] = stage_accuracy(y, preds[name])
        hashes[name] = predictions_digest(preds[name])
        if float_pred is not None:
            drops[name] = paired_drop(y, float_pred, preds[name])
    names = [s for s in order if s in preds]
    disagreements = {f"{a}/{b}": int(np.sum(preds[a] != preds[b])) for i, a in enumerate(names) for b in names[i + 1 :]}
    ref = next((s for s in order if s in drops), None)
    d = drops.get(ref) if ref else None
    return AccuracyReport(
        mode=mode,
        stages=stages,
        drop_points=d.points if d else None,
        drop_ci=(d.ci_low, d.ci_high) if d else None,
        n=len(y),
        discordant=(d.float_only, d.quant_only) if d else (0, 0),
        predictions_hash=hashes,
        reference_stage=ref,
        drops=drops,
        disagreements=disagreements,
        unavailable=unavailable,
        from_cache=from_cache,
        seconds=seconds,
    )
