"""Seed 001 (Efficient Deep Learning, chapter 2): the MNIST CNN with 35,210 parameters.

Conv2D 32 3x3 - BatchNorm - ReLU - MaxPool 2 - Conv2D 64 3x3 - BatchNorm - ReLU - MaxPool 2 - Flatten -
Dropout - Dense 10 (logits). Input 28x28x1 scaled to [-1, 1] (``preprocess: x/127.5-1``).
"""

from __future__ import annotations

from typing import Any

from models import get_keras


def build(dropout_rate: float = 0.0, num_classes: int = 10, keras_module: Any = None) -> Any:
    keras = get_keras(keras_module)
    layers = keras.layers
    inputs = keras.Input(shape=(28, 28, 1))
    x = inputs
    for filters in (32, 64):
        x = layers.Conv2D(filters, (3, 3))(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        x = layers.MaxPooling2D(pool_size=(2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(dropout_rate)(x)
    outputs = layers.Dense(num_classes)(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="mnist_cnn")
