"""Splits and preprocessing: a :class:`RawDataset` becomes a :class:`Dataset` (test split, limit, validation
split, preprocessing; all stratified by label and seeded), with the checksum that keys the build cache.
The rules are in :mod:`pytest_tinyml.pipeline.datasets`."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from pytest_tinyml.errors import DatasetError
from pytest_tinyml.pipeline.dataset_types import Dataset, RawDataset, WhereFn

if TYPE_CHECKING:
    from pytest_tinyml.spec.model import DatasetSpec


def stratified_pick(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n`` items whose label proportions match ``y`` (largest remainder), seeded."""
    n = int(n)
    if n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * n / len(y)
    take = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - take), kind="stable")
    take[order[: n - int(take.sum())]] += 1
    chosen = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen))


def _complement(n: int, chosen: np.ndarray) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[chosen] = False
    return np.flatnonzero(mask)


PREPROCESSING: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "x/255": lambda x: x.astype(np.float32) / np.float32(255.0),
    "x/127.5-1": lambda x: x.astype(np.float32) / np.float32(127.5) - np.float32(1.0),
    "x-128": lambda x: x.astype(np.float32) - np.float32(128.0),
    "none": lambda x: x.astype(np.float32),
}
#: int8 input (scale, zero point) that represent uint8 pixels exactly after the preprocessing.
EXACT_INT8_PARAMS: dict[str, tuple[float, int]] = {"x/255": (1.0 / 255.0, -128), "x-128": (1.0, 0)}


def preprocess(x: np.ndarray, how: str) -> np.ndarray:
    try:
        return PREPROCESSING[how](x)
    except KeyError:
        raise DatasetError(f"unknown preprocessing {how!r}", fix=f"use one of {', '.join(PREPROCESSING)}") from None


def arrays_checksum(arrays: Mapping[str, np.ndarray], extra: str = "") -> str:
    h = hashlib.sha256(extra.encode())
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _count(value: float | int, n: int) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else int(round(float(value) * n))


def prepare(raw: RawDataset, ds: DatasetSpec, *, where: WhereFn | None = None) -> Dataset:
    """Apply the spec's test split, limit, validation split and preprocessing (all seeded, stratified)."""

    def at(*path: str) -> str | None:
        return where("dataset", *path) if where is not None else None

    name = ds.name
    rng = np.random.default_rng(ds.seed)
    x_all, y_all = raw.x_train, raw.y_train
    if raw.x_test is None or raw.y_test is None:
        test = ds.test if ds.test is not None else 0.2
        n_test = _count(test, len(y_all))
        if not 0 < n_test < len(y_all):
            raise DatasetError(f"dataset {name!r}: test={test!r} asks for {n_test} of {len(y_all)} images",
                               where=at("test"), fix="hold out fewer test images")
        test_idx = stratified_pick(y_all, n_test, rng)
        train_idx = _complement(len(y_all), test_idx)
        x_test, y_test = x_all[test_idx], y_all[test_idx]
        x_train, y_train = x_all[train_idx], y_all[train_idx]
    else:
        x_train, y_train = x_all, y_all
        x_test, y_test = raw.x_test, raw.y_test
        if ds.test is not None:
            n_test = _count(ds.test, len(y_test))
            if n_test > len(y_test) or n_test < 1:
                raise DatasetError(f"dataset {name!r}: test={ds.test!r} asks for {n_test} test images; the test split "
                                   f"has {len(y_test)}", where=at("test"), fix=f"use at most {len(y_test)}")
            idx = stratified_pick(y_test, n_test, rng)
            x_test, y_test = x_test[idx], y_test[idx]
    if ds.limit is not None and ds.limit < len(y_train):
        idx = stratified_pick(y_train, ds.limit, rng)
        x_train, y_train = x_train[idx], y_train[idx]
    n_val = max(1, int(round(ds.validation * len(y_train))))
    if n_val >= len(y_train):
        raise DatasetError(f"dataset {name!r}: validation={ds.validation} leaves no training images out of {len(y_train)}",
                           where=at("validation"), fix="use a smaller validation fraction or more data")
    val_idx = stratified_pick(y_train, n_val, rng)
    fit_idx = _complement(len(y_train), val_idx)
    arrays = {
        "x_train": preprocess(x_train[fit_idx], ds.preprocess),
        "y_train": y_train[fit_idx],
        "x_val": preprocess(x_train[val_idx], ds.preprocess),
        "y_val": y_train[val_idx],
        "x_test": preprocess(x_test, ds.preprocess),
        "y_test": np.asarray(y_test, dtype=np.int64),
    }
    num_classes = int(max(arrays["y_train"].max(), arrays["y_val"].max(), arrays["y_test"].max())) + 1
    return Dataset(
        name=name,
        checksum=arrays_checksum(arrays, ds.preprocess),
        num_classes=num_classes,
        preprocess=ds.preprocess,
        input_int8_params=EXACT_INT8_PARAMS.get(ds.preprocess),
        info=dict(raw.info),
        **arrays,
    )
