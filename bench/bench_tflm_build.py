"""Real-TFLM firmware build cost: first build for one core and kernel set, then each further model.

Usage: python bench/bench_tflm_build.py [cmsis_nn|reference] [CORE] [EMPTY_CACHE_DIR]

Needs TFLM sources: ``TFLM_ROOT`` or a filled source cache in ``$TINYML_TFLM_SOURCES`` (downloads are not
made from here). The object cache starts empty in a temporary directory, so the first figure is a cold
build of the TFLM core plus the first model's kernels (and, alongside, the precompiled header of the op
resolver's TFLM includes); the further models (different op mixes) reuse those objects and compile only
kernels not yet seen and their op resolver. Every build is followed by one run under QEMU (the
firmware bisects the smallest arena and runs 3 samples), included in the figures. Models: two CNNs from
tests/tflite_factory.py (the second has the same ops), then TFLM's own example models from the TFLM source
tree (new ops). Prints the figures and the ratios to the targets (first build 120 s on 2 cores, each
further model 5 s); nothing is asserted.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import tflite_factory  # noqa: E402

from pytest_tinyml.emulate import run_firmware, toolchain_status  # noqa: E402
from pytest_tinyml.emulate.tflm_tree import default_kernels, tflm_tree  # noqa: E402
from pytest_tinyml.errors import NotEvaluable  # noqa: E402


def main() -> int:
    core = sys.argv[2] if len(sys.argv) > 2 else "cortex-m4"
    kernels = sys.argv[1] if len(sys.argv) > 1 else default_kernels(core)
    status = toolchain_status()
    if not status.ok:
        print(f"skipped: missing {', '.join(status.missing)}; to enable: {status.hint}")
        return 0
    try:
        tree = tflm_tree(kernels=kernels, core=core, offline=True)
    except NotEvaluable as exc:
        print(f"skipped: {exc.reason}; to enable: {exc.enable}")
        return 0
    models = {
        "cnn (conv, maxpool, fc, softmax)": tflite_factory.int8_cnn(seed=0, height=28, width=28, filters=16,
                                                                    fc_units=32),
        "cnn, other weights (same ops)": tflite_factory.int8_cnn(seed=1, height=28, width=28, filters=8,
                                                                 fc_units=16),
    }
    micro = tree.root / "tensorflow/lite/micro"
    for label, rel in (("TFLM hello_world int8 (fc)", "examples/hello_world/models/hello_world_int8.tflite"),
                       ("TFLM micro_speech (conv, fc, softmax)", "examples/micro_speech/models/micro_speech_quantized.tflite"),
                       ("TFLM person_detect (depthwise, conv, avgpool)", "models/person_detect.tflite")):
        if (micro / rel).is_file():  # from the TFLM source tree itself; the project ships none of them
            models[label] = (micro / rel).read_bytes()
    rng = np.random.default_rng(0)
    print(f"{tree.describe()}, {core}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    keep = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    if keep is not None and keep.exists() and any(keep.iterdir()):
        print(f"skipped: {keep} is not empty (the first build must start cold)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        cache = keep or Path(tmp)
        figures = []
        for label, model in models.items():
            from pytest_tinyml.analysis.model import parse_model

            info = parse_model(model, label)
            samples = [rng.integers(-128, 128, size=info.inputs[0].shape, dtype=np.int8) for _ in range(3)]
            t0 = time.perf_counter()
            c0 = _child_cpu()
            res = run_firmware(model, samples, core=core, cache_dir=cache, runtime="tflm", tflm_tree=tree,
                               timeout=900, progress=lambda msg: print(f"  {msg}", flush=True))
            seconds = time.perf_counter() - t0
            cpu = _child_cpu() - c0
            figures.append((seconds, cpu))
            print(f"{label}: {seconds:.1f} s wall, {cpu:.1f} s CPU in compilers/linker/QEMU (build + run), "
                  f"{res.instructions_per_inference:,.0f} instructions, "
                  f"arena min {res.arena_min_bytes:,} B, flash {res.flash_bytes:,} B", flush=True)
        # The op resolver's TFLM headers are precompiled (GCC .gch) during the first build; the further
        # models with new operators compile their resolver against it.
        pch = sorted(cache.glob("tflm-obj-*/pch-*/*.gch"))
        print(f"op-resolver precompiled header: {', '.join(f'{p.stat().st_size / 1e6:.0f} MB' for p in pch) or 'none'}"
              " in the object cache")
    (first, first_cpu), further = figures[0], figures[1:]
    # On a loaded machine the wall time says more about the neighbours than about the build: the CPU
    # seconds of the child processes, spread over the 2 cores the target assumes, are printed next to it.
    print(f"first build: {first:.1f} s wall ({first / 120:.2f} x the 120 s target); {first_cpu:.1f} s CPU "
          f"= {first_cpu / 2:.1f} s on 2 idle cores ({first_cpu / 2 / 120:.2f} x)")
    for (wall, cpu), label in zip(further, list(models)[1:], strict=True):
        print(f"further model {label}: {wall:.1f} s wall ({wall / 5:.2f} x the 5 s target); {cpu:.1f} s CPU")
    return 0


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    raise SystemExit(main())
