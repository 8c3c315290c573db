"""Build a spec's artifacts: dataset -> (train) -> convert per quantization mode -> cache; evaluate accuracy.

Nothing heavy is imported at module level; TensorFlow is imported only when a build has to train or
convert, never on a cached run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml._util.jsonsafe import jsonsafe
from pytest_tinyml.errors import BuildError, DatasetError, NotEvaluable

if TYPE_CHECKING:
    import numpy as np

    from pytest_tinyml.pipeline.datasets import Dataset
    from pytest_tinyml.pipeline.evaluate import AccuracyReport
    from pytest_tinyml.spec.model import ModelRef, Spec

Progress = Callable[[str], None] | None
ENTRY_RESULTS = "results.json"
FLOAT_PRED = "float_pred.npy"
KERAS_FILE = "model.keras"


@dataclass
class BuildResult:
    key: str
    entry_dir: Path
    tflite: dict[str, Path]  # mode -> .tflite file, for every mode that was built
    keras_path: Path | None
    float_accuracy: float | None  # percent, on the test split
    dataset_checksum: str
    from_cache: bool
    log: list[str] = field(default_factory=list)
    skipped: dict[str, tuple[str, str]] = field(default_factory=dict)  # mode -> (reason, enable) e.g. qat
    cache_dir: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)  # training summary, timings, dataset info, versions

    def tflite_path(self, mode: str) -> Path:
        """The file for ``mode``; raises NotEvaluable for a mode that could not be built here."""
        if mode in self.tflite:
            return self.tflite[mode]
        if mode in self.skipped:
            reason, enable = self.skipped[mode]
            raise NotEvaluable(reason, enable)
        raise KeyError(f"mode {mode!r} was not built (modes: {', '.join(self.tflite)})")


# ------------------------------------------------------------------------------------------------------
# datasets (memoized per process: a session loads a spec's data once)

_DATASETS: dict[tuple[str, tuple[tuple[str, Any], ...]], Dataset] = {}


def _dataset_memo_key(spec: Spec, cache_dir: Path,
                      extra_loaders: Mapping[str, Any] | None) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """The dataset part of the spec, the directories, and the loaders themselves (held by the memo, so a
    loader's identity is never mistaken for another's)."""
    assert spec.dataset is not None
    text = json.dumps([jsonsafe(spec.dataset, structure_only=True), str(Path(cache_dir).resolve()),
                       str(Path(spec.path).resolve())], sort_keys=True, default=str)
    return text, tuple(sorted((extra_loaders or {}).items(), key=lambda item: item[0]))


def get_dataset(spec: Spec, cache_dir: Path, extra_loaders: Mapping[str, Any] | None = None) -> Dataset:
    from pytest_tinyml.pipeline import datasets
    from pytest_tinyml.pipeline.train import search_paths

    if spec.dataset is None:
        raise DatasetError("this spec has no dataset", where=spec.where("dataset"), fix="add a 'dataset:' section")
    key: tuple[str, tuple[tuple[str, Any], ...]] | None = _dataset_memo_key(spec, cache_dir, extra_loaders)
    try:
        hit = _DATASETS.get(key) if key is not None else None
    except TypeError:  # a loader that cannot be hashed: load without the memo
        key, hit = None, None
    if hit is None:
        hit = datasets.load_dataset(spec.dataset, Path(cache_dir), extra_loaders, search=search_paths(spec),
                                    where=spec.where)
        if key is not None:
            _DATASETS[key] = hit
    return hit


def load_test_split(spec: Spec, cache_dir: Path, *, extra_loaders: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x_test float32 preprocessed, y_test int64) of a spec's dataset."""
    data = get_dataset(spec, cache_dir, extra_loaders)
    return data.x_test, data.y_test


# ------------------------------------------------------------------------------------------------------
# building


def _result_from_entry(key: str, entry: Path, manifest: dict[str, Any], cache_dir: Path, from_cache: bool) -> BuildResult:
    results = json.loads((entry / ENTRY_RESULTS).read_text())
    tflite = {mode: entry / f"{mode}.tflite" for mode in results.get("modes", []) if (entry / f"{mode}.tflite").is_file()}
    keras_path = entry / KERAS_FILE if (entry / KERAS_FILE).is_file() else None
    skipped = {m: (r[0], r[1]) for m, r in results.get("skipped", {}).items()}
    log = list(results.get("log", []))
    if from_cache:
        log = [f"cached build {key[:12]} (built {time.strftime('%Y-%m-%d %H:%M', time.localtime(manifest.get('created', 0)))})"]
    return BuildResult(
        key=key, entry_dir=entry, tflite=tflite, keras_path=keras_path, float_accuracy=results.get("float_accuracy"),
        dataset_checksum=results["dataset_checksum"], from_cache=from_cache, log=log, skipped=skipped,
        cache_dir=cache_dir, info=results.get("info", {}),
    )


def build_artifacts(
    spec: Spec,
    *,
    cache_dir: Path,
    rebuild: bool = False,
    progress: Progress = None,
    extra_loaders: Mapping[str, Callable[..., Any]] | None = None,
    load_model: Callable[[ModelRef, Spec], Any] | None = None,
) -> BuildResult:
    """Train (builders) or load (keras / saved_model) the spec's model and convert it in every mode.

    Results are cached under ``cache_dir`` by content hash; a cached call does not import TensorFlow.
    A mode that cannot be built in this environment (e.g. qat without tf_keras support) is listed in
    ``BuildResult.skipped`` with the reason; ``BuildResult.tflite_path(mode)`` raises NotEvaluable for it.
    """
    from pytest_tinyml.pipeline.build_key import build_key
    from pytest_tinyml.pipeline.cache import Cache
    from pytest_tinyml.pipeline.train import search_paths

    if not spec.builds:
        raise BuildError("the model is a .tflite file: there is nothing to build", where=spec.where("model", "tflite"))
    cache_dir = Path(cache_dir)
    t0 = time.perf_counter()
    data = get_dataset(spec, cache_dir, extra_loaders)
    key, inputs = build_key(spec, dataset_checksum=data.checksum, search=search_paths(spec))
    cache = Cache(cache_dir)
    if not rebuild:
        manifest = cache.verify(key)
        if manifest is not None:
            return _result_from_entry(key, cache.entry_dir(key), manifest, cache_dir, True)
    def on_wait() -> None:
        if progress is not None:
            progress(f"waiting for another process that is building {key[:12]}")

    with cache.locked(key, on_wait) as waited:
        manifest = cache.verify(key)
        if manifest is not None and (not rebuild or waited):
            return _result_from_entry(key, cache.entry_dir(key), manifest, cache_dir, True)
        if progress is not None and not rebuild and cache.entry_dir(key).exists():
            progress(f"cache entry {key[:12]} is incomplete or corrupted: rebuilding")
        staging = cache.new_staging(key)
        try:
            results = _build_into(staging, spec, data, progress, load_model)
            results["dataset_checksum"] = data.checksum
            results["info"]["build_seconds"] = round(time.perf_counter() - t0, 2)
            results["info"]["key_inputs"] = inputs
            (staging / ENTRY_RESULTS).write_text(json.dumps(results, indent=1, sort_keys=True, default=str))
            manifest = cache.commit(key, staging, {"spec": str(spec.path), "name": spec.name})
        except BaseException:
            cache.discard(staging)
            raise
        return _result_from_entry(key, cache.entry_dir(key), manifest, cache_dir, False)


def _build_into(staging: Path, spec: Spec, data: Dataset, progress: Progress,
                load_model_hook: Callable[[ModelRef, Spec], Any] | None) -> dict[str, Any]:
    import numpy as np

    from pytest_tinyml.pipeline import quantize, train

    log: list[str] = []

    def say(line: str) -> None:
        log.append(line)
        if progress is not None:
            progress(line)

    timings: dict[str, float] = {}
    info: dict[str, Any] = {"dataset": {"name": data.name, "train": len(data.x_train), "val": len(data.x_val),
                                        "test": len(data.x_test), "num_classes": data.num_classes,
                                        "input_shape": list(data.input_shape), "source": data.info.get("source"),
                                        "files": data.info.get("files"), "input_int8_params": data.input_int8_params}}
    modes = list(spec.quantization.modes)
    skipped: dict[str, tuple[str, str]] = {}
    built: list[str] = []
    float_accuracy: float | None = None
    rep = None
    if any(m in ("int8", "qat") for m in modes):
        rep = quantize.representative_images(spec, data)
    where_q = spec.where("quantization")

    if spec.model.kind == "saved_model":
        assert spec.model.path is not None
        saved_model = spec.model.path
        _convert_modes(
            staging, modes, lambda mode: quantize.convert_saved_model(saved_model, mode, rep=rep, where=where_q),
            say, skipped, built, timings,
        )
        from pytest_tinyml.pipeline import evaluate

        float_blob = (staging / "float32.tflite").read_bytes() if "float32" in built else \
            quantize.convert_saved_model(spec.model.path, "float32", rep=None, where=where_q)
        float_pred = evaluate.run_litert(float_blob, data.x_test)
        _check_pred_range(spec, float_pred, data)
        np.save(staging / FLOAT_PRED, float_pred)
        float_accuracy = float(np.mean(float_pred == data.y_test) * 100.0)
        info["float_reference"] = "float32 conversion of the SavedModel (LiteRT)"
    else:
        t = time.perf_counter()
        train.seed_everything(spec.training.seed)
        timings["import_tensorflow"] = round(time.perf_counter() - t, 2)
        builder = None
        model = None
        if load_model_hook is not None:
            model = load_model_hook(spec.model, spec)
            if model is not None and not train._is_keras_model(model):
                raise BuildError(f"the pytest_tinyml_load_model hook returned {type(model).__name__}, not a Keras model",
                                 where=spec.where("model"), fix="return a keras.Model or None")
        if model is None:
            if spec.model.kind == "builder":
                builder = train.import_builder(spec)
                model = train.call_builder(spec, builder)
            else:
                model = train.load_keras_file(spec)
        train.check_input_shape(spec, model, data)
        say(f"model {model.name}: {model.count_params():,} parameters, input {tuple(model.inputs[0].shape[1:])}")
        if spec.model.kind == "builder":
            t = time.perf_counter()
            say(f"training on {len(data.x_train):,} images ({len(data.x_val):,} validation), "
                f"up to {spec.training.epochs} epochs, batch {spec.training.batch_size}")
            info["training"] = train.train(spec, model, data, say)
            timings["train"] = round(time.perf_counter() - t, 2)
        float_pred = train.predict_classes(model, data.x_test)
        _check_pred_range(spec, float_pred, data)
        np.save(staging / FLOAT_PRED, float_pred)
        float_accuracy = float(np.mean(float_pred == data.y_test) * 100.0)
        say(f"float accuracy {float_accuracy:.2f}% on {len(data.y_test):,} test images")
        quantize.save_keras(model, staging / KERAS_FILE)
        def convert(mode: str) -> bytes:
            if mode == "qat":
                blob, extra = quantize.convert_qat(spec, model, builder, data, say)
                info["qat"] = extra
                return blob  # type: ignore[no-any-return]
            return quantize.convert_keras(  # type: ignore[no-any-return]
                model, mode, input_shape=data.input_shape, rep=rep if mode == "int8" else None, where=where_q
            )

        _convert_modes(staging, modes, convert, say, skipped, built, timings)
    from pytest_tinyml.pipeline.build_key import library_versions

    info["timings"] = timings
    info["versions"] = library_versions()
    return {"modes": built, "skipped": skipped, "float_accuracy": float_accuracy, "log": log, "info": info}


def _convert_modes(
    staging: Path,
    modes: list[str],
    convert: Callable[[str], bytes],
    say: Callable[[str], None],
    skipped: dict[str, tuple[str, str]],
    built: list[str],
    timings: dict[str, Any],
) -> None:
    """Convert every mode into ``staging/<mode>.tflite``; a mode this environment cannot build is skipped
    with its reason (``NotEvaluable``), the others still build."""
    for mode in modes:
        t = time.perf_counter()
        try:
            blob = convert(mode)
        except NotEvaluable as exc:
            skipped[mode] = (exc.reason, exc.enable)
            say(f"{mode}: not built ({exc.reason})")
            continue
        (staging / f"{mode}.tflite").write_bytes(blob)
        built.append(mode)
        timings[f"convert_{mode}"] = round(time.perf_counter() - t, 2)
        say(f"{mode}: {len(blob):,} bytes ({time.perf_counter() - t:.1f} s)")


def _check_pred_range(spec: Spec, pred: np.ndarray, data: Dataset) -> None:
    if len(pred) and int(pred.max()) >= 10_000:
        raise BuildError("the model output is not a class score vector", where=spec.where("model"))


# ------------------------------------------------------------------------------------------------------
# evaluation


def evaluate_accuracy(
    spec: Spec,
    build: BuildResult,
    mode: str,
    *,
    cache_dir: Path,
    stages: tuple[str, ...] | list[str] = ("litert",),
    progress: Progress = None,
    extra_loaders: Mapping[str, Any] | None = None,
    tflm_timeout: float | None = None,
) -> AccuracyReport:
    """Accuracy of ``mode``'s .tflite on the test split per stage (litert, tflm), paired with the float model.

    Results are cached per (tflite sha256, dataset checksum, stage). A stage that cannot run the model (TFLM
    on a hybrid model, for example) is listed in ``report.unavailable`` with the runtime's reason.
    """
    import numpy as np

    from pytest_tinyml._util.cachefs import sha256_bytes
    from pytest_tinyml.pipeline import evaluate
    from pytest_tinyml.pipeline.cache import Cache

    path = build.tflite_path(mode)
    model = path.read_bytes()
    digest = sha256_bytes(model)
    cache = Cache(Path(cache_dir))
    float_pred = np.load(build.entry_dir / FLOAT_PRED) if (build.entry_dir / FLOAT_PRED).is_file() else None
    y: np.ndarray | None = None
    x: np.ndarray | None = None
    preds: dict[str, np.ndarray] = {}
    unavailable: dict[str, str] = {}
    seconds: dict[str, float] = {}
    all_cached = True
    for stage in stages:
        key = evaluate.eval_key(digest, build.dataset_checksum, stage)
        hit = cache.read_eval(key)
        if hit is not None:
            if hit.get("unavailable"):
                unavailable[stage] = str(hit["unavailable"])
            else:
                preds[stage] = np.asarray(hit["predictions"], dtype=np.int16)
                seconds[stage] = float(hit.get("seconds", 0.0))
            if y is None:
                y = np.asarray(hit["labels"], dtype=np.int64)
            continue
        all_cached = False
        if x is None:
            data = get_dataset(spec, Path(cache_dir), extra_loaders)
            if data.checksum != build.dataset_checksum:
                raise DatasetError("the test split differs from the one the build used (dataset changed since)",
                                   where=spec.where("dataset"), fix="rebuild (--tinyml-rebuild)")
            x, y = data.x_test, data.y_test
        if progress is not None:
            progress(f"accuracy of {mode} with {stage} on {len(x):,} test images")
        assert x is not None and y is not None
        labels = [int(v) for v in y]
        t_stage = time.perf_counter()
        try:
            pred = evaluate.stage_predictions(model, x, stage, tflm_timeout)
        except Exception as exc:
            reason = _runtime_reason(exc)
            if reason is None:
                raise
            unavailable[stage] = reason
            cache.write_eval(key, {"unavailable": reason, "labels": labels})
            continue
        sec = round(time.perf_counter() - t_stage, 3)
        preds[stage] = pred
        seconds[stage] = sec
        cache.write_eval(key, {"predictions": [int(v) for v in pred], "labels": labels, "seconds": sec})
    if y is None:
        _, y = load_test_split(spec, Path(cache_dir), extra_loaders=extra_loaders)
    return evaluate.make_report(mode, y, float_pred, preds, unavailable, list(stages), from_cache=all_cached, seconds=seconds)


def _runtime_reason(exc: Exception) -> str | None:
    """The runtime's own words when a stage cannot run a model (else None: a real bug, re-raised)."""
    name = type(exc).__name__
    if name == "TflmError":
        return str(getattr(exc, "reason", exc))
    if isinstance(exc, BuildError):
        return exc.message
    return None


def test_inputs_int8(spec: Spec, build: BuildResult, mode: str, n: int, *,
                     extra_loaders: Mapping[str, Any] | None = None) -> list[np.ndarray]:
    """The first ``n`` test images, each shaped and typed like ``mode``'s input tensor (batch 1), quantized
    with its own scale / zero point for int8/uint8 inputs (float models get float32 arrays)."""
    from pytest_tinyml.pipeline import evaluate

    model = build.tflite_path(mode).read_bytes()
    cache_dir = build.cache_dir if build.cache_dir is not None else build.entry_dir.parent.parent
    x, _ = load_test_split(spec, cache_dir, extra_loaders=extra_loaders)
    return evaluate.prepare_inputs(model, x[: int(n)])


test_inputs_int8.__test__ = False  # type: ignore[attr-defined]  # not a pytest test despite the name


def load_keras_model(build: BuildResult) -> Any:
    """The trained Keras model of a build (imports Keras; loaded in safe mode from the cache entry)."""
    if build.keras_path is None:
        raise NotEvaluable(
            "this build kept no Keras model (a SavedModel spec is converted directly)",
            "name a builder or a .keras/.h5 model in the spec",
        )
    import keras

    try:
        return keras.models.load_model(build.keras_path, compile=False, safe_mode=True)
    except Exception as exc:  # a custom layer that is not registered, a Keras version change
        raise BuildError(
            f"cannot load the cached Keras model {build.keras_path}: {type(exc).__name__}: {exc}".splitlines()[0],
            fix="register custom layers with keras.saving.register_keras_serializable, or run with --tinyml-rebuild",
        ) from None
