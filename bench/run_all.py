"""Run every benchmark in one go and print every figure, then a summary of ratios.

    python bench/run_all.py              # fuzz in quick mode (a few minutes in all, plus the first mnist build)
    python bench/run_all.py --full-fuzz  # the full fuzz run (about 15 minutes on 2 cores)

Runs, one after another in fresh processes: bench_audit.py (cold audit, peak memory, cached spec re-run,
firmware per model), bench_eval.py (images/second of float Keras, int8 LiteRT, host TFLM and seed 001's
one-image tf.lite loop), bench_firmware.py (firmware build/re-link/cached timings), bench_tflm_build.py (real-TFLM first build and
further models; needs TFLM sources) and bench_fuzz.py. The
mnist build is shared through one cache directory (bench/_tf_models.py's cache dir, ``spec-cache``).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _tf_models  # noqa: E402


def _run(name: str, args: list[str]) -> tuple[str, int, float]:
    print(f"=== {name} {' '.join(args)}", flush=True)
    t0 = time.perf_counter()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(HERE / name), *args], capture_output=True, text=True, env=env,
                          check=False)
    wall = time.perf_counter() - t0
    out = proc.stdout
    print(out.rstrip())
    if proc.returncode:
        print(f"(exit {proc.returncode}; last stderr lines:)\n" + "\n".join(proc.stderr.splitlines()[-8:]))
    print(f"=== {name}: {wall:.1f} s, exit {proc.returncode}\n", flush=True)
    return out, proc.returncode, wall


def _rate(text: str, pattern: str) -> float | None:
    m = re.search(pattern + r"[^\n]*?([\d.]+) img/s", text)
    return float(m.group(1)) if m else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full-fuzz", action="store_true")
    ap.add_argument("--skip-spec", action="store_true", help="skip the mnist spec runs (bench_audit, bench_eval)")
    args = ap.parse_args()
    cache = _tf_models.default_cache_dir() / "spec-cache"
    results = {}
    audit_args = ["--spec-cache", str(cache)] + (["--skip-spec"] if args.skip_spec else [])
    results["audit"] = _run("bench_audit.py", audit_args)
    if not args.skip_spec:
        results["eval"] = _run("bench_eval.py", ["--cache-dir", str(cache)])
    results["firmware"] = _run("bench_firmware.py", ["100"])
    results["tflm"] = _run("bench_tflm_build.py", [])  # prints "skipped: ..." without TFLM sources
    fuzz_args = [] if args.full_fuzz else ["--cases", "3000", "--tflm", "200", "--firmware", "8", "--pytest", "9",
                                           "--pytest-specs", "4", "--specs", "1000"]
    results["fuzz"] = _run("bench_fuzz.py", fuzz_args)

    print("=== summary")
    for key, (_, rc, wall) in results.items():
        print(f"{key:9s} exit {rc}  {wall:7.1f} s")
    eval_out = results.get("eval", ("", 0, 0.0))[0]
    audit_out = results["audit"][0]
    seed = _rate(eval_out, r"seed 001 loop")
    rates = {
        "float Keras": _rate(eval_out, r"float Keras"),
        "int8 LiteRT (reference kernels)": _rate(eval_out, r"int8 LiteRT reference"),
        "int8 host TFLM": _rate(eval_out, r"int8 host TFLM"),
        "int8 firmware under QEMU": _rate(audit_out, r"firmware under QEMU"),
    }
    if seed:
        print(f"images/second vs seed 001's one-image tf.lite loop ({seed:.0f} img/s):")
        for name, rate in rates.items():
            if rate:
                print(f"  {name:34s} {rate:9.0f} img/s  x{rate / seed:.2f}")
    for pattern in (r"cold audit[^\n]*", r"peak memory[^\n]*", r"spec run 2[^\n]*", r"firmware seconds per model[^\n]*",
                    r"BUG total[^\n]*", r"wall time[^\n]*"):
        for text, _, _ in results.values():
            m = re.search(pattern, text)
            if m:
                print(f"  {m.group(0)}")
                break
    return max(rc for _, rc, _ in results.values())


if __name__ == "__main__":
    raise SystemExit(main())
