"""Seed 004 (Himax WE-I Plus MNIST int8 example).

Conv2D 8 3x3 ReLU valid - MaxPool 2 - Conv2D 16 3x3 ReLU valid - MaxPool 2 - Conv2D 32 5x5 (no activation)
- Flatten - Dense 64 ReLU - Dense 10 (logits). The input is the raw pixel minus 128 (``preprocess: x-128``),
so int8 input quantization is exact with scale 1 and zero point 0.
"""

from __future__ import annotations

from typing import Any

from models import get_keras


def build(num_classes: int = 10, keras_module: Any = None) -> Any:
    keras = get_keras(keras_module)
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(8, (3, 3), padding="valid", activation="relu")(inputs)
    x = layers.MaxPooling2D(pool_size=(2, 2), strides=2)(x)
    x = layers.Conv2D(16, (3, 3), padding="valid", activation="relu")(x)
    x = layers.MaxPooling2D(pool_size=(2, 2), strides=2)(x)
    x = layers.Conv2D(32, (5, 5), padding="valid", activation=None)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(64, activation="relu")(x)
    outputs = layers.Dense(num_classes)(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="himax_we1_mnist")
