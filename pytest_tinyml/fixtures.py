"""Public fixtures for users' own tests: the selected target, its spec, model files, Keras model, dataset.

Registered as the ``tinyml-fixtures`` plugin by :mod:`pytest_tinyml.plugin`. A test selects its target
with ``@pytest.mark.tinyml(spec=..., mode=...)`` or ``@pytest.mark.tinyml(model=...)``, else the first
``--tinyml-spec``; targets come from the session, made by the same rules as the collected items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_tinyml.errors import NotEvaluable, TinyMLError
from pytest_tinyml.measurements import Measurements
from pytest_tinyml.session import SESSION_KEY, TinyMLSession
from pytest_tinyml.spec.model import Spec


def _target_for(request: pytest.FixtureRequest) -> Measurements:
    tiny: TinyMLSession = request.config.stash[SESSION_KEY]
    marker = request.node.get_closest_marker("tinyml")
    spec_path: str | None = marker.kwargs.get("spec") if marker else None
    mode: str | None = marker.kwargs.get("mode") if marker else None
    model: str | None = marker.kwargs.get("model") if marker else None
    try:
        if model:
            return tiny.model_target(Path(model).resolve())
        if spec_path is None:
            if not tiny.specs:
                pytest.skip("no spec: pass --tinyml-spec PATH or mark the test @pytest.mark.tinyml(spec='specs/x.yaml')")
            spec_file = tiny.specs[0]
        else:
            spec_file = Path(spec_path).resolve()
        targets = tiny.spec_targets(spec_file)
    except TinyMLError as exc:
        pytest.fail(str(exc), pytrace=False)
    if mode is None:
        return targets[0]
    for target in targets:
        if target.mode == mode:
            return target
    modes = ", ".join(str(t.mode) for t in targets)
    pytest.fail(f"@pytest.mark.tinyml(mode={mode!r}): {spec_file} builds no such mode (modes: {modes})", pytrace=False)


def _unwrap(fn: Any) -> Any:
    __tracebackhide__ = True
    try:
        return fn()
    except NotEvaluable as exc:
        pytest.skip(f"{exc.reason}; to enable: {exc.enable}")
    except TinyMLError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def tinyml_measurements(request: pytest.FixtureRequest) -> Measurements:
    """Lazy measurements of the selected target (``@pytest.mark.tinyml(spec=..., mode=...)`` or the first
    ``--tinyml-spec``): ``.tflite_bytes``, ``.model_info``, ``.tflm_allocation``, ``.arena``, ``.accuracy``..."""
    return _target_for(request)


@pytest.fixture
def tinyml_spec(tinyml_measurements: Measurements) -> Spec:
    """The selected spec, validated and typed."""
    if tinyml_measurements.spec is None:
        pytest.skip("the selected target is a bare .tflite with no spec")
    return tinyml_measurements.spec


@pytest.fixture
def tinyml_tflite(tinyml_measurements: Measurements) -> Path:
    """Path of the selected target's ``.tflite`` (built and cached if the spec builds it)."""
    return _unwrap(lambda: tinyml_measurements.tflite_path)


@pytest.fixture
def tinyml_tflite_files(tinyml_measurements: Measurements) -> dict[str, Path]:
    """Every ``.tflite`` the spec builds, by quantization mode."""
    artifacts = tinyml_measurements.artifacts
    if artifacts is None:
        return {"model": _unwrap(lambda: tinyml_measurements.tflite_path)}
    return dict(_unwrap(lambda: artifacts.build).tflite)


@pytest.fixture
def tinyml_keras_model(tinyml_measurements: Measurements) -> Any:
    """The trained Keras model (imports Keras; built and cached on first use)."""
    artifacts = tinyml_measurements.artifacts
    if artifacts is None:
        pytest.skip("the selected target has no Keras model (it is a .tflite)")
    build = _unwrap(lambda: artifacts.build)
    from pytest_tinyml.pipeline import load_keras_model

    return _unwrap(lambda: load_keras_model(build))


@pytest.fixture
def tinyml_dataset(tinyml_measurements: Measurements) -> Any:
    """The spec's dataset after preprocessing and splitting (x_train, y_train, x_val, y_val, x_test, y_test)."""
    spec = tinyml_measurements.spec
    if spec is None or spec.dataset is None:
        pytest.skip("the selected spec has no dataset")
    from pytest_tinyml.pipeline import get_dataset

    options = tinyml_measurements.options
    return _unwrap(lambda: get_dataset(spec, options.cache_dir, options.extra_loaders))
