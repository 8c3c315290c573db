"""Real TensorFlow-converted int8 models for the hardening benchmarks, generated once and cached.

``python bench/_tf_models.py CACHE_DIR`` (or :func:`ensure_models`) writes ``tf_int8_cnn.tflite`` (seed 001's
35,210-parameter MNIST CNN shape, untrained weights) and ``mobilenetish_int8.tflite`` (a ~300 KB
depthwise-separable int8 network on 96x96x3 input). TensorFlow is imported only in a child process that
generation starts, so callers (the audit benchmark) stay TensorFlow-free.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = ("tf_int8_cnn.tflite", "mobilenetish_int8.tflite")


def default_cache_dir() -> Path:
    return Path(os.environ.get("TINYML_BENCH_CACHE", Path(tempfile.gettempdir()) / "pytest-tinyml-bench-cache"))


def ensure_models(cache_dir: Path | None = None) -> dict[str, Path]:
    """Paths of the generated models, generating them (TensorFlow, in a child process) if missing."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    paths = {name: cache / name for name in MODELS}
    if not all(p.is_file() and p.stat().st_size > 0 for p in paths.values()):
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        subprocess.run([sys.executable, __file__, str(cache)], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=900)
    return paths


def _convert(keras: object, tf: object, model: object, shape: tuple[int, ...], seed: int) -> bytes:
    import numpy as np

    rng = np.random.default_rng(seed)

    @tf.function(input_signature=[tf.TensorSpec((1, *shape), tf.float32)])  # type: ignore[attr-defined]
    def fn(x: object) -> object:
        return model(x, training=False)  # type: ignore[operator]

    def rep() -> object:
        for _ in range(32):
            yield [rng.uniform(-1, 1, (1, *shape)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()])  # type: ignore[attr-defined]
    conv.optimizations = [tf.lite.Optimize.DEFAULT]  # type: ignore[attr-defined]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]  # type: ignore[attr-defined]
    conv.inference_input_type = tf.int8  # type: ignore[attr-defined]
    conv.inference_output_type = tf.int8  # type: ignore[attr-defined]
    return bytes(conv.convert())


def _generate(cache: Path) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    L = keras.layers
    # seed 001's CNN: 35,210 parameters
    inp = keras.Input((28, 28, 1))
    x = L.Conv2D(32, 3, activation="relu")(inp)
    x = L.MaxPooling2D(2)(x)
    x = L.Conv2D(64, 3, activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    out = L.Dense(10, activation="softmax")(L.Dropout(0.5)(x))
    cnn = keras.Model(inp, out)
    (cache / MODELS[0]).write_bytes(_convert(keras, tf, cnn, (28, 28, 1), 0))

    keras.backend.clear_session()
    keras.utils.set_random_seed(1)
    inp = keras.Input((96, 96, 3))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(inp)))
    for filters, stride in [(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (320, 2)]:
        x = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False)(x)))
        x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(filters, 1, use_bias=False)(x)))
    x = L.GlobalAveragePooling2D()(x)
    # logits, no softmax: with untrained weights the calibrated logit scale is ~1e-9 and TFLM's int8
    # softmax aborts (QuantizeMultiplierGreaterThanOne check) while preparing
    out = L.Dense(10)(x)
    net = keras.Model(inp, out)
    (cache / MODELS[1]).write_bytes(_convert(keras, tf, net, (96, 96, 3), 1))


if __name__ == "__main__":
    _generate(Path(sys.argv[1]))
