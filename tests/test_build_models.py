"""The seed builders in models/: architectures and parameter counts (Keras 3 and tf_keras)."""

from __future__ import annotations

import pytest

pytest.importorskip("keras")


@pytest.mark.parametrize(
    ("module", "params"),
    [("mnist_cnn", 35_210), ("himax_we1", 16_842), ("fashion_mnist", 101_770), ("svhn_cnn", 805_802)],
)
def test_builder_parameter_counts(module: str, params: int) -> None:
    import importlib

    build = importlib.import_module(f"models.{module}").build
    model = build()
    assert model.count_params() == params
    assert model.outputs[0].shape[-1] == 10


def test_mnist_cnn_matches_seed_001_layers() -> None:
    from models.mnist_cnn import build

    model = build()
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds == ["InputLayer", "Conv2D", "BatchNormalization", "Activation", "MaxPooling2D", "Conv2D",
                     "BatchNormalization", "Activation", "MaxPooling2D", "Flatten", "Dropout", "Dense"]
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    assert trainable == 35_018  # seed 001: 35,018 trainable + 192 non-trainable (BN moving statistics)


def test_tf_keras_build_has_identical_weights_layout() -> None:
    pytest.importorskip("tf_keras")
    import tf_keras

    from models.mnist_cnn import build

    k3 = build()
    legacy = build(keras_module="tf_keras")
    assert isinstance(legacy, tf_keras.Model)
    assert [w.shape for w in legacy.get_weights()] == [w.shape for w in k3.get_weights()]


def test_models_package_import_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, models.mnist_cnn, models.svhn_cnn, models.himax_we1, models.fashion_mnist; " \
           "print(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
