"""Hostile baselines: refused with one line naming the field, or failing the gate; never a silent pass."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import pytest

from pytest_tinyml.reports.baseline import BaselineError, compare, load_baseline

if TYPE_CHECKING:
    from conftest import PytestRunner


def target(label: str, size: Any = 2928) -> dict[str, Any]:
    return {
        "label": label, "kind": "model", "spec": None, "spec_name": None, "mode": None, "board": "nrf52840",
        "model_path": label, "sha256": None, "size_bytes": 2928, "items": [],
        "metrics": {"size_bytes": size, "flash_bytes": None, "arena_bytes": 900, "accuracy_pct": None,
                    "accuracy_drop_pt": None, "latency_seconds": None},
        "regression_thresholds": {"size_bytes": 0}, "model": None, "arena": None, "flash": None, "accuracy": None,
        "notes": [], "baseline": None,
    }


def report(*targets: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "pytest-tinyml/report", "version": 1, "generated": "2026-01-01T00:00:00Z",
        "tool": {"name": "pytest-tinyml", "version": "0"},
        "summary": {"targets": len(targets), "passed": 0, "failed": 0, "skipped": 0, "error": 0},
        "targets": list(targets), "baseline": None,
    }


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "base.json"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(BaselineError) as err:
        load_baseline(write(tmp_path, text))
    msg = str(err.value)
    assert "\n" not in msg and "fix:" in msg and len(msg) < 800, msg
    return msg


def test_valid_baseline_loads(tmp_path: Path) -> None:
    doc = report(target("m.tflite"))
    assert load_baseline(write(tmp_path, json.dumps(doc))) == doc


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_metric_is_refused_naming_the_field(tmp_path: Path, token: str) -> None:
    text = json.dumps(report(target("m.tflite", size=12345))).replace("12345", token)
    assert "field targets[0].metrics.size_bytes holds" in refused(tmp_path, text)


def test_five_thousand_digit_integer_is_refused(tmp_path: Path) -> None:
    text = json.dumps(report(target("m.tflite", size=12345))).replace("12345", "9" * 5000)
    assert "targets[0].metrics.size_bytes holds a 5,000-digit integer" in refused(tmp_path, text)


def test_wrong_type_is_refused_naming_the_field(tmp_path: Path) -> None:
    msg = refused(tmp_path, json.dumps(report(target("m.tflite", size="small"))))
    assert "does not match the report schema" in msg and "targets[0].metrics.size_bytes" in msg


@pytest.mark.parametrize("depth", [200, 200_000])
def test_deep_nesting_is_refused(tmp_path: Path, depth: int) -> None:
    doc = report(target("m.tflite"))
    text = json.dumps(doc).replace('"notes": []', '"notes": ' + "[" * depth + "]" * depth)
    assert "nested" in refused(tmp_path, text)


def test_baseline_sharing_no_target_is_a_regression() -> None:
    comp = compare(report(target("now.tflite")), report(target("other.tflite")), "base.json")
    assert len(comp.regressions) == 1 and "shares no target with this run" in comp.regressions[0]
    comp = compare(report(target("now.tflite")), report(), "base.json")
    assert "shares no target" in comp.regressions[0] and "baseline targets: none" in comp.regressions[0]


def test_renamed_label_is_a_regression() -> None:
    now = report(target("a.tflite"), target("renamed.tflite"))
    base = report(target("a.tflite"), target("b.tflite"))
    comp = compare(now, base, "base.json")
    assert len(comp.regressions) == 1 and "renamed.tflite are not in baseline" in comp.regressions[0]
    # a subset run (targets only missing, none new) is not a regression
    assert compare(report(target("a.tflite")), base, "base.json").regressions == []


def test_hostile_baselines_through_the_plugin(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "m.tflite").write_bytes(tflite_factory.int8_cnn())
    args = ["--tinyml-model", "m.tflite", "-o", f"tinyml_cache_dir={tmp_path / 'c'}", "-k", "size"]
    good = report(target("m.tflite", size=12345))
    (tmp_path / "nan.json").write_text(json.dumps(good).replace("12345", "NaN"))
    outcome, out = run_pytest.checked([*args, "--tinyml-baseline", "nan.json"], tmp_path)
    assert outcome.kind == "pytest_exit_4", out
    assert "nan.json: baseline report field targets[0].metrics.size_bytes holds NaN" in out
    other = copy.deepcopy(good)
    other["targets"][0]["label"] = "someone_else.tflite"
    (tmp_path / "other.json").write_text(json.dumps(other))
    outcome, out = run_pytest.checked([*args, "--tinyml-baseline", "other.json"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    assert "shares no target with this run" in out
