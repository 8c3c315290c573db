"""The plugin end to end, run inside pytest with ``pytester`` on small real models."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import PytestRunner

pytest_plugins = ["pytester"]


@pytest.fixture
def models(tflite_factory: ModuleType, pytester: pytest.Pytester) -> Path:
    root = pytester.path
    (root / "int8.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (root / "dynamic.tflite").write_bytes(tflite_factory.dynamic_range_fc(0))
    (root / "custom.tflite").write_bytes(tflite_factory.custom_op_model("EthosU"))
    return root


def test_audit_int8_model_defaults(run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path) -> None:
    result = run_pytest("--tinyml-model", "int8.tflite", "--junitxml=junit.xml", "-k", "not firmware")
    seen = run_pytest.outcomes(result)
    for name in ("size", "int8_io", "tflm_ops", "arena", "flash"):
        assert seen.get(f"int8.tflite::{name}") == "PASSED", (name, result.stdout.str())
    xml = (pytester.path / "junit.xml").read_text()
    assert 'name="measured"' in xml and 'name="limit"' in xml and 'name="unit"' in xml
    result.stdout.fnmatch_lines(["*tinyml summary*", "*int8.tflite*", "*size*51,200 B*PASS*"])


def test_size_failure_message(run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path) -> None:
    spec = pytester.path / "tight.yaml"
    spec.write_text("version: 1\nname: tight\nmodel: {tflite: int8.tflite}\nconstraints: {max_size: 1KiB}\n")
    result = run_pytest("--tinyml-spec", "tight.yaml")
    size = len((pytester.path / "int8.tflite").read_bytes())
    result.stdout.fnmatch_lines([f"*size: {size:,} B > limit 1,024 B (1 KiB); largest tensors: *", "*fix: the model is already int8*"])
    assert result.ret == 1


def test_dynamic_range_is_not_deployable(
    run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path
) -> None:
    result = run_pytest("--tinyml-model", "dynamic.tflite", "-k", "tflm_ops or int8_io")
    result.stdout.fnmatch_lines(["*tflm_ops: TFLM refused the model (FULLY_CONNECTED): Input type: FLOAT32 with filter type: INT8 not supported*", "*fix: *representative dataset*"])
    assert run_pytest.outcomes(result)["dynamic.tflite::int8_io"] == "FAILED"


def test_unknown_custom_op(run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path) -> None:
    result = run_pytest("--tinyml-model", "custom.tflite", "-k", "tflm_ops")
    result.stdout.fnmatch_lines(["tflm_ops: TFLM refused the model (EthosU): Failed to get registration*", "fix: register custom op EthosU*"])
    assert result.ret == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"\x00" * 3, "only 3 bytes"),
        (b"hello world, not a model at all" * 4, "not a TFLite flatbuffer"),
        (b"WRNG", "wrong"),
        (None, "truncated"),
    ],
)
def test_bad_model_files_fail_with_one_line(
    run_pytest: PytestRunner,
    tflite_factory: ModuleType,
    pytester: pytest.Pytester,
    content: bytes | None,
    message: str,
) -> None:
    model = tflite_factory.int8_cnn(0)
    if content == b"WRNG":
        data = model[:4] + b"XYZ9" + model[8:]
    else:
        data = content if content is not None else model[:200]
    (pytester.path / "bad.tflite").write_bytes(data)
    result = run_pytest("--tinyml-model", "bad.tflite", "-k", "size")
    assert result.ret == 1
    text = result.stdout.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text
    failure = [line for line in result.outlines if line.startswith("size: bad.tflite")]
    assert failure and message.lower() in failure[0].lower(), text


def test_option_errors(run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path) -> None:
    result = run_pytest("--tinyml-model", "missing.tflite")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--tinyml-model missing.tflite: no such file (fix: check the path)*"])
    result = run_pytest("--tinyml-model", "nothing*.tflite")
    result.stderr.fnmatch_lines(["*matches no file*"])
    (pytester.path / "adir").mkdir()
    result = run_pytest("--tinyml-model", "adir")
    result.stderr.fnmatch_lines(["*is a directory*"])
    result = run_pytest("--tinyml-model", "int8.tflite", "--tinyml-board", "stm32f406")
    result.stderr.fnmatch_lines(["*unknown board 'stm32f406'; did you mean stm32f405*"])
    result = run_pytest("--tinyml-spec", "int8.tflite")
    result.stderr.fnmatch_lines(["*expected a .yaml or .yml file*"])


def test_broken_spec_fails_alone(run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path) -> None:
    (pytester.path / "good.yaml").write_text("version: 1\nname: g\nmodel: {tflite: int8.tflite}\nconstraints: {max_size: 50KiB}\n")
    (pytester.path / "bad.yaml").write_text("version: 1\nname: b\nmodel: {tflite: int8.tflite}\nconstraints: {max_sise: 50KiB}\n")
    result = run_pytest("--tinyml-spec", "*.yaml")
    seen = run_pytest.outcomes(result)
    assert seen["good.yaml::size"] == "PASSED"
    assert seen["bad.yaml::spec"] == "FAILED"
    result.stdout.fnmatch_lines(["bad.yaml:4:*constraints.max_sise: unknown key 'max_sise' (fix: did you mean 'max_size'?)"])


def test_ini_and_board_override(run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path) -> None:
    pytester.makeini("[pytest]\ntinyml_model = int8.tflite\ntinyml_board = rp2040\n")
    result = run_pytest("-k", "arena")
    assert run_pytest.outcomes(result) == {"int8.tflite::arena": "PASSED"}
    result.stdout.fnmatch_lines(["*int8.tflite*(board rp2040)*"])


def test_third_party_check_plugin(run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path) -> None:
    pytester.makeconftest(
        """
from pytest_tinyml.checks.base import Verdict

class MaxOps:
    name = "max_ops"
    def applies(self, constraints):
        return True
    def evaluate(self, m):
        n = len(m.model_info.ops)
        return Verdict("max_ops", n <= 3, n, 3, "ops", f"max_ops: {n} ops, limit 3")

def pytest_tinyml_checks():
    return [MaxOps()]

def pytest_tinyml_boards():
    return [("my_board", {"core": "cortex-m4f", "clock": "100MHz", "flash": "512KiB", "ram": "8KiB", "source": "test"})]
"""
    )
    result = run_pytest("--tinyml-model", "int8.tflite", "--tinyml-board", "my_board", "-k", "max_ops or arena")
    seen = run_pytest.outcomes(result)
    assert seen["int8.tflite::max_ops"] == "FAILED"
    result.stdout.fnmatch_lines(["*max_ops: 6 ops, limit 3*"])
    # my_board keeps 8 KiB of an 8 KiB RAM as reserve: nothing is left for the arena
    assert seen["int8.tflite::arena"] == "FAILED"


def test_third_party_metric_reaches_reports_and_baseline(
    run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path
) -> None:
    """A plugin check that declares a metric gets a column in report.json and a baseline delta, like the
    built-in ones: the report tables come from the registered checks."""
    pytester.makeconftest(
        """
from pytest_tinyml.checks.base import Verdict

class OpCount:
    name = "op_count"
    key = "max_ops"
    metric = "op_count"
    unit = "ops"
    direction = "lower"
    def applies(self, constraints):
        return True
    def evaluate(self, m):
        n = len(m.model_info.ops)
        return Verdict("op_count", True, n, 100, "ops", f"op_count: {n} ops")

def pytest_tinyml_checks():
    return [OpCount()]
"""
    )
    result = run_pytest("--tinyml-model", "int8.tflite", "-k", "op_count or size", "--tinyml-report", "r")
    assert result.ret == 0, result.stdout.str()
    doc = json.loads((pytester.path / "r" / "report.json").read_text())
    assert doc["metrics"]["op_count"] == {"name": "op_count", "check": "op_count", "unit": "ops", "worse": 1,
                                          "threshold": None}
    assert doc["targets"][0]["metrics"]["op_count"] == 6
    doc["targets"][0]["metrics"]["op_count"] = 4
    (pytester.path / "base.json").write_text(json.dumps(doc))
    result = run_pytest("--tinyml-model", "int8.tflite", "-k", "op_count", "--tinyml-baseline", "base.json")
    result.stdout.fnmatch_lines(["*op_count*+2*"])


def test_audit_does_not_import_tensorflow(
    run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path
) -> None:
    pytester.makeconftest(
        """
import sys, json
def pytest_sessionfinish(session):
    heavy = [m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules]
    open("modules.json", "w").write(json.dumps(heavy))
"""
    )
    run_pytest("--tinyml-model", "int8.tflite", "-k", "not firmware")
    assert json.loads((pytester.path / "modules.json").read_text()) == []


def test_user_fixtures(run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path) -> None:
    (pytester.path / "s.yaml").write_text("version: 1\nname: s\nmodel: {tflite: int8.tflite}\nconstraints: {max_size: 50KiB}\n")
    pytester.makepyfile(
        test_mine="""
import pytest

@pytest.mark.tinyml(spec="s.yaml")
def test_ops(tinyml_measurements, tinyml_tflite, tinyml_spec):
    assert tinyml_spec.name == "s"
    assert tinyml_tflite.name == "int8.tflite"
    assert "CONV_2D" in tinyml_measurements.model_info.op_names
"""
    )
    result = run_pytest("test_mine.py")
    assert run_pytest.outcomes(result) == {"test_mine.py::test_ops": "PASSED"}


def test_hung_tflm_fails_after_the_ini_timeout(run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # FAKE: the child's documented fault injection makes host TFLM hang; a real hang cannot be caused on demand.
    monkeypatch.setenv("PYTEST_TINYML_FAKE_CHILD_FAULT", "hang")
    pytester.makeini("[pytest]\ntinyml_tflm_timeout = 2\n")
    result = run_pytest("--tinyml-model", "int8.tflite", "-k", "tflm_ops or arena")
    seen = run_pytest.outcomes(result)
    assert seen["int8.tflite::tflm_ops"] == "FAILED"
    result.stdout.fnmatch_lines(
        ["tflm_ops: TFLM did not finish allocating the model (timed out)", "*arena*SKIP*TFLM cannot allocate this model*"]
    )
    assert any(
        line.startswith("SKIPPED [1] int8.tflite:") and "arena: TFLM cannot allocate this model" in line and "to enable: " in line
        for line in result.outlines
    )
    pytester.makeini("[pytest]\ntinyml_tflm_timeout = soon\n")
    bad = run_pytest("--tinyml-model", "int8.tflite")
    bad.stderr.fnmatch_lines(["*tinyml_tflm_timeout = 'soon': expected a positive number of seconds*"])


def test_real_tflm_runtime_needs_tflm_root(
    run_pytest: PytestRunner, pytester: pytest.Pytester, models: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TFLM_ROOT", raising=False)
    monkeypatch.delenv("TINYML_TFLM_SOURCES", raising=False)  # a developer's local source cache
    result = run_pytest("--tinyml-model", "int8.tflite", "--tinyml-firmware-runtime", "tflm", "-k", "firmware_bitexact")
    result.stdout.fnmatch_lines(["*firmware_bitexact*SKIP*"])
    assert any("TFLM_ROOT" in line and line.startswith("SKIPPED") for line in result.outlines), result.stdout.str()
