"""Long names from a model are clipped: bounded terminal output and reports, full value up to a bound."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.analysis.names import MAX_NAME_CHARS, clip

if TYPE_CHECKING:
    from conftest import PytestRunner


def test_clip() -> None:
    assert clip("abc") == "abc"
    assert clip("x" * 300) == "x" * 256 + "…(44 more)"
    assert clip("x" * 10, 4) == "xxxx…(6 more)"


def test_parser_keeps_names_up_to_the_bound(tflite_factory: ModuleType) -> None:
    info = parse_model(tflite_factory.custom_op_model("A" * 2_000_000), "long.tflite")
    assert info.ops[0].name == "A" * MAX_NAME_CHARS + "…(1,999,744 more)"
    assert info.custom_ops == [info.ops[0].name]


def test_two_megabyte_op_name_gives_bounded_output(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "long.tflite").write_bytes(tflite_factory.custom_op_model("A" * 2_000_000))
    outcome, out = run_pytest.checked(["--tinyml-model", "long.tflite", "-o", f"tinyml_cache_dir={tmp_path / 'c'}",
                                  "-rfs", "-k", "not firmware", "--tinyml-report", str(tmp_path / "r")], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    assert len(out) < 60_000, len(out)  # was 8 MB
    assert "A" * 256 + "…(1,999,744 more)" in out or "…" in out
    total = sum(p.stat().st_size for p in (tmp_path / "r").rglob("*") if p.is_file())
    assert total < 2_000_000, total  # was 20 MB for report.json alone
    report = json.loads(next((tmp_path / "r").rglob("*.json")).read_text())
    assert "A" * 256 + "…(1,999,744 more)" in json.dumps(report, ensure_ascii=False)


def test_names_are_made_printable_where_they_are_read(tflite_factory: ModuleType) -> None:
    hostile = 'EVIL\n#include "x"\n*/ system("touch /tmp/PWNED"); /*\x1b[2J\u202e\x00'
    assert clip(hostile) == 'EVIL\\n#include "x"\\n*/ system("touch /tmp/PWNED"); /*\\x1b[2J\\u202e\\x00'
    info = parse_model(tflite_factory.custom_op_model(hostile), "evil.tflite")
    name = info.ops[0].name
    assert "\n" not in name and "\x1b" not in name and "\u202e" not in name and "\x00" not in name
    assert name.startswith("EVIL\\n#include")


def test_hostile_custom_op_name_gives_one_line_failure(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "evil.tflite").write_bytes(tflite_factory.custom_op_model('EVIL\n#include "x"\n\x1b[2J system("id")'))
    outcome, out = run_pytest.checked(["--tinyml-model", "evil.tflite", "-o", f"tinyml_cache_dir={tmp_path / 'c'}",
                                  "-rf", "-m", "not firmware"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED evil.tflite::tflm_ops")]
    assert failed and "(EVIL\\n#inc" in failed[0], out
    assert "\x1b" not in out
