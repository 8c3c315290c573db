"""Build cache integrity under concurrency and corruption, through real pytest processes.

A tiny ``module:function`` dataset and builder in the test's tmp dir train in seconds. Two pytest-xdist
workers, and two pytest processes started at once, must leave exactly one intact cache entry; a flipped
byte, a deleted manifest or a truncated file in the entry must be detected by hash and rebuilt.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

pytest.importorskip("tensorflow")

from pytest_tinyml._util.cachefs import sha256_file
from pytest_tinyml.pipeline.cache import Cache

if TYPE_CHECKING:
    from conftest import PytestRunner

pytestmark = pytest.mark.slow

DATA = '''
import numpy as np

def load(ds, cache_dir):
    rng = np.random.default_rng(0)
    y = np.arange(240) % 4
    x = rng.integers(0, 40, (240, 8, 8, 1)).astype(np.uint8)
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, r * 4:(r + 1) * 4, q * 4:(q + 1) * 4] += 200
    return (x[:200], y[:200]), (x[200:], y[200:])
'''
BUILDER = '''
def build():
    import keras
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(4)(x))
'''
SPEC = """\
version: 1
name: cache_check
model: {builder: "tiny_cache_builder:build"}
dataset: {name: "tiny_cache_data:load", preprocess: x/255, validation: 0.2}
training: {epochs: 2, batch_size: 32}
quantization: {mode: int8, representative_samples: 50}
constraints: {max_size: 50KiB, io_dtype: int8, ops: tflm}
"""


def project(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "tiny_cache_data.py").write_text(DATA)
    (directory / "tiny_cache_builder.py").write_text(BUILDER)
    (directory / "spec.yaml").write_text(SPEC)
    return directory


def run(run_pytest: PytestRunner, directory: Path, cache: Path, *extra: str) -> str:
    outcome, out = run_pytest.checked(["--tinyml-spec", "spec.yaml", "-o", f"tinyml_cache_dir={cache}", "-vv", *extra],
                                 directory, timeout=600)
    assert outcome.kind == "pytest_exit_0", out
    return out


def single_entry(cache: Path) -> tuple[str, dict[str, object]]:
    """The one cache entry (no staging or trash directories left behind), verified against its manifest."""
    builds = cache / "builds"
    dirs = sorted(p.name for p in builds.iterdir() if p.is_dir())
    assert len(dirs) == 1 and not dirs[0].startswith("."), dirs
    manifest = Cache(cache).verify(dirs[0])
    assert manifest is not None
    return dirs[0], manifest


def test_xdist_workers_share_one_build(run_pytest: PytestRunner, tmp_path: Path) -> None:
    pytest.importorskip("xdist")
    directory = project(tmp_path / "p")
    out = run(run_pytest, directory, tmp_path / "cache", "-n", "2")
    assert "[gw0]" in out and "[gw1]" in out and out.count("PASSED") == 3
    single_entry(tmp_path / "cache")


def test_two_processes_started_at_once_build_once(run_pytest: PytestRunner, tmp_path: Path) -> None:
    directory = project(tmp_path / "p")
    cache = tmp_path / "cache"
    outputs: list[str] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            outputs.append(run(run_pytest, directory, cache))
        except BaseException as exc:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(o.count("PASSED") == 3 for o in outputs)
    key, manifest = single_entry(cache)
    results = json.loads((cache / "builds" / key / "results.json").read_text())
    assert results["modes"] == ["int8"]


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40
    path.write_bytes(bytes(data))


def test_damaged_entry_is_detected_and_rebuilt(run_pytest: PytestRunner, tmp_path: Path) -> None:
    """One build, then three kinds of damage, each detected by hash / missing manifest; the last one is
    rebuilt end to end (every kind reaches the rebuild through the same failed ``verify``)."""
    import shutil

    directory = project(tmp_path / "p")
    cache = tmp_path / "cache"
    run(run_pytest, directory, cache)
    key, manifest = single_entry(cache)
    entry = cache / "builds" / key
    files = manifest["files"]
    assert isinstance(files, dict) and {"int8.tflite", "model.keras", "results.json"} <= set(files)
    pristine = tmp_path / "pristine"
    shutil.copytree(entry, pristine)
    for damage in ("flip_tflite_byte", "delete_manifest", "truncate_keras"):
        shutil.rmtree(entry)
        shutil.copytree(pristine, entry)
        assert Cache(cache).verify(key) is not None, damage  # the restored entry is good again
        if damage == "flip_tflite_byte":
            _flip(entry / "int8.tflite")
        elif damage == "delete_manifest":
            (entry / "manifest.json").unlink()
        else:
            keras_file = entry / "model.keras"
            keras_file.write_bytes(keras_file.read_bytes()[:100])
        assert Cache(cache).verify(key) is None, damage  # detected
    run(run_pytest, directory, cache)  # the last damage (a truncated model.keras) is rebuilt, not reused
    key2, manifest2 = single_entry(cache)
    assert key2 == key and manifest2["created"] != manifest["created"]
    assert sha256_file(entry / "int8.tflite") == manifest2["files"]["int8.tflite"]  # type: ignore[index]
