"""Seeds 002/003 (TensorFlow Lite compression of a Fashion-MNIST / MNIST classifier).

The seeds import ``Flatten``, ``Dense`` and ``SparseCategoricalCrossentropy`` and stop before showing the
model; this is the classic model those imports build: Flatten - Dense 128 ReLU - Dense 10 (logits), on
28x28x1 images scaled to [0, 1] (``preprocess: x/255``). 101,770 parameters.
"""

from __future__ import annotations

from typing import Any

from models import get_keras


def build(hidden_units: int = 128, num_classes: int = 10, keras_module: Any = None) -> Any:
    keras = get_keras(keras_module)
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Flatten()(inputs)
    x = layers.Dense(hidden_units, activation="relu")(x)
    outputs = layers.Dense(num_classes)(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="fashion_mnist_mlp")
