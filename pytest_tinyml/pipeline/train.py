"""Model loading and seeded training. TensorFlow/Keras are imported inside the functions only.

Determinism: ``keras.utils.set_random_seed(seed)`` + ``tf.config.experimental.enable_op_determinism()`` and
``keras.backend.clear_session()`` before each model is built (auto-generated layer names otherwise change
the converted bytes).

BatchNormalization: with few training steps the moving statistics lag behind the weights (NOTES: 3 epochs on
4,000 MNIST images gave 0.95 train but 0.81 test accuracy). After every epoch the moving mean and variance of
each BatchNormalization layer are recomputed exactly over the training images ("precise BN"), layer by layer,
before the validation accuracy is measured, so early stopping and the saved model both use honest statistics.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_tinyml._util.imports import FunctionNotFound, import_function
from pytest_tinyml.errors import BuildError
from pytest_tinyml.options import quiet_tensorflow

if TYPE_CHECKING:
    from pytest_tinyml.pipeline.datasets import Dataset
    from pytest_tinyml.spec.model import Spec, TrainingSpec

Progress = Callable[[str], None] | None

quiet_tensorflow()


def search_paths(spec: Spec) -> list[Path]:
    """Where user modules (builders, loaders) are looked for besides ``sys.path``: the current directory,
    the spec's directory and its parent (so ``specs/x.yaml`` can name ``models.x:build`` at the repo root)."""
    base = Path(spec.path).resolve().parent
    return [Path.cwd(), base, base.parent]


def seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # already enabled / not available: determinism is best effort then
        pass


def _is_keras_model(obj: Any) -> bool:
    for module in ("keras", "tf_keras"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        if isinstance(obj, mod.Model):
            return True
    return False


def import_builder(spec: Spec) -> Callable[..., Any]:
    ref = spec.model
    module_name, _, func_name = ref.value.partition(":")
    where = spec.where("model", "builder")
    try:
        return import_function(ref.value, search_paths(spec))
    except FunctionNotFound:
        raise BuildError(f"module {module_name!r} has no function {func_name!r}", where=where,
                         fix=f"define {func_name}() in {module_name} or name another function") from None
    except ImportError as exc:
        raise BuildError(f"cannot import builder module {module_name!r}: {exc}", where=where,
                         fix="check the module path; builders are searched in sys.path, the current directory, "
                             "the spec's directory and its parent") from None
    except Exception as exc:
        raise BuildError(f"importing builder module {module_name!r} failed: {type(exc).__name__}: {exc}",
                         where=where, fix="fix the error in the builder module") from None


def builder_accepts_keras_module(func: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
    return "keras_module" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def call_builder(spec: Spec, func: Callable[..., Any], **extra: Any) -> Any:
    ref = spec.model
    try:
        model = func(**ref.args, **extra)
    except TypeError as exc:
        raise BuildError(f"builder {ref.value} rejected its arguments: {exc}", where=spec.where("model", "args"),
                         fix="match model.args to the builder's parameters") from None
    except Exception as exc:
        raise BuildError(f"builder {ref.value} raised {type(exc).__name__}: {exc}", where=spec.where("model", "builder"),
                         fix="fix the builder") from None
    if not _is_keras_model(model):
        raise BuildError(f"builder {ref.value} returned {type(model).__name__}, not a Keras model",
                         where=spec.where("model", "builder"), fix="return a keras.Model")
    return model


def load_keras_file(spec: Spec) -> Any:
    """Load a .keras/.h5 file in Keras safe mode: a model file never executes code."""
    import keras

    ref = spec.model
    path = ref.path or Path(ref.value)
    where = spec.where("model", "keras")
    try:
        return keras.models.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:
        text = str(exc)
        if "Lambda" in text or "lambda" in text or "safe_mode" in text:
            raise BuildError(
                f"{path} contains a Lambda layer (Python code); pytest-tinyml loads models in Keras safe mode and "
                "never runs code from a model file",
                where=where, fix="replace the Lambda layer by a built-in or registered layer, or use a builder",
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise BuildError(f"cannot load Keras model {path}: {first}", where=where,
                         fix="save it with model.save('model.keras') from Keras 3") from None


def check_input_shape(spec: Spec, model: Any, data: Dataset) -> None:
    shape = tuple(model.inputs[0].shape[1:])
    if len(model.inputs) != 1:
        raise BuildError(f"the model has {len(model.inputs)} inputs; pytest-tinyml builds single-input models",
                         where=spec.where("model"))
    want = data.input_shape
    if len(shape) != len(want) or any(s is not None and s != w for s, w in zip(shape, want, strict=False)):
        raise BuildError(
            f"dataset {data.name!r} gives images of shape {want} but the model expects {shape}",
            where=spec.where("dataset", "name"), fix="choose the dataset the model was built for, or change the model input",
        )
    out = model.outputs[0].shape[-1]
    if out is not None and out < data.num_classes:
        raise BuildError(f"the model has {out} outputs but dataset {data.name!r} has {data.num_classes} classes",
                         where=spec.where("model"), fix="make the last layer as wide as the number of classes")


def last_layer_is_probability(model: Any) -> bool:
    layer = model.layers[-1]
    act = getattr(layer, "activation", None)
    name = getattr(act, "__name__", str(act) if act is not None else "")
    if type(layer).__name__ == "Softmax":
        return True
    return name in ("softmax", "sigmoid")


def make_optimizer(keras: Any, tr: TrainingSpec) -> Any:
    classes = {"adam": keras.optimizers.Adam, "sgd": keras.optimizers.SGD, "rmsprop": keras.optimizers.RMSprop}
    cls = classes[tr.optimizer]
    return cls(learning_rate=tr.learning_rate) if tr.learning_rate is not None else cls()


def compile_model(keras: Any, model: Any, tr: TrainingSpec) -> bool:
    from_logits = tr.loss_from_logits if tr.loss_from_logits is not None else not last_layer_is_probability(model)
    model.compile(
        optimizer=make_optimizer(keras, tr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=["accuracy"],
    )
    return from_logits


def _bn_layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]


def recalibrate_batchnorm(model: Any, x: np.ndarray, batch_size: int = 256) -> int:
    """Set each BatchNormalization layer's moving statistics to the exact mean/variance of its input over
    ``x`` (inference mode, earlier layers already recalibrated). Returns the number of layers updated."""
    import keras

    layers = _bn_layers(model)
    if not layers:
        return 0
    try:
        outputs = [layer.input for layer in layers]
        probe = keras.Model(model.inputs[0], outputs if len(outputs) > 1 else outputs[0])
    except Exception:  # not a functional graph (subclassed model): keep Keras' moving averages
        return 0
    for i, layer in enumerate(layers):
        axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
        total = None
        total_sq = None
        count = 0
        for start in range(0, len(x), batch_size):
            outs = probe(x[start : start + batch_size], training=False)
            a = np.asarray(outs[i] if len(layers) > 1 else outs, dtype=np.float64)
            a = np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])
            s, s2 = a.sum(axis=0), (a * a).sum(axis=0)
            total = s if total is None else total + s
            total_sq = s2 if total_sq is None else total_sq + s2
            count += a.shape[0]
        assert total is not None and total_sq is not None
        mean = total / count
        var = np.maximum(total_sq / count - mean * mean, 0.0)
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(var.astype(np.float32))
    return len(layers)


def _augmenter(keras: Any, augment: dict[str, Any], seed: int) -> Any | None:
    layers = keras.layers
    steps = []
    if augment.get("flip"):
        steps.append(layers.RandomFlip("horizontal", seed=seed))
    if augment.get("rotation"):
        steps.append(layers.RandomRotation(float(augment["rotation"]) / 360.0, seed=seed + 1))
    if augment.get("shift"):
        s = float(augment["shift"])
        steps.append(layers.RandomTranslation(s, s, seed=seed + 2))
    if augment.get("zoom"):
        steps.append(layers.RandomZoom(float(augment["zoom"]), seed=seed + 3))
    return keras.Sequential(steps) if steps else None


def _accuracy(model: Any, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    pred = predict_classes(model, x)
    return (float(np.mean(pred == y) * 100.0) if len(y) else 0.0), pred


def train(spec: Spec, model: Any, data: Dataset, progress: Progress = None) -> dict[str, Any]:
    """Compile and fit ``model`` on ``data`` following ``spec.training``. Returns a summary dict."""
    import keras
    import tensorflow as tf

    tr = spec.training
    from_logits = compile_model(keras, model, tr)
    augment = dict(spec.dataset.augment) if spec.dataset is not None else {}
    aug = _augmenter(keras, augment, tr.seed)
    has_bn = bool(_bn_layers(model))
    patience = tr.early_stopping
    best_acc = -1.0
    best_epoch = 0
    best_weights = None
    history: list[dict[str, float]] = []
    wait = 0
    x, y = data.x_train, data.y_train
    rng = np.random.default_rng(tr.seed)
    for epoch in range(1, tr.epochs + 1):
        t0 = time.perf_counter()
        if aug is None:
            h = model.fit(x, y, batch_size=tr.batch_size, epochs=1, shuffle=True, verbose=0)
        else:
            order = rng.permutation(len(x))
            ds = tf.data.Dataset.from_tensor_slices((x[order], y[order])).batch(tr.batch_size)
            ds = ds.map(lambda a, b: (aug(a, training=True), b))
            h = model.fit(ds, epochs=1, verbose=0)
        if has_bn:
            recalibrate_batchnorm(model, x)
        val_acc, _ = _accuracy(model, data.x_val, data.y_val)
        loss = float(h.history["loss"][-1])
        acc = float(h.history.get("accuracy", [float("nan")])[-1]) * 100.0
        history.append({"epoch": epoch, "loss": loss, "accuracy": acc, "val_accuracy": val_acc})
        if progress is not None:
            progress(f"epoch {epoch}/{tr.epochs}: loss {loss:.4f}, train {acc:.1f}%, val {val_acc:.1f}% "
                     f"({time.perf_counter() - t0:.1f} s)")
        if val_acc > best_acc:
            best_acc, best_epoch, wait = val_acc, epoch, 0
            best_weights = model.get_weights() if patience > 0 else None
        else:
            wait += 1
            if patience > 0 and wait >= patience:
                if progress is not None:
                    progress(f"early stop: no val accuracy gain for {patience} epochs; keeping epoch {best_epoch}")
                break
    if best_weights is not None and best_epoch != history[-1]["epoch"]:
        model.set_weights(best_weights)
    return {"from_logits": from_logits, "history": history, "best_epoch": best_epoch, "val_accuracy": best_acc,
            "batchnorm_recalibrated": has_bn}


def predict_classes(model: Any, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Predicted class per image (int16) of a Keras model in inference mode."""
    if not len(x):
        return np.zeros(0, dtype=np.int16)
    parts = [np.argmax(np.asarray(model(x[i : i + batch_size], training=False)), axis=-1) for i in range(0, len(x), batch_size)]
    return np.concatenate(parts).astype(np.int16)
