"""Seed 000 (SVHN digit CNN for a microcontroller): 32x32x3 street-view digits, 10 classes.

The seed's snippet is a sketch: Conv2D 32 4x4 ReLU - MaxPool 2 - Dense 128 ReLU - Dense(2, sigmoid), with
no Flatten (so its Dense layers would act per pixel) and two sigmoid outputs for a two-class example. SVHN
has ten digit classes, so this builder keeps the seed's layers, adds the Flatten a classifier needs and ends
in Dense(10) logits (trained with a from-logits loss). ``dense_units`` sets the width of the hidden layer;
the default 128 is the seed's.
"""

from __future__ import annotations

from typing import Any

from models import get_keras


def build(dense_units: int = 128, num_classes: int = 10, keras_module: Any = None) -> Any:
    keras = get_keras(keras_module)
    layers = keras.layers
    inputs = keras.Input(shape=(32, 32, 3))
    x = layers.Conv2D(32, (4, 4), activation="relu")(inputs)
    x = layers.MaxPooling2D((2, 2))(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense_units, activation="relu")(x)
    outputs = layers.Dense(num_classes)(x)
    return keras.Model(inputs=inputs, outputs=outputs, name="svhn_cnn")
