"""Firmware path timings: first build (library + link + run), re-link only (new model), cached run.

Usage: python bench/bench_firmware.py [N_SAMPLES]

Uses the flatbuffer-built test CNN (tests/tflite_factory.py), so TensorFlow is not needed. Prints the
figures measured in this run and their ratios; nothing is asserted.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import tflite_factory  # noqa: E402

from pytest_tinyml.emulate import FirmwareResult, run_firmware, toolchain_status  # noqa: E402


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    status = toolchain_status()
    if not status.ok:
        print(f"skipped: missing {', '.join(status.missing)}; to enable: {status.hint}")
        return 0
    model_a = tflite_factory.int8_cnn(seed=0, height=28, width=28, filters=16, fc_units=32)
    model_b = tflite_factory.int8_cnn(seed=1, height=28, width=28, filters=16, fc_units=32)
    rng = np.random.default_rng(0)
    samples = [rng.integers(-128, 128, size=(1, 28, 28, 1), dtype=np.int8) for _ in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        t0 = time.perf_counter()
        first = run_firmware(model_a, samples, cache_dir=cache)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        relink = run_firmware(model_b, samples, cache_dir=cache)
        t_relink = time.perf_counter() - t0
        cached = []
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            runs.append(run_firmware(model_a, samples, cache_dir=cache))
            cached.append(time.perf_counter() - t0)
        one = []
        for _ in range(3):
            t0 = time.perf_counter()
            run_firmware(model_a, samples[:1], cache_dir=cache)
            one.append(time.perf_counter() - t0)
    best = min(cached)
    r = runs[cached.index(best)]
    print(f"model: {len(model_a)} bytes, {n} samples per run, {first.instructions_per_inference:,.0f} instructions/inference")
    print(f"first build + run (compile runtime, link, QEMU): {t_first:.3f} s (build_cached={first.build_cached})")
    print(f"new model, runtime cached (re-link + run):       {t_relink:.3f} s (build_cached={relink.build_cached})")
    print(f"cached build, {n} samples:                         {best:.3f} s (emulation {r.emulate_seconds:.3f} s)")
    print(f"cached build, 1 sample:                           {min(one):.3f} s")
    print(f"per inference under QEMU:                         {r.emulate_seconds / n * 1e3:.2f} ms")
    print(f"ratio first/cached: {t_first / best:.1f}x; goal cached < 2 s per model: {'met' if best < 2 else 'NOT met'}")
    _bench_real_tflm(model_a, samples, r)
    return 0


def _bench_real_tflm(model: bytes, samples: list[np.ndarray], ours: FirmwareResult) -> None:
    """With TFLM_ROOT set: the same model built against real TFLM (reference kernels), same inputs."""
    from pytest_tinyml.emulate.tflm_tree import tflm_tree
    from pytest_tinyml.errors import NotEvaluable

    try:
        tflm_tree()
    except NotEvaluable as exc:
        print(f"real TFLM: skipped ({exc.reason})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_firmware(model, samples, cache_dir=Path(tmp), runtime="tflm", timeout=1800)
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        again = run_firmware(model, samples, cache_dir=Path(tmp), runtime="tflm", timeout=1800)
        t_again = time.perf_counter() - t0
    same = [o.tobytes() for o in again.outputs] == [o.tobytes() for o in ours.outputs]
    print(f"real TFLM first build (compile the kernels this model uses) + run: {t_first:.1f} s; cached: {t_again:.2f} s")
    print(f"real TFLM instructions/inference {again.instructions_per_inference:,.0f} vs this runtime "
          f"{ours.instructions_per_inference:,.0f} (ratio {again.instructions_per_inference / ours.instructions_per_inference:.2f}x); "
          f"arena_used_bytes {again.arena_bytes:,} vs {ours.arena_bytes:,}; outputs identical: {same}")


if __name__ == "__main__":
    raise SystemExit(main())
