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


def test_two_megabyte_op_name_gives_bounded_output(run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path) -> None:
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


def test_hostile_custom_op_name_gives_one_line_failure(run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path) -> None:
    (tmp_path / "evil.tflite").write_bytes(tflite_factory.custom_op_model('EVIL\n#include "x"\n\x1b[2J system("id")'))
    outcome, out = run_pytest.checked(["--tinyml-model", "evil.tflite", "-o", f"tinyml_cache_dir={tmp_path / 'c'}",
                                  "-rf", "-m", "not firmware"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    failed = [ln for ln in out.splitlines() if ln.startswith("FAILED evil.tflite::tflm_ops")]
    assert failed and "(EVIL\\n#inc" in failed[0], out
    assert "\x1b" not in out


# --- issue 19 item 7: a file name is data ----------------------------------------------------------
#: ESC (a colour that fakes PASS), an OSC 8 hyperlink ended by BEL, CR and a newline.
HOSTILE_FILE = "evil\x1b[32mPASS\x1b]8;;http:x\x07link\x1b]8;;\x07\r\nz.tflite"
SHOWN = "evil\\x1b[32mPASS\\x1b]8;;http:x\\x07link\\x1b]8;;\\x07\\r\\nz.tflite"
CONTROL = ("\x1b", "\x07", "\r")


def test_one_sanitizer_leaves_ordinary_names_alone() -> None:
    from pytest_tinyml._util.text import printable
    from pytest_tinyml.analysis import names
    from pytest_tinyml.items import file_nodeid

    assert names.printable is printable
    ordinary = "models/kws v2 (µ-int8) é.tflite"
    assert printable(ordinary) is ordinary
    assert printable(HOSTILE_FILE) == SHOWN
    assert printable(SHOWN) == SHOWN  # escaping twice changes nothing
    assert file_nodeid(Path("/r/models/a b.tflite"), Path("/r")) == "models/a b.tflite"
    assert file_nodeid(Path("/r") / HOSTILE_FILE, Path("/r")) == SHOWN


def test_control_characters_in_a_model_file_name_are_shown_escaped_everywhere(tflite_factory: ModuleType, run_pytest: PytestRunner, tmp_path: Path) -> None:
    import xml.etree.ElementTree as ET

    (tmp_path / HOSTILE_FILE).write_bytes(tflite_factory.float_fc(0))  # judged: int8_io fails, so JUnit has a failure
    (tmp_path / "good.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    outcome, out = run_pytest.checked(["--tinyml-model", "*.tflite", "-m", "not firmware", "-rA", "--junitxml", "j.xml",
                                  "-o", "junit_family=xunit1", "--tinyml-report", "r", "-o", f"tinyml_cache_dir={tmp_path / 'c'}"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    assert not any(ch in out for ch in CONTROL), repr(out[-2000:])
    ids = [ln.split(" ", 1)[1].split(" - ")[0] for ln in out.splitlines() if ln.startswith(("PASSED ", "FAILED "))]
    assert {i.rsplit("::", 1)[0] for i in ids} == {SHOWN, "good.tflite"}, out
    assert f"FAILED {SHOWN}::int8_io" in out
    assert any(ln.startswith(f"  {SHOWN}") for ln in out.splitlines()), out  # the summary table row
    tree = ET.parse(tmp_path / "j.xml")  # stays valid XML
    cases = tree.getroot().findall(".//testcase")
    hostile = [c for c in cases if c.get("classname") != "good.tflite"]
    assert len(hostile) == len(cases) - 5 >= 4  # pytest splits the id at its "[": all of it is still there
    assert all(SHOWN in f"{c.get('classname')}{c.get('name')}" for c in hostile)
    assert all(c.get("file") == SHOWN for c in hostile)  # the item's location (xunit1 writes it)
    junit = (tmp_path / "j.xml").read_text()
    assert not any(ch in junit for ch in CONTROL)
    from pytest_tinyml.reports.markdown import md

    for name, shown in (("report.md", md(SHOWN)), ("report.html", SHOWN)):  # Markdown escapes \ and [ again
        text = (tmp_path / "r" / name).read_text()
        assert not any(ch in text for ch in CONTROL), name
        assert shown in text, name
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    target = next(t for t in report["targets"] if t["label"] != "good.tflite")
    assert target["label"] == SHOWN
    assert target["model_path"] == HOSTILE_FILE  # the file read is the real one
    assert "the file name has control characters; shown with them escaped (\\x1b, \\n)" in target["notes"]
    good = next(t for t in report["targets"] if t["label"] == "good.tflite")
    assert not any("control characters" in n for n in good["notes"])
    outcome, out = run_pytest.checked(["--tinyml-model", "*.tflite", "--co", "-v"], tmp_path)  # the collection tree
    assert outcome.kind == "pytest_exit_0", out
    assert f"<TinyMLFile {SHOWN}>" in out and not any(ch in out for ch in CONTROL)
