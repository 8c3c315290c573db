"""A spec that builds its model, through the plugin: items, fixtures, cache, bad builders."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from test_build_pipeline import write_spec  # a sibling test module: tests/ is on sys.path for pytest

if TYPE_CHECKING:
    from conftest import PytestRunner

pytest_plugins = ["pytester"]

CONSTRAINTS = """\
board: mps2_an386
constraints:
  max_size: 50KiB
  io_dtype: int8
  ops: tflm
  min_accuracy: 50%
  max_accuracy_drop: 20pt
  arena: board
  flash: board
  max_latency: 10s
  firmware: {samples: 20}
"""


def test_built_spec_items_and_fixtures(run_pytest: PytestRunner, pytester: pytest.Pytester) -> None:
    write_spec(pytester.path, extra=CONSTRAINTS)
    pytester.makepyfile(
        test_user="""
import pytest

@pytest.mark.tinyml(spec="s.yaml")
def test_artifacts(tinyml_keras_model, tinyml_dataset, tinyml_tflite_files, tinyml_measurements):
    assert tinyml_keras_model.count_params() > 0
    assert tinyml_dataset.x_test.shape[1:] == (8, 8, 1)
    assert set(tinyml_tflite_files) == {"int8"}
    assert tinyml_measurements.accuracy.n == len(tinyml_dataset.y_test)
"""
    )
    pytester.makeini("[pytest]\ntinyml_cache_dir = cache\n")
    result = run_pytest("--tinyml-spec", "s.yaml")
    seen = run_pytest.outcomes(result)
    for name in ("size", "int8_io", "tflm_ops", "arena", "flash", "accuracy", "accuracy_drop",
                 "firmware_bitexact", "firmware_ram"):
        assert seen.get(f"s.yaml::{name}") == "PASSED", (name, result.stdout.str()[-3000:])
    # max_latency is judged on real TFLM only; the project's runtime (no TFLM sources) shows it as information
    if "runtime tflm" in result.stdout.str():  # the summary heading names the firmware runtime
        assert seen.get("s.yaml::latency") == "PASSED", result.stdout.str()[-3000:]
    else:
        result.stdout.fnmatch_lines(["*estimated latency (information; the project's own runtime ran*",
                                     "SKIPPED [[]1[]] s.yaml:*: latency: not judged: the firmware ran the project's own*"])
    result.stdout.fnmatch_lines(["*firmware_bitexact*0 mismatching samples*PASS*"])
    fixtures = run_pytest("test_user.py")
    assert run_pytest.outcomes(fixtures) == {"test_user.py::test_artifacts": "PASSED"}, fixtures.stdout.str()[-3000:]


def test_builder_that_does_not_import(run_pytest: PytestRunner, pytester: pytest.Pytester) -> None:
    write_spec(pytester.path, model="{builder: no_such_module:build}", extra=CONSTRAINTS)
    result = run_pytest("--tinyml-spec", "s.yaml")
    assert result.ret == 1
    text = result.stdout.str()
    assert "Traceback" not in text
    result.stdout.fnmatch_lines(["size: s.yaml:3:*no_such_module*"])
