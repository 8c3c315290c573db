"""Audit figures, measured side by side in one run (ratios are printed, nothing is asserted).

    python bench/bench_audit.py [--skip-spec] [--firmware-samples 200]

- cold audit of a ~300 KB TensorFlow-converted int8 model (bench/_tf_models.py) in a fresh process:
  parse + host TFLM allocation (child) + 32-bit arena + op report + flash estimate, and whether
  TensorFlow was imported (goal <= 1 s, no TensorFlow); peak memory = ru_maxrss of that process plus the
  TFLM child;
- the same model through ``pytest --tinyml-model`` in a fresh process without the firmware items
  (``-k 'not firmware and not flash'``: the flash item reports the firmware's measured sizes), checked
  with ``-X importtime`` for TensorFlow;
- ``pytest --tinyml-spec specs/mnist.yaml`` twice on one cache directory: the second run must not import
  TensorFlow (goal <= 5 s);
- firmware seconds per model: :func:`pytest_tinyml.emulate.run_firmware` on the TensorFlow-converted
  MNIST CNN (first build + run, then cached), and its images per second under QEMU next to host TFLM's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import _tf_models  # noqa: E402

AUDIT_SCRIPT = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from pytest_tinyml.analysis.model import load_model, load_model_bytes
from pytest_tinyml.analysis.tflm import allocate, arena_32bit, tflm_op_report
from pytest_tinyml.analysis.flash import estimate_flash
path = sys.argv[1]
info = load_model(path)
alloc = allocate(load_model_bytes(path))
arena = arena_32bit(info, alloc) if alloc.ok else None
report = tflm_op_report(info, alloc)
flash = estimate_flash(info)
wall = time.perf_counter() - t0
print(json.dumps({
    "wall_in_process": wall,
    "ok": alloc.ok, "arena": arena.bytes if arena else None, "macs": info.total_macs,
    "flash": flash.model_bytes + flash.runtime_code_bytes,
    "tensorflow": sorted(m for m in sys.modules if m == "tensorflow" or m.startswith(("tensorflow.", "keras"))),
    "maxrss_self_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "maxrss_children_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
}))
"""


def _env() -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    return env


def _pytest(args: list[str], cwd: Path) -> tuple[float, int, bool, str]:
    """(wall seconds, exit status, tensorflow imported, output) of ``python -X importtime -m pytest``."""
    t0 = time.perf_counter()
    # -s: with pytest's fd capture on, imports made while an item runs would write their -X importtime
    # lines into the captured output instead of the process's stderr
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "pytest", "-p", "no:cacheprovider", "-q", "-s", *args],
                          cwd=cwd, capture_output=True, text=True, env=_env(), check=False, timeout=3600)
    wall = time.perf_counter() - t0
    tf = any(line.rstrip().endswith(("| tensorflow", "| keras")) for line in proc.stderr.splitlines())
    return wall, proc.returncode, tf, proc.stdout


def audit_figures(model: Path) -> list[str]:
    lines = []
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", AUDIT_SCRIPT, str(model)], capture_output=True, text=True,
                          env=_env(), check=True, timeout=600)
    wall = time.perf_counter() - t0
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    lines.append(f"cold audit, fresh process ({model.name}, {model.stat().st_size:,} B, {r['macs']:,} MACs): "
                 f"{wall:.3f} s wall ({r['wall_in_process']:.3f} s after interpreter start); goal 1 s: "
                 f"x{wall / 1.0:.2f} of goal; allocates={r['ok']} arena32={r['arena']:,} B; "
                 f"tensorflow imported: {bool(r['tensorflow'])}")
    self_mb, child_mb = r["maxrss_self_kb"] / 1024, r["maxrss_children_kb"] / 1024
    lines.append(f"peak memory of that audit: process {self_mb:.0f} MB + TFLM child {child_mb:.0f} MB = "
                 f"{self_mb + child_mb:.0f} MB (ru_maxrss)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / model.name).write_bytes(model.read_bytes())
        wall, rc, tf, out = _pytest(["--tinyml-model", model.name, "-o", f"tinyml_cache_dir={work / 'c'}",
                                     "-k", "not firmware and not flash"], work)
        summary = out.strip().splitlines()[-1] if out.strip() else ""
        lines.append(f"cold `pytest --tinyml-model` without firmware items: {wall:.3f} s wall (exit {rc}: {summary}); "
                     f"tensorflow imported: {tf}")
    return lines


def spec_figures(spec: Path, cache: Path) -> list[str]:
    try:
        import pytest_tinyml.pipeline  # noqa: F401
    except ImportError as exc:
        return [f"cached spec re-run: skipped (build package not importable: {exc})"]
    first, rc1, tf1, out1 = _pytest(["--tinyml-spec", str(spec), "-o", f"tinyml_cache_dir={cache}"], REPO)
    second, rc2, tf2, out2 = _pytest(["--tinyml-spec", str(spec), "-o", f"tinyml_cache_dir={cache}"], REPO)
    s1 = out1.strip().splitlines()[-1] if out1.strip() else ""
    s2 = out2.strip().splitlines()[-1] if out2.strip() else ""
    return [
        f"spec run 1 ({spec.name}, cache {cache}): {first:.1f} s (exit {rc1}: {s1}); tensorflow imported: {tf1}",
        f"spec run 2 (cached): {second:.2f} s (exit {rc2}: {s2}); tensorflow imported: {tf2}; goal 5 s: "
        f"x{second / 5.0:.2f} of goal; run1/run2 = {first / second:.1f}x",
    ]


def firmware_figures(model_path: Path, n: int) -> list[str]:
    import numpy as np

    from pytest_tinyml.analysis import tflm
    from pytest_tinyml.emulate import run_firmware, toolchain_status

    status = toolchain_status()
    if not status.ok:
        return [f"firmware: skipped (missing {', '.join(status.missing)}; {status.hint})"]
    model = model_path.read_bytes()
    rng = np.random.default_rng(0)
    samples = [rng.integers(-128, 128, size=(1, 28, 28, 1), dtype=np.int8) for _ in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        first = run_firmware(model, samples[:1], cache_dir=Path(tmp))
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        run = run_firmware(model, samples, cache_dir=Path(tmp))
        t_run = time.perf_counter() - t0
    t0 = time.perf_counter()
    outs = tflm.invoke(model, samples, workers=2)
    t_tflm = time.perf_counter() - t0
    same = sum(int(np.array_equal(np.asarray(a).reshape(-1), np.asarray(b).reshape(-1)))
               for a, b in zip(run.outputs, outs, strict=False))
    return [
        f"firmware seconds per model ({model_path.name}): first build + 1 image {t_first:.2f} s "
        f"(build_cached={first.build_cached}); cached build + {n} images {t_run:.2f} s",
        f"images/second: firmware under QEMU {n / run.emulate_seconds:.0f} img/s (emulation only; "
        f"{n / t_run:.0f} with process start) vs host TFLM (2 children) {n / t_tflm:.0f} img/s: "
        f"firmware/host TFLM = {t_tflm / t_run:.2f}x; bit-exact on {same}/{n}",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-spec", action="store_true")
    ap.add_argument("--spec", default=str(REPO / "specs" / "mnist.yaml"))
    ap.add_argument("--spec-cache", default=str(_tf_models.default_cache_dir() / "spec-cache"))
    ap.add_argument("--firmware-samples", type=int, default=200)
    args = ap.parse_args()
    models = _tf_models.ensure_models()
    lines = audit_figures(models["mobilenetish_int8.tflite"])
    lines += firmware_figures(models["tf_int8_cnn.tflite"], args.firmware_samples)
    if not args.skip_spec:
        lines += spec_figures(Path(args.spec), Path(args.spec_cache))
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
