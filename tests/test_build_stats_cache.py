"""Accuracy statistics, input quantization and the build cache (no TensorFlow)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pytest_tinyml._util.cachefs import sha256_bytes
from pytest_tinyml.emulate.runcache import RunCache
from pytest_tinyml.pipeline import build_key as K
from pytest_tinyml.pipeline import cache as C
from pytest_tinyml.pipeline import evaluate as E
from pytest_tinyml.spec import load_spec


def test_clopper_pearson_known_values() -> None:
    lo, hi = E.clopper_pearson(5, 10)
    assert lo == pytest.approx(0.18709, abs=1e-4) and hi == pytest.approx(0.81291, abs=1e-4)
    lo, hi = E.clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10), abs=1e-6)


def test_wilson_interval() -> None:
    lo, hi = E.wilson_interval(95, 100)
    assert lo == pytest.approx(88.83, abs=0.01) and hi == pytest.approx(97.85, abs=0.01)


def test_paired_drop_counts_and_interval() -> None:
    y = np.zeros(1000, dtype=np.int64)
    f = np.zeros(1000, dtype=np.int64)
    q = f.copy()
    f[:20] = 1  # float wrong on 20
    q[:20] = 1
    q[20:30] = 1  # quantized also wrong on 10 more
    f[995:] = 1  # float wrong on 5 the quantized model gets right
    d = E.paired_drop(y, f, q)
    assert (d.float_only, d.quant_only) == (10, 5)
    assert d.points == pytest.approx(0.5)
    assert d.ci_low < 0.5 < d.ci_high
    assert d.ci_low > -1.0 and d.ci_high < 1.6
    lo, hi = d.conditional_ci
    assert lo < 0.5 < hi
    same = E.paired_drop(y, f, f)
    assert same.points == 0.0 and same.ci_low <= 0.0 <= same.ci_high and same.ci_high < 0.5


def test_quantize_uses_tensor_params_not_x_times_127() -> None:
    pixels = np.arange(256, dtype=np.float32)
    x = pixels / np.float32(255.0)
    params = E.TensorParams((1, 256), np.dtype(np.int8), 1 / 255, -128)
    q = E.quantize(x, params)
    assert np.array_equal(q.astype(np.int16), pixels.astype(np.int16) - 128)  # exact for every pixel value
    wrong = (x * 127).astype(np.int8)  # seed 001's conversion
    assert np.count_nonzero(wrong.astype(np.int16) != q.astype(np.int16)) > 250
    # clamping and round-half-away-from-zero
    p2 = E.TensorParams((1, 3), np.dtype(np.int8), 0.5, 0)
    assert E.quantize(np.array([1000.0, -1000.0, 0.25]), p2).tolist() == [127, -128, 1]


def _spec(tmp_path: Path, extra: str = "", builder_src: str = "def build(**kw):\n    return None\n") -> Path:
    (tmp_path / "cache_builder_mod.py").write_text(builder_src)
    p = tmp_path / "s.yaml"
    p.write_text(textwrap.dedent("""\
        version: 1
        name: t
        model: {builder: cache_builder_mod:build}
        dataset: {name: mnist_offline}
        training: {epochs: 3}
        """) + extra)
    return p


def test_build_key_covers_build_fields_only(tmp_path: Path) -> None:
    search = [tmp_path]
    spec = load_spec(_spec(tmp_path))
    k1, inputs = K.build_key(spec, dataset_checksum="abc", search=search)
    assert inputs["versions"]["numpy"] == np.__version__
    assert K.build_key(spec, dataset_checksum="abc", search=search)[0] == k1
    assert K.build_key(spec, dataset_checksum="abd", search=search)[0] != k1
    with_constraints = load_spec(_spec(tmp_path, "board: stm32f405\nconstraints: {max_size: 10KiB}\n"))
    assert K.build_key(with_constraints, dataset_checksum="abc", search=search)[0] == k1
    (tmp_path / "s2.yaml").write_text(_spec(tmp_path).read_text().replace("epochs: 3", "epochs: 4"))
    assert K.build_key(load_spec(tmp_path / "s2.yaml"), dataset_checksum="abc", search=search)[0] != k1
    # editing the builder's source changes the key
    _spec(tmp_path, builder_src="def build(**kw):\n    return 1\n")
    assert K.build_key(spec, dataset_checksum="abc", search=search)[0] != k1


def test_builder_source_is_hashed_without_importing(tmp_path: Path) -> None:
    _spec(tmp_path, builder_src="raise RuntimeError('must not run')\ndef build():\n    pass\n")
    spec = load_spec(tmp_path / "s.yaml")
    assert len(K.model_source_digest(spec, [tmp_path])) == 64
    assert "cache_builder_mod" not in sys.modules


def test_commit_verify_and_corruption(tmp_path: Path) -> None:
    cache = C.Cache(tmp_path)
    assert cache.verify("k1") is None
    staging = cache.new_staging("k1")
    (staging / "int8.tflite").write_bytes(b"x" * 100)
    (staging / "results.json").write_text("{}")
    cache.commit("k1", staging, {"n": 1})
    manifest = cache.verify("k1")
    assert manifest is not None and set(manifest["files"]) == {"int8.tflite", "results.json"}
    assert not staging.exists()
    entry = cache.entry_dir("k1")
    (entry / "int8.tflite").write_bytes(b"x" * 50)  # truncated
    assert cache.verify("k1") is None
    (entry / "int8.tflite").write_bytes(b"x" * 100)
    assert cache.verify("k1") is not None
    (entry / "int8.tflite").unlink()
    assert cache.verify("k1") is None
    (entry / "manifest.json").write_text("{not json")
    assert cache.verify("k1") is None
    # a new commit replaces the broken entry
    staging = cache.new_staging("k1")
    (staging / "int8.tflite").write_bytes(b"y")
    cache.commit("k1", staging, {})
    assert cache.verify("k1") is not None and (entry / "int8.tflite").read_bytes() == b"y"
    assert [p.name for p in cache.builds.iterdir() if p.name.startswith(".")] == []


def test_eval_cache_detects_tampering(tmp_path: Path) -> None:
    cache = C.Cache(tmp_path)
    cache.write_eval("e1", {"predictions": [1, 2, 3]})
    assert cache.read_eval("e1") == {"predictions": [1, 2, 3]}
    data = json.loads(cache.eval_path("e1").read_text())
    data["result"]["predictions"][0] = 9
    cache.eval_path("e1").write_text(json.dumps(data))
    assert cache.read_eval("e1") is None


def test_lock_serializes_processes(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from pytest_tinyml.pipeline.cache import Cache
        cache = Cache(Path({str(tmp_path)!r}))
        with cache.locked("k"):
            if cache.verify("k") is None:
                log = Path({str(tmp_path / "builds.log")!r})
                with log.open("a") as f:
                    f.write("build\\n")
                time.sleep(0.5)
                s = cache.new_staging("k")
                (s / "a.bin").write_bytes(b"a")
                cache.commit("k", s, {{}})
                print("built")
            else:
                print("cached")
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(3)]
    outs = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outs == ["built", "cached", "cached"]
    assert (tmp_path / "builds.log").read_text().count("build") == 1


def test_entries_edited_consistently_still_fail_the_index(tmp_path: Path) -> None:
    """An entry rewritten together with its own checksums (manifest, self-sha) no longer matches the digest
    kept apart from it in index/, so it is rebuilt rather than trusted."""
    cache = C.Cache(tmp_path)
    staging = cache.new_staging("k1")
    (staging / "int8.tflite").write_bytes(b"real model")
    cache.commit("k1", staging, {})
    entry = cache.entry_dir("k1")
    (entry / "int8.tflite").write_bytes(b"other model")
    manifest = json.loads((entry / "manifest.json").read_text())
    manifest["files"]["int8.tflite"] = sha256_bytes(b"other model")
    (entry / "manifest.json").write_text(json.dumps(manifest))
    assert cache.verify("k1") is None
    assert (tmp_path / "index" / "builds" / "k1").is_file()

    cache.write_eval("e1", {"predictions": [1, 2, 3]})
    data = json.loads(cache.eval_path("e1").read_text())
    data["result"]["predictions"][0] = 9
    data["sha256"] = sha256_bytes(json.dumps(data["result"], sort_keys=True).encode())
    cache.eval_path("e1").write_text(json.dumps(data))
    assert cache.read_eval("e1") is None

    runs = RunCache(tmp_path / "runs")
    runs.save_outputs("r1", [np.arange(4, dtype=np.int8)])
    assert [o.tolist() for o in runs.load_outputs("r1") or []] == [[0, 1, 2, 3]]
    np.savez(tmp_path / "runs" / "r1" / "outputs.npz", np.zeros(4, dtype=np.int8))
    assert runs.load_outputs("r1") is None
    # an entry from a cache without the index is not trusted either
    runs.save_outputs("r2", [np.arange(2)])
    (tmp_path / "index" / "runs" / "r2").unlink()
    assert runs.load_outputs("r2") is None
