"""Check declarations (CheckInfo, or a plugin's plain attributes) and the run options' precedence."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tinyml.checks.base import CheckInfo, check_info, metrics_of
from pytest_tinyml.checks.registry import builtin_checks, builtin_metrics
from pytest_tinyml.kinds import Direction
from pytest_tinyml.options import Environment, RunOptions


def test_builtin_metric_table_is_unchanged() -> None:
    table = {name: m.to_dict() for name, m in builtin_metrics().items()}
    assert table == {
        "size_bytes": {"name": "size_bytes", "check": "size", "unit": "B", "worse": 1, "threshold": "size_bytes"},
        "arena_bytes": {"name": "arena_bytes", "check": "arena", "unit": "B", "worse": 1, "threshold": "arena_bytes"},
        "flash_bytes": {"name": "flash_bytes", "check": "flash", "unit": "B", "worse": 1, "threshold": None},
        "accuracy_pct": {"name": "accuracy_pct", "check": "accuracy", "unit": "%", "worse": -1,
                         "threshold": "accuracy_points"},
        "accuracy_drop_pt": {"name": "accuracy_drop_pt", "check": "accuracy_drop", "unit": "pt", "worse": 1,
                             "threshold": None},
        "latency_seconds": {"name": "latency_seconds", "check": "latency", "unit": "s", "worse": 1,
                            "threshold": "latency_seconds"},
    }
    assert list(table) == ["size_bytes", "arena_bytes", "flash_bytes", "accuracy_pct", "accuracy_drop_pt",
                           "latency_seconds"]


def test_builtin_checks_expose_their_declaration_as_attributes() -> None:
    for check in builtin_checks():
        info = check_info(check)
        assert info is type(check).info  # type: ignore[attr-defined]
        assert (check.name, check.key, check.metric, check.unit, check.direction) == (
            info.name, info.key, info.metric, info.unit, info.direction)
    markers = {c.name: check_info(c).markers for c in builtin_checks()}
    assert markers["firmware_bitexact"] == markers["latency"] == markers["firmware_ram"] == ("firmware",)
    assert markers["size"] == ()


class OldStyleCheck:  # a plugin's check written before CheckInfo: plain attributes
    name = "op_count"
    key = "max_ops"
    metric = "op_count"
    unit = "ops"
    direction = "lower"
    markers = ["slow"]


def test_plain_attribute_checks_still_declare_metrics() -> None:
    info = check_info(OldStyleCheck())
    assert info == CheckInfo(name="op_count", key="max_ops", metric="op_count", unit="ops",
                             direction=Direction.LOWER, markers=("slow",))
    metric = metrics_of([OldStyleCheck()])["op_count"]
    assert (metric.check, metric.unit, metric.worse, metric.threshold) == ("op_count", "ops", 1, None)


def test_explicit_settings_win_over_the_environment(tmp_path: Path) -> None:
    env = Environment.read({"TINYML_OFFLINE": "1", "TINYML_TFLM_SOURCES": str(tmp_path / "env"),
                            "TINYML_FIRMWARE_RUNTIME": "tinyml", "TFLM_ROOT": str(tmp_path / "root")})
    options = RunOptions.resolve(env, cache_dir=tmp_path, tflm_sources=tmp_path / "ini", firmware_runtime="tflm")
    assert (options.offline, options.tflm_sources, options.firmware_runtime, options.tflm_root) == (
        True, tmp_path / "ini", "tflm", tmp_path / "root")
    unset = RunOptions.resolve(env, cache_dir=tmp_path)
    assert (unset.tflm_sources, unset.firmware_runtime, unset.environment) == (tmp_path / "env", "tinyml", env)
    assert not RunOptions.resolve(Environment.read({"TINYML_OFFLINE": "0"}), cache_dir=tmp_path).offline
    with pytest.raises(AttributeError):
        options.offline = False  # type: ignore[misc]
