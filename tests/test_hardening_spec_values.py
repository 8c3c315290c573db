"""Any bad spec value fails only its own ``::spec`` item, with file:line; numbers are bounded."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

from pytest_tinyml.errors import SpecError
from pytest_tinyml.spec import load_spec
from pytest_tinyml.spec.units import UnitError, parse_frequency, parse_points, parse_size, parse_time

if TYPE_CHECKING:
    from conftest import PytestRunner

HOSTILE = ["1e308GiB", "1e308KB", "1e308Kb", "1e308", "1e308GHz", "1e308s", 10**5000, -(10**5000),
           "9" * 500 + "KiB", 1e308, float("nan"), float("inf"), 2**41, "x" * 1_000_000]


@pytest.mark.parametrize("parse", [parse_size, parse_time, parse_frequency, parse_points])
def test_unit_parsers_raise_only_unit_errors_with_short_messages(parse: object) -> None:
    for value in HOSTILE:
        try:
            parse(value)  # type: ignore[operator]
        except UnitError as exc:
            assert len(str(exc)) < 300
        else:
            raise AssertionError(f"{parse} accepted a hostile value")


def spec_text(max_size: str) -> str:
    return f"version: 1\nname: s\nmodel: {{tflite: m.tflite}}\nconstraints:\n  max_size: {max_size}\n"


@pytest.mark.parametrize("value", ["1e308GiB", "1e308", "1e400KiB", "9" * 5000], ids=["gib", "bare", "inf", "digits"])
def test_overflowing_size_is_a_spec_error_with_line(
    tflite_factory: ModuleType, tmp_path: Path, value: str
) -> None:
    (tmp_path / "m.tflite").write_bytes(tflite_factory.int8_cnn())
    path = tmp_path / "bad.yaml"
    path.write_text(spec_text(value))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert f"{path}:5:" in str(err.value) and "\n" not in str(err.value) and len(str(err.value)) < 400


def test_bad_spec_fails_its_item_and_the_other_spec_runs(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "m.tflite").write_bytes(tflite_factory.int8_cnn())
    (tmp_path / "bad.yaml").write_text(spec_text("1e308GiB"))
    (tmp_path / "good.yaml").write_text(spec_text("50KiB"))
    outcome, out = run_pytest.checked(["--tinyml-spec", "bad.yaml", "--tinyml-spec", "good.yaml",
                                  "-o", f"tinyml_cache_dir={tmp_path / 'c'}", "-rfE", "-k", "spec or size"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    assert "FAILED bad.yaml::spec" in out and "bad.yaml:5" in out
    assert "good.yaml::size" not in out.split("short test summary")[-1]  # passed, not in the failure list
    assert "1 passed" in out or "2 passed" in out
