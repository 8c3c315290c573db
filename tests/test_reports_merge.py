"""``pytest-tinyml merge``: the shards' reports combine into the report one run writes, gated like a run, and
shards that cannot be merged are refused with one line naming the file."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest

from pytest_tinyml import __version__, cli, reports
from pytest_tinyml.kinds import ItemStatus
from pytest_tinyml.records import ItemRecord, TargetRecord
from pytest_tinyml.reports.baseline import annotate, compare
from pytest_tinyml.reports.collect import build_report

if TYPE_CHECKING:
    from conftest import PytestRunner

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
STAMP = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")


def _masked(path: Path) -> bytes:
    """The file with its timestamps masked (the reports hold no durations)."""
    return STAMP.sub(b"<time>", path.read_bytes())


def _merge_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m pytest_tinyml.cli merge ...`` in a child process, as CI would run the console script."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest_tinyml.cli", "merge", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_merged_shards_equal_one_run(
    run_pytest: PytestRunner, tflite_factory: ModuleType, pytester: pytest.Pytester
) -> None:
    """One run over 3 models and the merge of 2 shards write the same report.json, report.md and report.html,
    byte for byte but the timestamps: split by model file (one shard under pytest-xdist when it is installed)
    and split by check (each model's items in both shards)."""
    for i in range(3):
        (pytester.path / f"m{i}.tflite").write_bytes(tflite_factory.int8_cnn(i, filters=4 + 4 * i))
    pytester.makeini("[pytest]\n")
    common = ("-m", "not firmware", "-o", "tinyml_cache_dir=cache")
    whole = run_pytest("--tinyml-model=m*.tflite", *common, "--tinyml-report", "all", report=None)
    assert whole.ret == 0, whole.stdout.str()
    try:
        import xdist  # noqa: F401

        parallel: tuple[str, ...] = ("-n", "2", "--dist", "loadfile")
    except ImportError:
        parallel = ()
    one = run_pytest("--tinyml-model=m0.tflite", "--tinyml-model=m2.tflite", *common, *parallel,
                     "--tinyml-report", "shard-1", report=None)
    assert one.ret == 0, one.stdout.str()
    two = run_pytest("--tinyml-model=m1.tflite", *common, "--tinyml-report", "shard-2", report=None)
    assert two.ret == 0, two.stdout.str()
    done = _merge_cli("merged", "shard-2", "shard-1/report.json", cwd=pytester.path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[0] == "merged 2 shard(s): 3 target(s), 15 passed", done.stdout
    for name in ("report.json", "report.md", "report.html"):
        assert _masked(pytester.path / "merged" / name) == _masked(pytester.path / "all" / name), name
    doc = json.loads((pytester.path / "merged" / "report.json").read_text())
    jsonschema.Draft202012Validator(reports.schema()).validate(doc)
    assert [t["label"] for t in doc["targets"]] == ["m0.tflite", "m1.tflite", "m2.tflite"]
    # a split by item (as pytest-split makes): every target's items in both shards, joined again
    for shard, keep in (("by-check-1", "size or arena"), ("by-check-2", "not (size or arena)")):
        part = run_pytest("--tinyml-model=m*.tflite", *common, "-k", keep, "--tinyml-report", shard, report=None)
        assert part.ret == 0, part.stdout.str()
        assert len(json.loads((pytester.path / shard / "report.json").read_text())["targets"]) == 3
    done = _merge_cli("joined", "by-check-1", "by-check-2", cwd=pytester.path)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("report.json", "report.md", "report.html"):
        assert _masked(pytester.path / "joined" / name) == _masked(pytester.path / "all" / name), name


def test_merge_gates_on_a_regression_against_the_baseline(
    run_pytest: PytestRunner, tflite_factory: ModuleType, pytester: pytest.Pytester
) -> None:
    """``--baseline`` gates the merged result as ``--tinyml-baseline`` gates a run: exit 1 on a regression
    beyond ``constraints.regression``, the regression in report.json; exit 0 against the unchanged report."""
    for name, seed in (("a", 0), ("b", 1)):
        (pytester.path / f"{name}.tflite").write_bytes(tflite_factory.int8_cnn(seed))
        (pytester.path / f"{name}.yaml").write_text(
            f"version: 1\nname: {name}\nmodel: {{tflite: {name}.tflite}}\n"
            "constraints: {max_size: 50KiB, io_dtype: int8, regression: {size: 100}}\n"
        )
    pytester.makeini("[pytest]\n")
    for shard, spec in (("s1", "a.yaml"), ("s2", "b.yaml")):
        assert run_pytest("--tinyml-spec", spec, "--tinyml-report", f"before-{shard}", report=None).ret == 0
    assert _merge_cli("before", "before-s1", "before-s2", cwd=pytester.path).returncode == 0
    (pytester.path / "b.tflite").write_bytes(tflite_factory.int8_cnn(1, height=12, width=12))  # ~+1 KB
    for shard, spec in (("s1", "a.yaml"), ("s2", "b.yaml")):
        run_pytest("--tinyml-spec", spec, "--tinyml-report", f"after-{shard}", report=None)
    same = _merge_cli("same", "before-s1", "before-s2", "--baseline", "before/report.json", cwd=pytester.path)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "no regressions against baseline before/report.json" in same.stdout
    worse = _merge_cli("after", "after-s1", "after-s2", "--baseline", "before/report.json", cwd=pytester.path)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    (line,) = [ln for ln in worse.stdout.splitlines() if ln.startswith("regression: ")]
    assert line.startswith("regression: b.yaml: size grew by ") and "constraints.regression.size" in line
    doc = json.loads((pytester.path / "after" / "report.json").read_text())
    assert doc["baseline"]["regressions"] == [line.removeprefix("regression: ")]
    assert [t["baseline"]["label"] for t in doc["targets"]] == ["a.yaml", "b.yaml"]


# --- refusals and gating on crafted documents (no pytest run) ----------------------------------------------
def _report(*labels: str, size: int = 1000, threshold: float | None = None) -> dict[str, Any]:
    """A report document as a run writes it, one ``size`` item per label."""
    results = []
    for label in labels:
        info = TargetRecord(label=label, kind="model", board="nrf52840",
                            regression={} if threshold is None else {"size_bytes": threshold})
        verdict = {"name": "size", "passed": True, "measured": size, "limit": 51200, "unit": "B",
                   "message": f"{size} B", "details": [], "fix": None, "extra": {}}
        results.append(ItemRecord(nodeid=f"{label}::size", name="size", check="size", status=ItemStatus.PASSED,
                                  info=info, verdict=verdict))
    return build_report(SimpleNamespace(results=results))


def _shard(folder: Path, doc: dict[str, Any]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.json").write_text(json.dumps(doc))
    return folder


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["merge", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_merge_in_process_recounts_the_summary_and_orders_targets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    compared = _report("z.tflite", "a.tflite")  # a shard run with --tinyml-baseline: its comparison is dropped
    annotate(compared, compare(compared, _report("a.tflite", size=900), "old.json"))
    assert compared["baseline"] is not None and compared["targets"][0]["baseline"] is not None
    one = _shard(tmp_path / "one", compared)
    two = _shard(tmp_path / "two", _report("m.tflite"))
    code, out, err = _run(capsys, str(tmp_path / "out"), str(one), str(two))
    assert (code, err) == (0, ""), out
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert [t["label"] for t in doc["targets"]] == ["a.tflite", "m.tflite", "z.tflite"]
    assert doc["summary"] == {"targets": 3, "passed": 3, "failed": 0, "skipped": 0, "error": 0}
    expected = _report("a.tflite", "m.tflite", "z.tflite")
    assert {**doc, "generated": None} == {**expected, "generated": None}


def test_merge_exit_code_gates_regressions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _shard(tmp_path / "base", _report("a.tflite", "b.tflite", size=1000))
    one = _shard(tmp_path / "one", _report("a.tflite", size=1050, threshold=100))  # within 100 B
    two = _shard(tmp_path / "two", _report("b.tflite", size=1200, threshold=100))  # 200 B worse
    code, out, _ = _run(capsys, str(tmp_path / "ok"), str(one), "--baseline", str(base / "report.json"))
    assert code == 0 and "no regressions against baseline" in out, out
    code, out, _ = _run(capsys, str(tmp_path / "out"), str(one), str(two), "--baseline", str(base / "report.json"))
    assert code == 1, out
    assert [ln for ln in out.splitlines() if ln.startswith("regression: ")] == [
        "regression: b.tflite: size grew by 200 B (1,000 B → 1,200 B), more than the 100 B allowed by "
        "constraints.regression.size"
    ]


def test_a_failed_item_in_a_shard_fails_the_merge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = _report("a.tflite")
    doc["targets"][0]["items"][0]["status"] = "failed"
    doc["summary"]["passed"], doc["summary"]["failed"] = 0, 1
    code, out, _ = _run(capsys, str(tmp_path / "out"), str(_shard(tmp_path / "one", doc)))
    assert code == 1 and out.startswith("merged 1 shard(s): 1 target(s), 1 failed"), out


def _assert_refused(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (out, err)
    assert out == "" and "Traceback" not in err, (out, err)
    (line,) = err.splitlines()
    assert line.startswith("pytest-tinyml merge: ") and "(fix: " in line, line
    for needle in needles:
        assert needle in line, (needle, line)


def test_shards_of_another_plugin_version_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _shard(tmp_path / "one", _report("a.tflite"))
    other = _report("b.tflite")
    other["tool"]["version"] = "0.0.1"
    two = _shard(tmp_path / "two", other)
    code, out, err = _run(capsys, str(tmp_path / "out"), str(one), str(two))
    _assert_refused(code, out, err, str(two / "report.json"), "written by pytest-tinyml 0.0.1",
                    f"this merge is pytest-tinyml {__version__}")
    assert not (tmp_path / "out").exists()  # nothing written


def test_duplicate_items_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _shard(tmp_path / "one", _report("a.tflite", "b.tflite"))
    two = _shard(tmp_path / "two", _report("b.tflite"))
    code, out, err = _run(capsys, str(tmp_path / "out"), str(one), str(two))
    _assert_refused(code, out, err, str(two / "report.json"), "item b.tflite::size is also in",
                    str(one / "report.json"))


@pytest.mark.parametrize("key, mine, theirs", [("sha256", "0" * 64, "1" * 64), ("board", "nrf52840", "stm32f746")])
def test_one_target_judged_differently_in_two_shards_is_refused(
    key: str, mine: str, theirs: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Items of one target in two shards are joined, but only when both judged the same file on the same board."""
    docs = []
    for value, check in ((mine, "size"), (theirs, "arena")):
        doc = _report("a.tflite")
        doc["targets"][0][key] = value
        doc["targets"][0]["items"][0].update(nodeid=f"a.tflite::{check}", name=check, check=check)
        docs.append(doc)
    one, two = _shard(tmp_path / "one", docs[0]), _shard(tmp_path / "two", docs[1])
    code, out, err = _run(capsys, str(tmp_path / "out"), str(one), str(two))
    _assert_refused(code, out, err, str(two / "report.json"), f"target a.tflite has another {key} than in",
                    str(one / "report.json"))


def test_shards_declaring_other_metrics_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = _shard(tmp_path / "one", _report("a.tflite"))
    doc = _report("b.tflite")
    doc["metrics"]["energy_uj"] = {"name": "energy_uj", "check": "energy", "unit": "uJ", "worse": 1, "threshold": None}
    two = _shard(tmp_path / "two", doc)
    code, out, err = _run(capsys, str(tmp_path / "out"), str(one), str(two))
    _assert_refused(code, out, err, str(two / "report.json"), "declares other metrics", "energy_uj")


def _older(doc: dict[str, Any]) -> dict[str, Any]:
    return {**doc, "version": 0}


def _no_metrics(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "metrics"}


HOSTILE: dict[str, tuple[Any, str]] = {
    "missing": (None, "shard report not found"),
    "not-json": (b"{not json", "shard report is not valid JSON"),
    "not-utf8": (b"\xff\xfe{}", "shard report is not UTF-8 text"),
    "not-a-report": (b'{"schema": "something/else"}', "not a pytest-tinyml report"),
    "deep": (b"[" * 100_000 + b"]" * 100_000, "nested more"),
    "huge-int": (b'{"schema": "pytest-tinyml/report", "version": 1' + b', "x": ' + b"9" * 5000 + b"}", "5,000-digit integer"),
    "nan": (b'{"schema": "pytest-tinyml/report", "version": NaN}', "not a finite number"),
    "schema": (lambda d: {**d, "summary": {**d["summary"], "passed": -1}}, "does not match the report schema"),
    "no-label": (lambda d: {**d, "targets": [{"items": []}]}, "not a list of targets with labels"),
    "bad-item": (lambda d: {**d, "targets": [{**d["targets"][0], "items": [{"nodeid": 3}]}]},
                 "does not match the report schema"),
    "newer": (lambda d: {**d, "version": 2}, "written by a newer pytest-tinyml"),
    "older": (_older, "written by an older pytest-tinyml"),
    "no-metrics": (_no_metrics, 'has no "metrics" table'),
    "empty-dir": ("dir", "shard report not found"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_unreadable_or_invalid_shards_are_refused_in_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _shard(tmp_path / "good", _report("a.tflite"))
    content, needle = HOSTILE[case]
    bad = tmp_path / case
    if isinstance(content, bytes):
        bad.mkdir()
        (bad / "report.json").write_bytes(content)
    elif callable(content):
        _shard(bad, content(_report("b.tflite")))
    elif content == "dir":
        bad.mkdir()
    code, out, err = _run(capsys, str(tmp_path / "out"), str(good), str(bad))
    _assert_refused(code, out, err, f"{bad if content is None else bad / 'report.json'}: ", needle)
    assert not (tmp_path / "out").exists()


def test_an_unreadable_baseline_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _shard(tmp_path / "good", _report("a.tflite"))
    code, out, err = _run(capsys, str(tmp_path / "out"), str(good), "--baseline", str(tmp_path / "nope.json"))
    _assert_refused(code, out, err, str(tmp_path / "nope.json"), "baseline report not found")


def test_console_script_is_declared() -> None:
    text = (REPO / "pyproject.toml").read_text()
    assert '[project.scripts]\npytest-tinyml = "pytest_tinyml.cli:main"' in text


_ODD = [None, -1, 0, 1.5, "x", "", [], {}, True, "a" * 5000, [None], {"a": 1}, "\x1b[31m\n", 10**20]


def _mutated(doc: dict[str, Any], rng: Any) -> dict[str, Any]:
    """``doc`` with 1 to 3 values anywhere in it replaced by an odd value or deleted (seeded)."""
    def walk(value: Any, path: tuple[Any, ...] = ()) -> Any:
        yield path
        children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, child in children:
            yield from walk(child, (*path, key))

    spots = list(walk(doc))[1:]
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(spots)
        parent: Any = doc
        try:
            for key in path[:-1]:
                parent = parent[key]
            if rng.random() < 0.15 and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = json.loads(json.dumps(rng.choice(_ODD)))
        except (KeyError, IndexError, TypeError):
            pass  # an earlier mutation removed or replaced the way there
    return doc


def test_mutated_shards_give_one_line_or_a_report_never_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 seeded mutations of a shard (merged with another shard that holds part of the same target)."""
    import random

    good = _report("a.tflite")
    good["targets"][0]["items"][0].update(nodeid="a.tflite::arena", name="arena", check="arena")
    other = _shard(tmp_path / "other", good)
    codes: dict[int, int] = {}
    for seed in range(200):
        bad = _shard(tmp_path / "bad", _mutated(_report("a.tflite", "b.tflite"), random.Random(seed)))
        code, out, err = _run(capsys, str(tmp_path / "out"), str(bad), str(other), "--no-plots")
        codes[code] = codes.get(code, 0) + 1
        assert "Traceback" not in out + err, (seed, err)
        if code == 2:
            _assert_refused(code, out, err)
        else:
            assert code == 0 and err == "", (seed, code, err)
    assert codes.get(2, 0) > 50 and codes.get(0, 0) > 5, codes
