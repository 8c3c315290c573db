"""What a dataset loader returns (:class:`RawDataset`) and what the pipeline trains and evaluates on
(:class:`Dataset`). No TensorFlow here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pytest_tinyml.spec.model import DatasetSpec

Loader = Callable[["DatasetSpec", Path], Any]
WhereFn = Callable[..., str]


@dataclass
class RawDataset:
    """Images and labels as a loader returns them (NHWC; ``x_test`` is None when there is no test split)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)  # name, source, files: {file name: sha256}


@dataclass
class Dataset:
    """Preprocessed float32 splits ready for training and evaluation."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    checksum: str
    num_classes: int
    preprocess: str
    input_int8_params: tuple[float, int] | None = None  # (scale, zero point) when exactly representable
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_train.shape[1:])
