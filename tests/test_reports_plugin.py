"""``--tinyml-report`` and ``--tinyml-baseline`` through the real plugin (pytester, real .tflite files)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import jsonschema
import pytest

from pytest_tinyml import reports

if TYPE_CHECKING:
    from conftest import PytestRunner

pytest_plugins = ["pytester"]


@pytest.fixture
def spec(tflite_factory: ModuleType, pytester: pytest.Pytester) -> Path:
    (pytester.path / "m.tflite").write_bytes(tflite_factory.int8_cnn(0))
    path = pytester.path / "s.yaml"
    path.write_text(
        "version: 1\nname: s\nmodel: {tflite: m.tflite}\n"
        "constraints: {max_size: 50KiB, io_dtype: int8, regression: {size: 100}}\n"
    )
    return path


def test_report_files_from_a_run(run_pytest: PytestRunner, pytester: pytest.Pytester, spec: Path) -> None:
    result = run_pytest("--tinyml-spec", "s.yaml", "--tinyml-report", "out", report=None)
    assert result.ret == 0, result.stdout.str()
    out = pytester.path / "out"
    doc = json.loads((out / "report.json").read_text())
    jsonschema.Draft202012Validator(reports.schema()).validate(doc)
    (t,) = doc["targets"]
    assert t["label"] == "s.yaml" and t["kind"] == "spec"
    assert {i["check"]: i["status"] for i in t["items"]} == {"size": "passed", "int8_io": "passed"}
    assert t["model"]["num_ops"] == 6 and t["regression_thresholds"] == {"size_bytes": 100}
    assert (out / "report.md").read_text().startswith("## ✅ pytest-tinyml: 2 passed")
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    result.stdout.fnmatch_lines(["*tinyml summary*", "s.yaml*", "*size*51,200 B*PASS*"])


def test_size_regression_against_baseline_fails_the_run(
    run_pytest: PytestRunner, tflite_factory: ModuleType, pytester: pytest.Pytester, spec: Path
) -> None:
    assert run_pytest("--tinyml-spec", "s.yaml", "--tinyml-report", "before", report=None).ret == 0
    (pytester.path / "m.tflite").write_bytes(tflite_factory.int8_cnn(0, height=12, width=12))  # ~+1 KB
    result = run_pytest("--tinyml-spec",
        "s.yaml",
        "--tinyml-report",
        "after",
        "--tinyml-baseline",
        "before/report.json",
    report=None)
    assert result.ret == 1, result.stdout.str()
    doc = json.loads((pytester.path / "after" / "report.json").read_text())
    (regression,) = doc["baseline"]["regressions"]
    assert regression.startswith("s.yaml: size grew by ") and "constraints.regression.size" in regression


WIRING = "needs the plugin wiring described in the reports helper's report (check_baseline, outcome=)"


def test_bad_baseline_is_a_usage_error_before_anything_runs(
    run_pytest: PytestRunner, pytester: pytest.Pytester, spec: Path
) -> None:
    result = run_pytest("--tinyml-spec", "s.yaml", "--tinyml-baseline", "missing.json", report=None)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*missing.json: baseline report not found (fix: *"])


def test_terminal_summary_shows_deltas(
    run_pytest: PytestRunner, pytester: pytest.Pytester, spec: Path
) -> None:
    assert run_pytest("--tinyml-spec", "s.yaml", "--tinyml-report", "before", report=None).ret == 0
    result = run_pytest("--tinyml-spec", "s.yaml", "--tinyml-baseline", "before/report.json", report=None)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*constraint*limit*measured*vs baseline*verdict*",
            "*size*±0 B*PASS*",
            "no regressions against baseline*",
        ]
    )


def _without_time(doc: dict[str, object]) -> dict[str, object]:
    doc = dict(doc)
    doc.pop("generated", None)
    return doc


def test_same_report_and_export_serially_and_under_xdist(run_pytest: PytestRunner, tflite_factory: ModuleType,
    pytester: pytest.Pytester, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Models outside the rootdir keep their file in the node id, so ``-n 2 --dist loadfile`` runs every
    item (it used to run 7 of 14 and exit 0). Reports and export are built only from the items' records,
    which reach the controller the same way from xdist workers: report.json (but its timestamp) and every
    exported file are identical to a serial run's."""
    pytest.importorskip("xdist")
    outside = tmp_path_factory.mktemp("outside_models")
    for i in range(3):
        (outside / f"m{i}.tflite").write_bytes(tflite_factory.int8_cnn(i, filters=4 + 4 * i))
    pytester.makeini("[pytest]\n")
    common = ("-rA", "--tinyml-model", str(outside / "*.tflite"), "-m", "not firmware", "-o", "tinyml_cache_dir=cache")
    serial = run_pytest(*common, "--tinyml-report", "r1", "--tinyml-export", "e1", report=None)
    assert serial.ret == 0, serial.stdout.str()
    parallel = run_pytest(*common, "-n", "2", "--dist", "loadfile", "--junitxml=junit.xml",
                   "--tinyml-report", "r2", "--tinyml-export", "e2", report=None)
    assert parallel.ret == 0, parallel.stdout.str()
    ran = {line.split(" ", 1)[1] for line in parallel.outlines if line.startswith("PASSED ")}
    audit = ("size", "int8_io", "tflm_ops", "arena", "flash")
    assert ran == {f"{(outside / f'm{i}.tflite').as_posix()}::{name}" for i in range(3) for name in audit}
    classnames = {c.get("classname") for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")}
    assert len(classnames) == 3 and "" not in classnames, classnames
    one, two = (json.loads((pytester.path / d / "report.json").read_text()) for d in ("r1", "r2"))
    assert _without_time(one) == _without_time(two)
    assert one["summary"]["passed"] == 15 and len(one["targets"]) == 3
    for t in one["targets"]:
        assert t["arena"]["method"] and t["flash"]["model_bytes"] and t["model"]["num_ops"] == 6, t["label"]
    files = sorted(p.relative_to(pytester.path / "e1") for p in (pytester.path / "e1").rglob("*") if p.is_file())
    assert len(files) >= 3 * 3, files  # model data, resolver and arena header per model
    for rel in files:
        assert (pytester.path / "e1" / rel).read_bytes() == (pytester.path / "e2" / rel).read_bytes(), rel


def _firmware_toolchain_missing() -> str:
    from pytest_tinyml.emulate import toolchain_status

    status = toolchain_status()
    return "" if status.ok else ", ".join(status.missing)


@pytest.mark.skipif(bool(_firmware_toolchain_missing()),
                    reason=f"needs arm-none-eabi-gcc and qemu-system-arm (missing: {_firmware_toolchain_missing()})")
def test_fallback_runtime_is_said_once_and_in_every_report(
    run_pytest: PytestRunner,
    tflite_factory: ModuleType,
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Offline (the suite sets TINYML_OFFLINE), firmware items fall back to the project's runtime: one terminal
    line says why, the comparison table, report.json, report.md and report.html name the runtime per target."""
    monkeypatch.delenv("TFLM_ROOT", raising=False)
    monkeypatch.delenv("TINYML_TFLM_SOURCES", raising=False)  # a developer's local source cache
    for seed in (1, 2):
        (pytester.path / f"m{seed}.tflite").write_bytes(tflite_factory.int8_cnn(seed))
    result = run_pytest("--tinyml-model=m*.tflite", "--tinyml-firmware-samples", "2", "-k", "firmware",
                 "--tinyml-report", "rep", report=None)
    out = result.stdout.str()
    assert result.ret == 0, out
    said = [ln for ln in result.outlines if "firmware items ran the project's own runtime" in ln]
    assert len(said) == 1 and said[0].startswith("real TFLM unavailable (") and "offline" in said[0], out
    header = next(ln for ln in result.outlines if ln.lstrip().startswith("target "))
    assert "runtime" in header.split(), out
    rows = [ln for ln in result.outlines if ln.startswith(("  m1.tflite", "  m2.tflite"))]
    assert len(rows) == 2 and all(" tinyml " in row for row in rows), out
    doc = json.loads((pytester.path / "rep" / "report.json").read_text())
    jsonschema.Draft202012Validator(reports.schema()).validate(doc)
    assert [t["runtime"] for t in doc["targets"]] == ["tinyml", "tinyml"]
    # no max_latency in an audit: the estimate is still reported, as information (issue 12.3)
    assert all(t["metrics"]["latency_seconds"] > 0 and t["latency"]["judged"] is False for t in doc["targets"])
    assert all("real TFLM unavailable" in t["runtime_note"] for t in doc["targets"])
    md = (pytester.path / "rep" / "report.md").read_text()
    assert "| target | runtime |" in md and md.count("| tinyml |") == 2, md
    html = (pytester.path / "rep" / "report.html").read_text()
    assert html.count("<td>tinyml</td>") == 2 and html.count("firmware runtime") == 2, html
