"""The model pipeline: datasets, builders, training, quantization, evaluation and the cache.

Public API (importing it imports nothing heavy):

- :func:`build_artifacts` -> :class:`BuildResult`
- :func:`evaluate_accuracy` -> :class:`~pytest_tinyml.pipeline.evaluate.AccuracyReport`
- :func:`get_dataset`, :func:`load_test_split`, :func:`test_inputs_int8`, :func:`load_keras_model`
"""

from __future__ import annotations

from pytest_tinyml.pipeline.artifacts import (
    BuildResult,
    build_artifacts,
    evaluate_accuracy,
    get_dataset,
    load_keras_model,
    load_test_split,
    test_inputs_int8,
)

__all__ = [
    "BuildResult",
    "build_artifacts",
    "evaluate_accuracy",
    "get_dataset",
    "load_keras_model",
    "load_test_split",
    "test_inputs_int8",
]
