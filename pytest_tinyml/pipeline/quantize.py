"""Conversion with the real ``tf.lite.TFLiteConverter``. TensorFlow is imported inside the functions only.

Keras models are converted from a batch-1 concrete function (NOTES: a dynamic batch with ``Flatten`` adds
SHAPE / STRIDED_SLICE / PACK ops; batch 1 gives a clean CONV_2D / MAX_POOL_2D / RESHAPE / FULLY_CONNECTED
graph and a smaller file). Modes:

- ``float32``: no optimization.
- ``float16``: weights stored as float16 (``supported_types = [tf.float16]``), float I/O.
- ``dynamic_range``: int8 weights, float activations and I/O (a hybrid model: TFLM cannot run it).
- ``int8``: full-integer post-training quantization with ``representative_samples`` training images,
  ``TFLITE_BUILTINS_INT8`` only, int8 input and output.
- ``qat``: quantization-aware training with tensorflow-model-optimization on a tf_keras copy of the trained
  model (``qat_epochs`` of fine-tuning), then int8 conversion with int8 input and output.

QAT fine-tunes at 1 % of the training learning rate (:data:`QAT_LR_FRACTION`). The model it starts from has
converged, and a fresh Adam optimizer at the from-scratch rate (1e-3) takes steps of about the learning rate
on every weight from the first batch on: on seed 001's CNN that knocked the model out of its minimum (QAT
loss after one epoch 0.034 against the float model's 0.015, validation accuracy 97.25 -> 95.75 %) and the
int8 model ended 0.9 points below float while post-training int8 lost nothing. In two epochs at 1e-3 the
kernels moved by a median 2.4 to 4.3 int8 steps (up to 48): retraining, not fine-tuning. At 1e-5 they move by
a fraction of a step (median 0.3 to 0.6, at most 0.9), enough to settle into the quantization grid, and QAT
matched or beat post-training int8 on three training seeds (README, *Quantization-aware training*).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_tinyml.errors import BuildError, NotEvaluable

if TYPE_CHECKING:
    from pathlib import Path

    from pytest_tinyml.pipeline.datasets import Dataset
    from pytest_tinyml.spec.model import Spec

QAT_LR_FRACTION = 0.01  # QAT fine-tuning rate / training rate (see the module docstring)
Progress = Callable[[str], None] | None


def representative_images(spec: Spec, data: Dataset) -> np.ndarray:
    """The first ``representative_samples`` training images (BuildError if there are fewer)."""
    n = spec.quantization.representative_samples
    available = len(data.x_train)
    if n > available:
        raise BuildError(
            f"quantization.representative_samples is {n} but the training split has only {available} images",
            where=spec.where("quantization", "representative_samples"),
            fix=f"use at most {available} (or more data: dataset.limit / dataset.validation)",
        )
    return data.x_train[:n]


def _batch1_function(model: Any, input_shape: tuple[int, ...]) -> Any:
    import tensorflow as tf

    dtype = model.inputs[0].dtype
    dtype = getattr(dtype, "name", dtype) or "float32"

    @tf.function
    def serve(x: Any) -> Any:
        return model(x, training=False)

    return serve.get_concrete_function(tf.TensorSpec([1, *input_shape], tf.as_dtype(dtype)))


def _configure(converter: Any, mode: str, rep: np.ndarray | None) -> None:
    import tensorflow as tf

    if mode == "float32":
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode in ("int8", "qat"):
        if rep is not None:
            samples = rep.astype(np.float32)

            def gen() -> Iterator[list[np.ndarray]]:
                for i in range(len(samples)):
                    yield [samples[i : i + 1]]

            converter.representative_dataset = gen
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the converter's Python-side chatter (absl deprecation note, calibration UserWarning)."""
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        absl.setLevel(level)


def _run(converter: Any, what: str, where: str) -> bytes:
    try:
        with _quiet():
            return bytes(converter.convert())
    except Exception as exc:
        text = str(exc).strip()
        lines = [ln.strip() for ln in text.splitlines() if "error" in ln.lower()] or text.splitlines() or [type(exc).__name__]
        raise BuildError(f"TFLiteConverter failed for {what}: {lines[0][:400]}", where=where,
                         fix="use built-in layers that TFLite supports, or another quantization mode") from None


def convert_keras(model: Any, mode: str, *, input_shape: tuple[int, ...], rep: np.ndarray | None, where: str) -> bytes:
    """Convert a Keras model (Keras 3 or tf_keras) in one of float32, float16, dynamic_range, int8."""
    import tensorflow as tf

    if mode not in ("float32", "float16", "dynamic_range", "int8"):
        raise ValueError(mode)
    fn = _batch1_function(model, input_shape)
    with _quiet():
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn])
    _configure(converter, mode, rep if mode == "int8" else None)
    return _run(converter, f"mode {mode}", where)


def convert_saved_model(path: Path, mode: str, *, rep: np.ndarray | None, where: str) -> bytes:
    """Convert a SavedModel directory (e.g. from ``model.export()``) in any mode except qat."""
    import tensorflow as tf

    if mode == "qat":
        raise NotEvaluable("quantization-aware training needs a Keras model to fine-tune, not a SavedModel",
                           "use a builder (model.builder) for mode qat")
    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(path))
    except Exception as exc:
        raise BuildError(f"cannot read SavedModel {path}: {str(exc).strip().splitlines()[0][:300]}", where=where,
                         fix="export it with model.export(dir) from Keras") from None
    _configure(converter, mode, rep if mode == "int8" else None)
    return _run(converter, f"mode {mode} of SavedModel {path}", where)


def _tf_keras_copy(spec: Spec, trained: Any, builder: Callable[..., Any] | None) -> Any:
    """The trained model rebuilt with tf_keras (same builder, keras_module='tf_keras') with its weights."""
    from pytest_tinyml.pipeline.train import builder_accepts_keras_module

    if builder is None or not builder_accepts_keras_module(builder):
        raise NotEvaluable(
            "quantization-aware training needs the model built with tf_keras (tensorflow-model-optimization "
            "rejects Keras 3 models) and this model's builder has no keras_module parameter",
            "give the builder a keras_module=None parameter and build with it (see models/__init__.py)",
        )
    import tf_keras

    tf_keras.backend.clear_session()
    tf_keras.utils.set_random_seed(spec.training.seed)
    try:
        copy = builder(**spec.model.args, keras_module=tf_keras)
    except Exception as exc:
        raise NotEvaluable(f"the builder failed with keras_module=tf_keras: {type(exc).__name__}: {exc}",
                           "make the builder work with tf_keras") from None
    weights = trained.get_weights()
    mine = copy.get_weights()
    if len(weights) != len(mine) or any(a.shape != b.shape for a, b in zip(weights, mine, strict=True)):
        raise NotEvaluable("the tf_keras build of the model does not have the same weights as the Keras 3 build",
                           "make the builder produce the same layers for both Keras modules")
    copy.set_weights(weights)
    return copy


def qat_learning_rate(optimizer: Any, training_rate: float | None) -> float:
    """The QAT fine-tuning rate: :data:`QAT_LR_FRACTION` of the training rate, or of ``optimizer``'s default
    rate when the spec leaves ``training.learning_rate`` unset (Adam and RMSprop 1e-3, SGD 1e-2)."""
    if training_rate is None:
        import inspect

        default = inspect.signature(optimizer.__init__).parameters["learning_rate"].default
        training_rate = float(default) if isinstance(default, (int, float)) else 1e-3
    return float(training_rate) * QAT_LR_FRACTION


def convert_qat(spec: Spec, trained: Any, builder: Callable[..., Any] | None, data: Dataset,
                progress: Progress = None) -> tuple[bytes, dict[str, Any]]:
    """Fine-tune a quantization-aware copy of ``trained`` for ``qat_epochs`` and convert it to int8."""
    import tensorflow as tf

    copy = _tf_keras_copy(spec, trained, builder)
    try:
        import tensorflow_model_optimization as tfmot
        import tf_keras
    except Exception as exc:
        raise NotEvaluable(f"tensorflow-model-optimization does not import: {type(exc).__name__}: {exc}",
                           "pip install tensorflow-model-optimization tf-keras") from None
    from pytest_tinyml.pipeline.train import last_layer_is_probability

    try:
        qmodel = tfmot.quantization.keras.quantize_model(copy)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise NotEvaluable(f"tensorflow-model-optimization cannot quantize this model: {first}",
                           "use mode int8 (post-training) or layers tfmot supports") from None
    tr = spec.training
    opt = {"adam": tf_keras.optimizers.Adam, "sgd": tf_keras.optimizers.SGD, "rmsprop": tf_keras.optimizers.RMSprop}[tr.optimizer]
    learning_rate = qat_learning_rate(opt, tr.learning_rate)
    from_logits = tr.loss_from_logits if tr.loss_from_logits is not None else not last_layer_is_probability(copy)
    qmodel.compile(optimizer=opt(learning_rate=learning_rate),
                   loss=tf_keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
    history = []
    for epoch in range(1, spec.quantization.qat_epochs + 1):
        h = qmodel.fit(data.x_train, data.y_train, batch_size=tr.batch_size, epochs=1, shuffle=True, verbose=0,
                       validation_data=(data.x_val, data.y_val))
        val = float(h.history["val_accuracy"][-1]) * 100.0
        history.append({"epoch": epoch, "loss": float(h.history["loss"][-1]), "val_accuracy": val})
        if progress is not None:
            progress(f"qat epoch {epoch}/{spec.quantization.qat_epochs} (learning rate {learning_rate:g}): "
                     f"loss {h.history['loss'][-1]:.4f}, val {val:.1f}%")
    fn = _batch1_function(qmodel, data.input_shape)
    with _quiet():
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], qmodel)
    # TFLITE_BUILTINS_INT8 needs a representative dataset even though the fake-quant ranges learnt in
    # training decide the quantization; it keeps the model integer-only
    _configure(converter, "qat", representative_images(spec, data))
    try:
        with _quiet():
            blob = bytes(converter.convert())
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise NotEvaluable(f"converting the quantization-aware model failed: {first}",
                           "use mode int8 (post-training quantization)") from None
    return blob, {"qat_history": history, "learning_rate": learning_rate}


def save_keras(model: Any, path: Path) -> None:
    """Save a Keras 3 model atomically (``.keras`` zip)."""
    fd, tmp = tempfile.mkstemp(suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
