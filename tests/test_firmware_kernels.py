"""Firmware runtime kernels against host TFLM, byte for byte.

Single-op int8 models are converted with the real TensorFlow converter in ONE child process per session
(TensorFlow is never imported into the test process); shapes, weights and quantization parameters come
from seeded random generators. Every model runs all its samples in one QEMU run and its outputs must be
identical to host TFLM's (PyPI tflite-micro) outputs.

Run this file as a script (``python tests/test_firmware_kernels.py --gen OUT_DIR``) to only write the models.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_tinyml.emulate import run_firmware, toolchain_status, unsupported_ops

pytestmark = pytest.mark.firmware

N_SAMPLES = 16


# --------------------------------------------------------------------------- model generation (child)
def _generate(out_dir: Path) -> None:  # pragma: no cover - runs in a child process
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    keras = tf.keras
    layers = keras.layers
    manifest: dict[str, dict[str, object]] = {}

    def convert(name, fn_body, shapes, rng, *, scale=1.0, offset=0.0, float_io=False, per_tensor_dense=False):
        keras.utils.set_random_seed(int(rng.integers(1 << 30)))
        sig = [tf.TensorSpec([1, *s], tf.float32) for s in shapes]
        fn = tf.function(fn_body, input_signature=sig)
        conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if per_tensor_dense:
            conv._experimental_disable_per_channel_quantization_for_dense_layers = True

        def rep():
            for _ in range(40):
                yield [
                    (rng.standard_normal((1, *s)) * scale + offset).astype(np.float32) for s in shapes
                ]

        conv.representative_dataset = rep
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if not float_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
        data = conv.convert()
        (out_dir / f"{name}.tflite").write_bytes(data)
        manifest[name] = {"inputs": len(shapes), "float_io": float_io, "scale": scale, "offset": offset}

    def randomize(layer, rng):
        layer.set_weights([(rng.standard_normal(w.shape) * rng.uniform(0.05, 1.0)).astype(np.float32)
                           for w in layer.get_weights()])
        return layer

    rng = np.random.default_rng(20240501)

    def shape4(lo=5, hi=12, cmax=6):
        return (int(rng.integers(lo, hi)), int(rng.integers(lo, hi)), int(rng.integers(1, cmax)))

    def keras_op(name, make, shape, **kw):
        layer = make()
        layer.build((1, *shape))
        randomize(layer, rng)
        convert(name, lambda x: layer(x), [shape], rng, scale=float(rng.uniform(0.2, 4.0)),
                offset=float(rng.uniform(-1, 1)), **kw)

    for i, (k, s, pad, act, dil) in enumerate([
        (3, 1, "valid", "relu", 1), (3, 2, "same", "relu6", 1), (1, 1, "same", None, 1),
        (3, 1, "same", None, 2), (5, 2, "valid", "relu", 1),
    ]):
        keras_op(f"conv_{i}", lambda k=k, s=s, pad=pad, act=act, dil=dil: layers.Conv2D(
            int(rng.integers(1, 9)), k, strides=s, padding=pad, activation=act, dilation_rate=dil),
            shape4(6, 13))
    for i, (k, s, pad, dm, act) in enumerate([
        (3, 1, "same", 1, "relu"), (3, 2, "valid", 2, None), (5, 1, "same", 3, "relu6"),
    ]):
        keras_op(f"depthwise_{i}", lambda k=k, s=s, pad=pad, dm=dm, act=act: layers.DepthwiseConv2D(
            k, strides=s, padding=pad, depth_multiplier=dm, activation=act), shape4(6, 13))
    keras_op("dense_per_channel", lambda: layers.Dense(int(rng.integers(3, 20)), activation="relu"),
             (int(rng.integers(8, 64)),))
    keras_op("dense_per_tensor", lambda: layers.Dense(int(rng.integers(3, 20))), (int(rng.integers(8, 64)),),
             per_tensor_dense=True)
    keras_op("dense_3d", lambda: layers.Dense(7), (3, 11))
    keras_op("maxpool_0", lambda: layers.MaxPool2D(2), shape4())
    keras_op("maxpool_1", lambda: layers.MaxPool2D(3, strides=2, padding="same"), shape4())
    keras_op("avgpool_0", lambda: layers.AveragePooling2D(3, strides=1, padding="same"), shape4())
    keras_op("avgpool_1", lambda: layers.AveragePooling2D(2, strides=2, padding="valid"), shape4())

    def simple(name, fn, shapes, **kw):
        convert(name, fn, shapes, rng, scale=float(rng.uniform(0.3, 6.0)), offset=float(rng.uniform(-1, 1)), **kw)

    for i in range(3):
        simple(f"softmax_{i}", lambda x: tf.nn.softmax(x), [(int(rng.integers(2, 40)),)])
    simple("softmax_4d", lambda x: tf.nn.softmax(x), [(3, 4, 10)])
    for i in range(2):
        simple(f"logistic_{i}", lambda x: tf.sigmoid(x), [shape4()])
    c_add = rng.standard_normal((1, 1, 1, 4)).astype(np.float32) * 2
    simple("add_broadcast", lambda x: tf.nn.relu(x + c_add), [(5, 6, 4)])
    simple("add_two_inputs", lambda x, y: x + y, [(4, 5, 3), (4, 5, 3)])
    c_mul = rng.uniform(0.1, 3, (1, 1, 1, 3)).astype(np.float32)
    simple("mul_broadcast", lambda x: x * c_mul, [(6, 5, 3)])
    simple("mul_square", lambda x: x * x, [(7, 3)])
    simple("mean_hw", lambda x: tf.reduce_mean(x, axis=[1, 2], keepdims=True), [shape4(4, 9, 8)])
    simple("mean_last", lambda x: tf.reduce_mean(x, axis=[-1]), [(5, 6, 7)])
    simple("mean_flat", lambda x: tf.reduce_mean(x, axis=[1, 2]), [(7, 9, 5)])
    simple("pad", lambda x: tf.pad(x, [[0, 0], [1, 2], [2, 1], [0, 0]]), [shape4()])
    simple("concat_same", lambda x: tf.concat([x, x], axis=-1), [shape4()])
    simple("concat_two", lambda x, y: tf.concat([x, y], axis=1), [(4, 3), (2, 3)])
    simple("reshape", lambda x: tf.reshape(x, [1, -1, 2]), [(4, 6)])
    simple("transpose_nchw", lambda x: tf.transpose(x, [0, 3, 1, 2]), [shape4(3, 7, 6)])
    simple("transpose_3d", lambda x: tf.transpose(x, [0, 2, 1]), [(5, 3)])
    dense = layers.Dense(5)
    dense.build((1, 12))
    randomize(dense, rng)
    simple("float_io_dense", lambda x: dense(x), [(12,)], float_io=True)
    simple("requantize", lambda x: tf.concat([x, x * 3.0], axis=-1), [(6, 4)])
    # Seed 001's CNN (batch-1 concrete function, int8 I/O), BatchNorm statistics randomised so the folded
    # multipliers are not trivial.
    cnn = keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(32, 3), layers.BatchNormalization(), layers.ReLU(), layers.MaxPool2D(),
        layers.Conv2D(64, 3), layers.BatchNormalization(), layers.ReLU(), layers.MaxPool2D(),
        layers.Flatten(), layers.Dropout(0.5), layers.Dense(10), layers.Softmax(),
    ])
    for layer in cnn.layers:
        if isinstance(layer, layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape).astype(np.float32),
                               rng.normal(0, 0.2, beta.shape).astype(np.float32),
                               rng.normal(0, 0.5, mean.shape).astype(np.float32),
                               rng.uniform(0.5, 2.0, var.shape).astype(np.float32)])
    convert("cnn_seed001", lambda x: cnn(x, training=False), [(28, 28, 1)], rng, scale=0.5, offset=0.5)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))


# --------------------------------------------------------------------------- fixtures
def _require_toolchain() -> None:
    status = toolchain_status()
    if not status.ok:
        pytest.skip(f"firmware toolchain missing ({', '.join(status.missing)}); to enable: {status.hint}")


@pytest.fixture(scope="session")
def firmware_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build cache per session: the runtime library is compiled once."""
    return tmp_path_factory.getbasetemp() / "firmware-cache"


@pytest.fixture(scope="session")
def op_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bytes, dict[str, object]]]:
    pytest.importorskip("tensorflow", reason="needs TensorFlow to convert test models (pip install tensorflow)")
    out = tmp_path_factory.mktemp("op-models")
    proc = subprocess.run(
        [sys.executable, __file__, "--gen", str(out)], capture_output=True, text=True, timeout=900, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"model generation failed:\n{proc.stderr[-4000:]}")
    manifest = json.loads((out / "manifest.json").read_text())
    return {name: ((out / f"{name}.tflite").read_bytes(), meta) for name, meta in manifest.items()}


def _samples(model: bytes, n: int, seed: int) -> list[Any]:
    from pytest_tinyml.analysis.model import parse_model

    rng = np.random.default_rng(seed)
    specs = parse_model(model, "<test>").inputs
    samples: list[Any] = []
    for _ in range(n):
        arrays: list[np.ndarray] = []
        for spec in specs:
            if spec.dtype == "float32":
                arrays.append((rng.standard_normal(spec.shape) * 2).astype(np.float32))
            else:
                arrays.append(rng.integers(-128, 128, size=spec.shape, dtype=np.int8))
        samples.append(arrays[0] if len(arrays) == 1 else tuple(arrays))
    return samples


def _host_tflm(model: bytes, samples: list[object]) -> list[np.ndarray]:
    from pytest_tinyml.analysis.tflm import invoke

    return invoke(model, samples, timeout=300)


OP_MODEL_NAMES = [
    *(f"conv_{i}" for i in range(5)),
    *(f"depthwise_{i}" for i in range(3)),
    "dense_per_channel",
    "dense_per_tensor",
    "dense_3d",
    "maxpool_0",
    "maxpool_1",
    "avgpool_0",
    "avgpool_1",
    "softmax_0",
    "softmax_1",
    "softmax_2",
    "softmax_4d",
    "logistic_0",
    "logistic_1",
    "add_broadcast",
    "add_two_inputs",
    "mul_broadcast",
    "mul_square",
    "mean_hw",
    "mean_last",
    "mean_flat",
    "pad",
    "concat_same",
    "concat_two",
    "reshape",
    "transpose_nchw",
    "transpose_3d",
    "float_io_dense",
    "requantize",
]


@pytest.mark.parametrize("name", OP_MODEL_NAMES)
def test_kernel_bit_exact_with_tflm(name: str, op_models, firmware_cache: Path) -> None:
    _require_toolchain()
    model, _meta = op_models[name]
    assert unsupported_ops(model) == []
    samples = _samples(model, N_SAMPLES, seed=zlib.crc32(name.encode()))
    expected = _host_tflm(model, samples)
    result = run_firmware(model, samples, cache_dir=firmware_cache, timeout=120)
    assert len(result.outputs) == len(samples)
    for i, (got, want) in enumerate(zip(result.outputs, expected, strict=True)):
        want = np.asarray(want).reshape(got.shape)
        assert got.dtype == want.dtype, name
        assert got.tobytes() == want.tobytes(), f"{name}: sample {i} differs\nfirmware={got.ravel()[:32]}\ntflm={want.ravel()[:32]}"
    assert result.instructions_per_inference > 0
    assert result.arena_bytes > 0


def test_seed001_cnn_bit_exact_on_100_inputs(op_models, firmware_cache: Path) -> None:
    """End to end: seed 001's CNN on 100 seeded inputs, identical to host TFLM, on both boards."""
    _require_toolchain()
    from pytest_tinyml.analysis.model import parse_model

    model, _meta = op_models["cnn_seed001"]
    assert {"CONV_2D", "MAX_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"} <= parse_model(model, "cnn").op_names
    rng = np.random.default_rng(1)
    base = rng.integers(-128, 128, size=(1, 28, 28, 1), dtype=np.int16)
    samples = [np.clip(base + rng.integers(-60, 60, size=base.shape), -128, 127).astype(np.int8) for _ in range(100)]
    expected = _host_tflm(model, samples)
    result = run_firmware(model, samples, cache_dir=firmware_cache, timeout=300)
    got = np.stack([o.reshape(-1) for o in result.outputs])
    want = np.stack([np.asarray(e).reshape(-1) for e in expected])
    mismatched = np.nonzero((got != want).any(axis=1))[0]
    assert mismatched.size == 0, f"samples {mismatched[:10].tolist()} differ from host TFLM"
    assert len(np.unique(got, axis=0)) > 1  # not a constant output (random weights may saturate the argmax)
    # instruction count: at least one instruction per MAC (~2.4 M MACs), deterministic per sample +- jitter
    assert result.instructions_per_inference > 2.4e6
    assert result.instructions_min <= result.instructions_per_inference <= result.instructions_max
    assert result.arena_bytes >= 26 * 26 * 32  # the first conv output alone
    assert 0 < result.stack_bytes < 16 * 1024
    ref = run_firmware(model, samples[:10], cache_dir=firmware_cache, timeout=300)
    other = run_firmware(model, samples[:10], machine="netduinoplus2", cache_dir=firmware_cache, timeout=300)
    assert ref.build_cached
    assert [o.tobytes() for o in other.outputs] == [o.tobytes() for o in result.outputs[:10]]
    # same instruction stream on both boards: counts agree to within the timer resolution
    assert abs(other.instructions_per_inference - ref.instructions_per_inference) <= 100


def test_seed001_cnn_real_tflm_firmware_matches(op_models, firmware_cache: Path) -> None:
    """With TFLM_ROOT set: seed 001's CNN built against real TFLM under QEMU equals this runtime's output."""
    _require_toolchain()
    from pytest_tinyml.emulate.tflm_tree import tflm_tree
    from pytest_tinyml.errors import NotEvaluable

    try:
        tflm_tree()
    except NotEvaluable as exc:
        pytest.skip(f"real TFLM build: {exc.reason}; to enable: {exc.enable}")
    model, _meta = op_models["cnn_seed001"]
    samples = _samples(model, 20, seed=11)
    ours = run_firmware(model, samples, cache_dir=firmware_cache, timeout=300)
    real = run_firmware(model, samples, cache_dir=firmware_cache, timeout=600, runtime="tflm")
    assert [o.tobytes() for o in real.outputs] == [o.tobytes() for o in ours.outputs]
    assert real.arena_bytes >= 26 * 26 * 32


def test_generated_models_cover_the_required_ops(op_models) -> None:
    from pytest_tinyml.analysis.model import parse_model

    seen: set[str] = set()
    for model, _meta in op_models.values():
        seen |= parse_model(model, "<test>").op_names
    required = {
        "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE",
        "SOFTMAX", "ADD", "MUL", "MEAN", "PAD", "CONCATENATION", "LOGISTIC", "QUANTIZE", "DEQUANTIZE",
    }
    assert required <= seen, f"not covered: {sorted(required - seen)}"


def test_fully_connected_both_quantization_granularities(op_models) -> None:
    from pytest_tinyml.analysis.model import parse_model

    def weight_scales(name: str) -> int:
        info = parse_model(op_models[name][0], name)
        op = next(o for o in info.ops if o.name == "FULLY_CONNECTED")
        return len(info.subgraphs[0].tensors[op.inputs[1]].scale)

    assert weight_scales("dense_per_channel") > 1
    assert weight_scales("dense_per_tensor") == 1


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) == 3 and sys.argv[1] == "--gen":
        target = Path(sys.argv[2])
        target.mkdir(parents=True, exist_ok=True)
        _generate(target)
    else:
        sys.exit("usage: test_firmware_kernels.py --gen OUT_DIR")
