"""Keras model builders for the seed tutorials (``models.<name>:build``), used by the example specs.

Every builder takes ``keras_module=None``: by default the model is built with Keras 3 (``import keras``);
pass ``keras_module="tf_keras"`` (or the module itself) to build the same architecture with tf_keras, which
tensorflow-model-optimization needs for quantization-aware training (it rejects Keras 3 models). The build
pipeline does that by itself for ``quantization: {mode: qat}`` and copies the trained weights across.

TensorFlow/Keras are imported inside the functions only: importing this package is free.
"""

from __future__ import annotations

import importlib
from typing import Any


def get_keras(keras_module: Any = None) -> Any:
    """The Keras module to build with: Keras 3 by default, or ``tf_keras`` / a given module."""
    if keras_module is None:
        return importlib.import_module("keras")
    if isinstance(keras_module, str):
        return importlib.import_module(keras_module)
    return keras_module
