"""Images per second of the accuracy stages, measured in one run on the same test images.

    python bench/bench_eval.py [specs/mnist.yaml] [--cache-dir DIR]

Builds (or reuses) the spec's artifacts, then times on the test split:

- float Keras (batched ``model(x, training=False)``),
- int8 with LiteRT reference kernels (what ``evaluate_accuracy`` uses) and with LiteRT's default kernels,
- int8 with host TFLM (child processes, both cores),
- seed 001's loop: ``tf.lite.Interpreter``, one image at a time, input ``(x * 127).astype(np.int8)``
  (its accuracy is printed too: that conversion ignores the model's input scale and zero point).

Prints one line per stage and the ratios to seed 001's loop.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:10.0f} img/s  ({seconds * 1000 / n:7.3f} ms/img)"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", nargs="?", default=str(REPO / "specs" / "mnist.yaml"))
    parser.add_argument("--cache-dir", default=str(REPO / ".pytest_cache" / "d" / "tinyml"))
    args = parser.parse_args()

    from pytest_tinyml.pipeline import build_artifacts, evaluate, load_test_split
    from pytest_tinyml.spec import load_spec

    spec = load_spec(args.spec)
    cache = Path(args.cache_dir)
    build = build_artifacts(spec, cache_dir=cache)
    x, y = load_test_split(spec, cache)
    model = build.tflite_path("int8").read_bytes()
    n = len(x)
    rows: list[tuple[str, float, float]] = []

    t = time.perf_counter()
    pred = evaluate.run_litert(model, x, reference=True)
    rows.append(("int8 LiteRT reference kernels", time.perf_counter() - t, float(np.mean(pred == y) * 100)))
    t = time.perf_counter()
    pred = evaluate.run_litert(model, x, reference=False)
    rows.append(("int8 LiteRT default kernels", time.perf_counter() - t, float(np.mean(pred == y) * 100)))
    t = time.perf_counter()
    pred = evaluate.run_tflm(model, x)
    rows.append(("int8 host TFLM (2 workers)", time.perf_counter() - t, float(np.mean(pred == y) * 100)))

    import keras
    import tensorflow as tf

    float_model = keras.models.load_model(build.keras_path)
    float_model(x[:1], training=False)  # trace once, outside the timing
    t = time.perf_counter()
    pred = np.argmax(np.concatenate([np.asarray(float_model(x[i : i + 500], training=False)) for i in range(0, n, 500)]), -1)
    rows.append(("float Keras (batches of 500)", time.perf_counter() - t, float(np.mean(pred == y) * 100)))

    # seed 001's tflite_model_eval loop, as written (tf.lite.Interpreter, (x * 127).astype(np.int8))
    t = time.perf_counter()
    interpreter = tf.lite.Interpreter(model_content=model)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()
    out = interpreter.get_output_details()
    correct = 0
    for idx in range(n):
        data = (x[idx : idx + 1] * 127).astype(np.int8)
        interpreter.set_tensor(inp[0]["index"], data)
        interpreter.invoke()
        if np.argmax(interpreter.get_tensor(out[0]["index"])[0]) == y[idx]:
            correct += 1
    seed_seconds = time.perf_counter() - t
    rows.append(("seed 001 loop (tf.lite, x*127)", seed_seconds, correct / n * 100))

    print(f"{spec.name}: {n} test images, int8 model {len(model):,} bytes")
    for name, seconds, acc in rows:
        print(f"  {name:32s} {_rate(n, seconds)}  accuracy {acc:6.2f}%  x{seed_seconds / seconds:6.2f} vs seed loop")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
