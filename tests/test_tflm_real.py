"""Real TFLM in the firmware harness, reference and CMSIS-NN kernels, against host TFLM.

These tests need TFLM sources: ``TFLM_ROOT`` or a filled source cache in ``TINYML_TFLM_SOURCES`` (they
never download). CI has neither, so they skip with the reason. The object cache is shared by the session,
so the TFLM core compiles once per kernel set.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pytest_tinyml.emulate import run_firmware, toolchain_status
from pytest_tinyml.emulate.policy import choose_runtime
from pytest_tinyml.emulate.tflm_build import library_sources
from pytest_tinyml.emulate.tflm_tree import TflmTree, default_kernels, tflm_tree
from pytest_tinyml.errors import NotEvaluable

pytestmark = pytest.mark.skipif(
    not toolchain_status().ok, reason=f"firmware toolchain missing; to enable: {toolchain_status().hint}"
)


@pytest.fixture(scope="session")
def firmware_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh object cache, or $TINYML_TEST_FIRMWARE_CACHE to reuse TFLM objects compiled before (the
    cache is keyed by content, so reuse cannot change a result)."""
    import os

    shared = os.environ.get("TINYML_TEST_FIRMWARE_CACHE")
    return Path(shared) if shared else tmp_path_factory.getbasetemp() / "firmware-cache"


def _tree_or_skip(kernels: str) -> TflmTree:
    try:
        return tflm_tree(kernels=kernels, core="cortex-m4", offline=True)
    except NotEvaluable as exc:
        pytest.skip(f"real TFLM ({kernels}): {exc.reason}; to enable: {exc.enable}")


def _samples(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=(1, 8, 8, 1), dtype=np.int8) for _ in range(n)]


def test_default_kernels_follow_the_core() -> None:
    assert [default_kernels(c) for c in ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")] == ["cmsis_nn"] * 4
    assert default_kernels("cortex-m0plus") == default_kernels("cortex-m3") == "reference"


def test_fallback_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TFLM_ROOT", raising=False)
    choice = choose_runtime(None, core="cortex-m4", kernels=None, sources_dir=tmp_path / "empty", offline=True)
    assert choice.runtime == "tinyml" and choice.tree is None and choice.kernels == "cmsis_nn"
    assert "real TFLM unavailable" in choice.note and "offline" in choice.note
    with pytest.raises(NotEvaluable, match="offline"):
        choose_runtime("tflm", core="cortex-m4", kernels=None, sources_dir=tmp_path / "empty", offline=True)
    assert choose_runtime("tinyml", core="cortex-m0plus", kernels=None, sources_dir=tmp_path).note == ""


def test_cmsis_nn_kernels_replace_the_reference_ones() -> None:
    tree = _tree_or_skip("cmsis_nn")
    chosen = library_sources(tree)
    rel = {str(p.relative_to(tree.root)) for p in chosen if p.is_relative_to(tree.root)}
    assert "tensorflow/lite/micro/kernels/cmsis_nn/conv.cc" in rel
    assert "tensorflow/lite/micro/kernels/conv.cc" not in rel
    assert "tensorflow/lite/micro/kernels/conv_common.cc" in rel
    library = {p.name for p in chosen if p in set(tree.library_sources)}
    assert "arm_convolve_wrapper_s8.c" in library and not any(n.endswith("_f32.c") for n in library)
    assert "-DCMSIS_NN" in tree.defines


@pytest.mark.parametrize("kernels", ["reference", "cmsis_nn"])
def test_real_tflm_bit_exact_arena_bisection(
    tflite_factory: ModuleType, kernels: str, firmware_cache: Path
) -> None:
    """Both kernel sets equal host TFLM on every sample; the firmware finds the smallest arena that
    allocates (a multiple of 16 B, not below arena_used_bytes()) and runs the samples with it."""
    from pytest_tinyml.analysis.tflm import invoke

    tree = _tree_or_skip(kernels)
    model = tflite_factory.int8_cnn(seed=6, fc_units=12)
    samples = _samples(8, 6)
    want = [np.asarray(w).tobytes() for w in invoke(model, samples, timeout=300)]
    res = run_firmware(model, samples, cache_dir=firmware_cache, runtime="tflm", tflm_tree=tree, timeout=900)
    assert res.runtime == "tflm" and res.kernels == kernels
    assert [o.tobytes() for o in res.outputs] == want
    assert res.arena_min_bytes % 16 == 0 and res.arena_min_bytes >= res.arena_bytes > 0
    assert res.arena_used_at == res.arena_min_bytes
    assert res.arena_min_bytes > 0  # the firmware's CRC-checked TM:ARENA line was received
    # The host-side estimate (for runs without a toolchain) is within 1 % or 64 B of the target's figure.
    from pytest_tinyml.analysis.model import parse_model
    from pytest_tinyml.analysis.tflm import allocate, arena_32bit

    est = arena_32bit(parse_model(model, "m"), allocate(model), kernels=kernels).bytes
    assert abs(est - res.arena_bytes) <= max(64, res.arena_bytes // 100), (est, res.arena_bytes)
    tight = run_firmware(model, samples[:1], cache_dir=firmware_cache, runtime="tflm", tflm_tree=tree,
                         arena_bytes=res.arena_min_bytes)
    assert tight.arena_min_bytes == res.arena_min_bytes  # the bisection result allocates by itself


def test_cmsis_nn_runs_fewer_instructions_than_reference(
    tflite_factory: ModuleType, firmware_cache: Path
) -> None:
    ref, cm = _tree_or_skip("reference"), _tree_or_skip("cmsis_nn")
    model = tflite_factory.int8_cnn(seed=7, height=16, width=16, filters=8, fc_units=16)
    samples = [np.random.default_rng(7).integers(-128, 128, size=(1, 16, 16, 1), dtype=np.int8)]
    a = run_firmware(model, samples, cache_dir=firmware_cache, runtime="tflm", tflm_tree=ref, timeout=900)
    b = run_firmware(model, samples, cache_dir=firmware_cache, runtime="tflm", tflm_tree=cm, timeout=900)
    assert a.outputs[0].tobytes() == b.outputs[0].tobytes()
    assert b.instructions_per_inference < a.instructions_per_inference
