"""Isolation of the risky parts: host TFLM crashes, hangs and memory in its child; safe loaders only."""

from __future__ import annotations

import ast
import struct
import textwrap
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import fuzz_harness as fh
import fuzz_mutate as fm
import pytest

from pytest_tinyml.analysis import tflm
from pytest_tinyml.analysis._tflm_child import FAULT_ENV
from pytest_tinyml.analysis.model import parse_model

if TYPE_CHECKING:
    from conftest import PytestRunner

PACKAGE = Path(__file__).resolve().parents[1] / "pytest_tinyml"


def crashing_model(factory: ModuleType) -> bytes:
    """A real crash found by bench/bench_fuzz.py: the depthwise filter's quantized_dimension set to
    1,823,257,932 (the flatbuffer is otherwise intact and parses); host TFLM dies with SIGSEGV while
    preparing the DEPTHWISE_CONV_2D kernel."""
    data = factory.int8_cnn()
    (pos, _), = fm.field_map(data).scalars["quantized_dimension"]
    out = bytearray(data)
    struct.pack_into("<i", out, pos, 1_823_257_932)
    return bytes(out)


def test_real_crash_is_caught_in_the_child(tflite_factory: ModuleType) -> None:
    data = crashing_model(tflite_factory)
    parse_model(data, "crash.tflite")  # parses: the crash is TFLM's
    alloc = tflm.allocate(data, timeout=60)
    assert not alloc.ok and alloc.signal == "SIGSEGV" and "during allocate" in (alloc.reason or "")


def test_crash_becomes_a_failed_tflm_ops_item_naming_signal_and_stage(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "crash.tflite").write_bytes(crashing_model(tflite_factory))
    outcome, out = run_pytest.checked(["--tinyml-model", "crash.tflite", "-o", f"tinyml_cache_dir={tmp_path / 'c'}",
                                  "-rfs"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    assert "tflm_ops: TFLM crashed (SIGSEGV) while allocating the model" in out
    assert "FAILED crash.tflite::tflm_ops" in out
    # the other items still ran: size and int8_io pass, arena is skipped with the reason
    assert "SKIPPED" in out and "TFLM cannot allocate this model" in out


def test_hang_becomes_a_failed_verdict_after_the_timeout(
    tflite_factory: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fake fault: the child's documented fault injection (``hang``) stands in for a model that hangs TFLM."""
    monkeypatch.setenv(FAULT_ENV, "hang")
    path = tmp_path / "m.tflite"
    path.write_bytes(tflite_factory.int8_cnn())
    alloc = tflm.allocate(path.read_bytes(), timeout=3)
    assert alloc.timed_out and not alloc.ok and "timed out after 3 s" in (alloc.reason or "")
    m = fh.measurements_for(path, tmp_path / "c", tflm_allocation=alloc)  # what tflm_allocation computes (60 s timeout)
    from pytest_tinyml.checks.ops import TflmOpsCheck

    verdict = TflmOpsCheck().evaluate(m)
    assert not verdict.passed and "timed out" in verdict.message


def test_fake_segv_at_invoke_is_reported_with_the_stage(
    tflite_factory: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fake fault (``segv:invoke``): a crash during inference names the signal and the invoke stage."""
    import numpy as np

    monkeypatch.setenv(FAULT_ENV, "segv:invoke")
    with pytest.raises(tflm.TflmError) as info:
        tflm.invoke(tflite_factory.int8_cnn(), [np.zeros((1, 8, 8, 1), np.int8)], timeout=60)
    assert info.value.stage == "invoke" and "SIGSEGV" in str(info.value)


def test_memory_limit_in_the_child(tflite_factory: ModuleType) -> None:
    """RLIMIT_AS: a 2 GiB arena cannot be reserved under a 1 GiB cap, and can without it."""
    model = tflite_factory.int8_cnn()
    capped = tflm.allocate(model, arena_size=2 << 30, memory_limit=1 << 30)
    assert not capped.ok and "bad_alloc" in (capped.reason or "")
    assert tflm.allocate(model, arena_size=2 << 30, memory_limit=8 << 30).ok


# --- no unsafe deserialization in the package -----------------------------------------------------
_BANNED_CALLS = {
    ("yaml", "unsafe_load"), ("yaml", "unsafe_load_all"),
    ("yaml", "full_load"), ("yaml", "full_load_all"), ("pickle", "load"), ("pickle", "loads"),
    ("marshal", "loads"), ("dill", "load"), ("shelve", "open"), ("os", "system"),
}
_BANNED_NAMES = {"eval", "exec", "compile"}  # importing a builder named in the spec is by design
_BANNED_IMPORTS = {"pickle", "cPickle", "dill", "marshal", "shelve", "cloudpickle", "joblib"}


def _call_name(node: ast.Call) -> tuple[str, str] | str | None:
    func = node.func
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        base = func.value
        while isinstance(base, ast.Attribute):
            base = base.value
        return (base.id if isinstance(base, ast.Name) else "?", func.attr)
    return None


def unsafe_uses(source: str, filename: str) -> list[str]:
    problems = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            for module in names:
                if module.split(".")[0] in _BANNED_IMPORTS:
                    problems.append(f"{where}: imports {module}")
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        kwargs = {k.arg: k.value for k in node.keywords if k.arg}
        if name in _BANNED_NAMES:
            problems.append(f"{where}: calls {name}()")
        if isinstance(name, tuple):
            if name in _BANNED_CALLS:
                problems.append(f"{where}: calls {'.'.join(name)}()")
            if name[0] == "yaml" and name[1] in ("load", "load_all", "compose", "compose_all", "parse"):
                given = kwargs.get("Loader", node.args[1] if len(node.args) > 1 else None)
                loader_text = ast.unparse(given) if given is not None else "<none>"
                if "Safe" not in loader_text:
                    problems.append(f"{where}: yaml load with Loader={loader_text}")
            if name[1] == "load_model":
                safe = kwargs.get("safe_mode")
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    problems.append(f"{where}: {'.'.join(name)}() without safe_mode=True")
            if name[1] in ("load", "loadtxt") and name[0] in ("np", "numpy"):
                pickle = kwargs.get("allow_pickle")
                if pickle is not None and not (isinstance(pickle, ast.Constant) and pickle.value is False):
                    problems.append(f"{where}: numpy load with allow_pickle={ast.unparse(pickle)}")
            if name[0] == "subprocess" or name[1] in ("Popen", "run", "check_output", "call"):
                shell = kwargs.get("shell")
                if shell is not None and not (isinstance(shell, ast.Constant) and shell.value is False):
                    problems.append(f"{where}: subprocess with shell={ast.unparse(shell)}")
    return problems


def test_the_checker_catches_unsafe_code() -> None:
    bad = textwrap.dedent("""
        import pickle, yaml, keras, numpy as np, subprocess
        yaml.load(text, Loader=yaml.Loader)
        yaml.unsafe_load(text)
        eval("1")
        keras.models.load_model("m.keras")
        keras.saving.load_model("m.keras", safe_mode=False)
        np.load("x.npy", allow_pickle=True)
        subprocess.run("ls", shell=True)
    """)
    assert len(unsafe_uses(bad, "bad.py")) == 8
    good = "import yaml\nyaml.safe_load(t)\nyaml.compose(t, Loader=yaml.SafeLoader)\nyaml.load(t, yaml.SafeLoader)\n" \
           "keras.models.load_model(p, compile=False, safe_mode=True)\nnp.load(p, allow_pickle=False)\n"
    assert unsafe_uses(good, "good.py") == []


def test_package_uses_only_safe_loaders() -> None:
    problems = []
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        problems += unsafe_uses(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert problems == []
    # the spec loader composes YAML with the safe loader only
    loader = (PACKAGE / "spec" / "loader.py").read_text()
    assert "yaml.SafeLoader" in loader and "yaml.Loader)" not in loader


# --- Keras safe mode through the plugin -------------------------------------------------------------
LAMBDA_SCRIPT = """
import keras, sys
inp = keras.Input((8, 8, 1))
x = keras.layers.Lambda(lambda t: t * 2.0)(inp)
out = keras.layers.Dense(4)(keras.layers.Flatten()(x))
keras.Model(inp, out).save(sys.argv[1])
"""
DATA = """
import numpy as np

def load(ds, cache_dir):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (200, 8, 8, 1), dtype=np.uint8)
    y = np.arange(200) % 4
    return (x[:160], y[:160]), (x[160:], y[160:])
"""


@pytest.mark.slow
def test_keras_model_with_lambda_is_refused_through_pytest(run_pytest: PytestRunner, tmp_path: Path) -> None:
    pytest.importorskip("keras")
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", LAMBDA_SCRIPT, str(tmp_path / "lambda.keras")], check=True,
                   capture_output=True, timeout=300)
    marker = tmp_path / "pwned"
    (tmp_path / "tiny_data.py").write_text(DATA)
    (tmp_path / "spec.yaml").write_text(textwrap.dedent("""\
        version: 1
        name: lambda
        model: {keras: lambda.keras}
        dataset: {name: "tiny_data:load", preprocess: x/255}
        quantization: {mode: int8, representative_samples: 50}
        constraints: {max_size: 50KiB, io_dtype: int8}
        """))
    outcome, out = run_pytest.checked(["--tinyml-spec", "spec.yaml", "-o", f"tinyml_cache_dir={tmp_path / 'c'}"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    lines = [line for line in out.splitlines() if "Lambda layer" in line and "lambda.keras" in line]
    assert lines and all("safe mode" in line for line in lines), out
    assert not marker.exists()
