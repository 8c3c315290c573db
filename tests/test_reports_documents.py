"""report.json / report.md / report.html / terminal summary / baseline, from a hand-built session.

The session holds real :class:`~pytest_tinyml.measurements.Measurements` of real ``.tflite`` files (written by
``tflite_factory``) and verdicts from the real checks' judge functions; measurements a run would have
computed (accuracy, arena) are placed in the measurement cache the way ``cached_measurement`` stores them.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import jsonschema
import pytest

from pytest_tinyml import records, reports
from pytest_tinyml.boards import BoardRegistry, builtin_boards
from pytest_tinyml.checks.accuracy import judge_accuracy, judge_drop
from pytest_tinyml.checks.base import Verdict
from pytest_tinyml.checks.memory import judge_bytes
from pytest_tinyml.checks.size import judge_size
from pytest_tinyml.errors import BuildError, NotEvaluable
from pytest_tinyml.kinds import ItemStatus
from pytest_tinyml.measurements import Measurements
from pytest_tinyml.options import RunOptions
from pytest_tinyml.records import ItemRecord
from pytest_tinyml.reports.collect import build_report, tensor_lifetimes
from pytest_tinyml.reports.markdown import render_markdown
from pytest_tinyml.reports.terminal import summary_lines
from pytest_tinyml.spec.model import AUDIT_DEFAULTS, RegressionSpec
from pytest_tinyml.target import TargetDescription

BOARD = BoardRegistry(builtin_boards()).get("arduino_nano_33_ble_sense")
HOSTILE = '<script>alert("x")</script>|`$\\frac{a}{b}$` [link](http://evil.example/a.png) <img src=http://evil.example/x.png>'


def _accuracy(float_acc: float, quant_acc: float, n: int = 1000) -> SimpleNamespace:
    def stage(a: float) -> tuple[float, int, float, float]:
        return (a, n, a - 1.0, min(a + 0.8, 100.0))

    return SimpleNamespace(
        stages={"float": stage(float_acc), "litert": stage(quant_acc), "tflm": stage(quant_acc)},
        drop_points=float_acc - quant_acc,
        drop_ci=(float_acc - quant_acc - 0.4, float_acc - quant_acc + 0.4),
        n=n,
    )


class Run:
    """Builds a TinyMLSession lookalike: ``.results`` and ``.targets`` like the plugin fills them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.results: list[ItemRecord] = []
        self.targets: dict[str, Measurements] = {}
        self.specs: list[Path] = []
        self.models: list[Path] = []

    def target(
        self, label: str, data: bytes, *, mode: str | None = None, regression: RegressionSpec | None = None,
        spec: Any = None,
    ) -> Measurements:
        path = self.root / (
            label.split("[", 1)[0].replace("/", "_") + (f".{mode}" if mode else "") + ".tflite"
        )
        path.write_bytes(data)
        constraints = replace(AUDIT_DEFAULTS, regression=regression or RegressionSpec())
        m = Measurements(TargetDescription(
            label=label,
            constraints=constraints,
            board=BOARD,
            options=RunOptions(cache_dir=self.root / "cache"),
            mode=mode,
            model_path=path,
            path=path,
            spec=spec,
        ))
        self.targets[label] = m
        return m

    def item(self, m: Measurements, status: str, verdict: Verdict | None = None, message: str = "") -> None:
        check = verdict.name if verdict else message.removeprefix("Skipped: ").split(":", 1)[0]
        name = check + (f"[{m.mode}]" if m.mode else "")
        # the record travels as JSON, as it does in a test report's user_properties
        decoded = records.decode(records.encode(records.target_record(m), verdict.to_dict() if verdict else None))
        assert decoded is not None
        info, verdict_dict, _information = decoded
        self.results.append(
            ItemRecord(
                nodeid=f"{m.label.split('[', 1)[0]}::{name}",
                name=name,
                check=check,
                status=ItemStatus(status),
                info=info,
                verdict=verdict_dict,
                message=verdict.message if verdict else message,
            )
        )

    def audit(
        self,
        m: Measurements,
        *,
        size_limit: int = 51200,
        arena: int = 9000,
        arena_limit: int = 100_000,
        accuracy: Any = None,
    ) -> None:
        """Items a typical run produces, judged by the real judge functions."""
        size = m.model_path.stat().st_size if m.model_path else 0
        info = m.model_info
        largest = [(t.name, t.nbytes) for t in info.largest_tensors(3, constant=True)]
        v = judge_size(size, size_limit, f"{size_limit:,} B", largest)
        self.item(m, "passed" if v.passed else "failed", v)
        Measurements.arena.provide(m, cast(Any, SimpleNamespace(
            bytes=arena, host_bytes=arena + 800, method="host total - 64-bit pointers"
        )))
        v = judge_bytes(
            "arena",
            arena,
            arena_limit,
            "board",
            ["32-bit arena"],
            "shrink activations",
            {"host_bytes": arena + 800},
        )
        self.item(m, "passed" if v.passed else "failed", v)
        if accuracy is not None:
            Measurements.accuracy.provide(m, accuracy)
            v = judge_accuracy(accuracy, 90.0)
            self.item(m, "passed" if v.passed else "failed", v)
            v = judge_drop(accuracy, 1.0)
            self.item(m, "passed" if v.passed else "failed", v)
        self.item(
            m,
            "skipped",
            message="Skipped: latency: no firmware toolchain; to enable: apt-get install qemu-system-arm",
        )


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    doc = reports.schema()
    jsonschema.Draft202012Validator.check_schema(doc)
    return doc


def validate(doc: dict[str, Any], schema: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator(schema).validate(doc)


@pytest.fixture
def run(tmp_path: Path) -> Run:
    return Run(tmp_path)


def one_model(factory: ModuleType, run: Run, **kwargs: Any) -> Measurements:
    m = run.target("models/cnn.tflite", factory.int8_cnn(0), regression=kwargs.pop("regression", None))
    run.audit(m, **kwargs)
    return m


# --- report.json ----------------------------------------------------------------------------------
def test_json_validates_and_holds_model_facts(
    tflite_factory: ModuleType, run: Run, tmp_path: Path, schema: dict[str, Any]
) -> None:
    m = one_model(tflite_factory, run, accuracy=_accuracy(98.5, 98.0))
    outcome = reports.finish(run, report_dir=tmp_path / "out", baseline=None, plots=False)
    assert outcome.errors == []
    assert [p.name for p in outcome.written] == ["report.json", "report.md", "report.html"]
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    validate(doc, schema)
    assert doc["schema"] == "pytest-tinyml/report" and doc["version"] == 1
    (t,) = doc["targets"]
    assert t["label"] == "models/cnn.tflite" and t["board"] == BOARD.name and t["kind"] == "model"
    assert m.model_path is not None
    data = m.model_path.read_bytes()
    assert t["size_bytes"] == len(data) and len(t["sha256"]) == 64
    model = t["model"]
    assert {o["name"]: o["count"] for o in model["ops"]} == {
        "CONV_2D": 1,
        "DEPTHWISE_CONV_2D": 1,
        "MAX_POOL_2D": 1,
        "RESHAPE": 1,
        "FULLY_CONNECTED": 1,
        "SOFTMAX": 1,
    }
    macs = {layer["op"]: layer["macs"] for layer in model["layers"] if layer["macs"]}
    assert macs == tflite_factory.INT8_CNN_MACS
    conv = model["layers"][0]
    assert conv["params"] == 4 * 3 * 3 * 1 + 4  # filter + bias elements
    assert conv["weight_bytes"] == 4 * 9 + 4 * 4  # int8 filter + int32 bias
    assert t["arena"]["bytes"] == 9000 and t["metrics"]["arena_bytes"] == 9000
    stages = {s["name"]: s for s in t["accuracy"]["stages"]}
    assert stages["tflm"]["accuracy_pct"] == 98.0 and stages["tflm"]["ci_low"] == 97.0
    assert t["metrics"]["accuracy_pct"] == pytest.approx(98.0)
    assert t["metrics"]["accuracy_drop_pt"] == pytest.approx(0.5)
    statuses = {i["check"]: i["status"] for i in t["items"]}
    assert statuses == {
        "size": "passed",
        "arena": "passed",
        "accuracy": "passed",
        "accuracy_drop": "passed",
        "latency": "skipped",
    }
    assert doc["summary"] == {"targets": 1, "passed": 4, "failed": 0, "skipped": 1, "error": 0}


def test_tensor_lifetimes_follow_the_op_sequence(tflite_factory: ModuleType, run: Run) -> None:
    # int8_cnn: CONV(0) DW(1) POOL(2) RESHAPE(3) FC(4) SOFTMAX(5); input read by op 0, output ends at op 5.
    m = run.target("cnn.tflite", tflite_factory.int8_cnn(0))
    info = m.model_info
    names = {t.index: t.name for t in info.subgraphs[0].tensors}
    lives = {names[i]: span for i, span in tensor_lifetimes(info).items()}
    assert lives == {
        "input": (0, 0),
        "conv/out": (0, 1),
        "dw/out": (1, 2),
        "pool/out": (2, 3),
        "flatten": (3, 4),
        "fc0/out": (4, 5),
        "probs": (5, 5),
    }


def test_json_never_fails_on_missing_or_broken_measurements(
    run: Run, tmp_path: Path, schema: dict[str, Any]
) -> None:
    m = run.target("broken.tflite", b"not a model at all, just text")
    Measurements.accuracy.provide(m, NotEvaluable("no dataset", "add a dataset"))
    run.item(m, "failed", message="tflm_ops: TFLM refused the model")
    weird = Verdict(
        "size", False, float("nan"), float("inf"), "B", "size: odd", extra={"path": Path("/x"), "t": (1, 2)}
    )
    run.item(m, "failed", weird)
    ghost = Measurements(TargetDescription(
        label="ghost.yaml[int8]",
        constraints=AUDIT_DEFAULTS,
        board=BOARD,
        options=RunOptions(cache_dir=tmp_path),
        mode="int8",
    ), tflite_path=BuildError("training diverged", where="ghost.yaml"))  # spec never built: no model at all
    run.targets[ghost.label] = ghost
    run.item(ghost, "skipped", message="Skipped: size: build failed; to enable: fix the spec")
    outcome = reports.finish(run, report_dir=tmp_path / "out", baseline=None, plots=False)
    assert outcome.errors == []
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    validate(doc, schema)
    broken, ghost_t = doc["targets"]
    assert broken["model"] is None and any(n.startswith("model file left out") for n in broken["notes"]), broken["notes"]
    assert any("accuracy: not measured (no dataset" in n for n in broken["notes"])
    assert broken["items"][1]["measured"] is None  # NaN is not JSON: written as null
    assert ghost_t["model"] is None and ghost_t["sha256"] is None and ghost_t["kind"] == "spec"
    assert any("ghost.yaml: training diverged" in n for n in ghost_t["notes"]), ghost_t["notes"]


def test_unwritable_report_dir_is_an_error_line_not_an_exception(
    tflite_factory: ModuleType, run: Run, tmp_path: Path
) -> None:
    one_model(tflite_factory, run)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    outcome = reports.finish(run, report_dir=blocker / "out", baseline=None, plots=False)
    assert len(outcome.errors) == 1 and "cannot create the report directory" in outcome.errors[0]
    assert "\n" not in outcome.errors[0] and outcome.written == []


# --- report.md ------------------------------------------------------------------------------------
def _table_rows(md: str) -> list[list[str]]:
    rows = []
    for line in md.splitlines():
        if line.startswith("| ") and not line.startswith("| Status") and "---" not in line:
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([c.strip() for c in cells])
    return rows


def test_markdown_puts_failures_first_and_escapes(
    tflite_factory: ModuleType, run: Run, tmp_path: Path
) -> None:
    ok = run.target("good.tflite", tflite_factory.int8_cnn(1))
    run.audit(ok)
    bad = run.target("bad.tflite", tflite_factory.int8_cnn(2))
    run.audit(
        bad, arena=120_000, arena_limit=100_000
    )  # arena fails; size and latency come first in item order
    v = Verdict(
        "int8_io",
        False,
        "in float32",
        "int8",
        "dtype",
        f"int8_io: input {HOSTILE} is float32",
        fix=f"convert {HOSTILE}",
    )
    run.item(bad, "failed", v)
    md = render_markdown(build_report(run))
    # every target is one row of the comparison table; only the failing one gets a section
    sections = re.findall(r"^### (\S+) (.+)$", md, re.M)
    assert sections == [("❌", "bad.tflite")]
    rows = _table_rows(md)
    assert rows[0] == ["target", "size", "arena", "verdicts"]
    assert rows[1][0] == "❌ bad.tflite" and rows[1][2] == "120,000 B" and rows[1][3] == "2 failed, 1 passed, 1 skipped"
    assert rows[2][0] == "✅ good.tflite" and rows[2][3] == "2 passed, 1 skipped"
    assert md.count("good.tflite") == 2  # its table row and the one skip line ("latency skipped on ...")
    rows = rows[3:]
    header_cells = 5
    assert all(len(r) == header_cells for r in rows), rows  # a '|' in a message does not add a column
    bad_rows = rows[:4]  # bad.tflite: size, arena, latency from audit() + int8_io
    assert [r[0] for r in bad_rows] == ["❌ FAIL", "❌ FAIL", "✅ pass", "⏭️ skip"]
    assert [r[1] for r in bad_rows] == ["int8_io", "arena", "size", "latency"]
    assert "**fix:**" in md and "shrink activations" in md
    assert not re.search(r"(?<!\\)<(script|img)", md) and not re.search(r"(?<!\\)\]\(http", md)
    assert "\\<script\\>" in md
    assert md.startswith("## ❌ pytest-tinyml: 2 failed")


def test_markdown_stays_under_the_comment_limit(tflite_factory: ModuleType, run: Run) -> None:
    for k in range(60):
        m = run.target(f"m{k}.tflite", tflite_factory.int8_cnn(k))
        run.audit(m)
        run.item(
            m,
            "failed",
            Verdict("int8_io", False, "x", "int8", "dtype", "y" * 900, details=["d" * 500], fix="z" * 400),
        )
    md = render_markdown(build_report(run))
    assert len(md) <= 60_000
    assert "❌ FAIL" in md


# --- report.html ----------------------------------------------------------------------------------
class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[dict[str, str | None]] = []
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _hostile_model(factory: ModuleType) -> bytes:
    g = factory.int8_cnn_graph_fc_only()
    g.tensors[0].name = HOSTILE
    g.tensors[-1].name = "$x^2$ _hidden"
    g.description = HOSTILE
    return g.build()


def test_html_is_self_contained_and_escaped(tflite_factory: ModuleType, run: Run, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    m = run.target("evil.tflite", _hostile_model(tflite_factory))
    run.audit(m, accuracy=_accuracy(97.0, 95.5))
    run.item(
        m,
        "failed",
        Verdict(
            "int8_io", False, "x", "int8", "dtype", f"int8_io: {HOSTILE}", details=[HOSTILE], fix=HOSTILE
        ),
    )
    second = run.target("cnn.tflite", tflite_factory.int8_cnn(0))
    run.audit(second)
    outcome = reports.finish(run, report_dir=tmp_path / "out", baseline=None)
    assert outcome.errors == [] and not [n for n in outcome.notes if "chart" in n], outcome.notes
    page = (tmp_path / "out" / "report.html").read_text()
    parser = _Page()
    parser.feed(page)
    parser.close()
    assert "script" not in parser.tags and "link" not in parser.tags and "iframe" not in parser.tags
    assert len(parser.imgs) >= 5  # size, accuracy, arena for evil.tflite; size, arena for cnn.tflite
    for img in parser.imgs:
        assert (img.get("src") or "").startswith("data:image/png;base64,")
    assert not re.search(r"https?://", page.replace("http://evil.example", ""))
    assert HOSTILE in "".join(parser.text)  # shown as text, not markup
    assert "<script>alert" not in page
    assert "default-src 'none'" in page


def test_html_without_matplotlib_still_writes_a_page(tflite_factory: ModuleType,
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_tinyml.reports import plots

    monkeypatch.setattr(plots, "available", lambda: "matplotlib is not available (test)")
    one_model(tflite_factory, run)
    outcome = reports.finish(run, report_dir=tmp_path / "out", baseline=None)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<img" not in page and "charts left out: matplotlib is not available (test)" in page
    assert any("charts left out" in n for n in outcome.notes) and outcome.errors == []


def test_mode_comparison_chart_for_multi_mode_specs(
    tflite_factory: ModuleType, run: Run, tmp_path: Path
) -> None:
    pytest.importorskip("matplotlib")
    for mode, data, acc in (("float32", tflite_factory.float_fc(0), 98.0), ("int8", tflite_factory.int8_cnn(0), 97.2)):
        m = run.target(f"specs/s.yaml[{mode}]", data, mode=mode, spec=SimpleNamespace(path=Path("specs/s.yaml"), name="s"))
        run.audit(m, accuracy=_accuracy(98.0, acc))
    reports.finish(run, report_dir=tmp_path / "out", baseline=None)
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Quantization modes of <code>specs/s.yaml</code>" in page


def test_plots_do_not_run_mathtext_on_names() -> None:
    pytest.importorskip("matplotlib")
    from pytest_tinyml.reports import plots

    target = {
        "model": {
            "size_bytes": 100,
            "weight_bytes": 10,
            "layers": [{"index": 0, "subgraph": 0, "op": "$\\undefinedmacro{$", "weight_bytes": 10}],
            "tensors": [
                {
                    "subgraph": 0,
                    "index": 0,
                    "name": "$\\bad{",
                    "is_constant": False,
                    "first_op": 0,
                    "last_op": 0,
                    "nbytes": 5,
                }
            ],
        },
        "arena": None,
    }
    assert plots.size_by_layer(target)[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[index]
    assert plots.arena_timeline(target)[:8] == b"\x89PNG\r\n\x1a\n"  # type: ignore[index]
    assert plots.short_name("sequential_1/conv1_1/Relu;sequential_1/conv1_1/BiasAdd") == "conv1_1/Relu"


# --- terminal summary -----------------------------------------------------------------------------
def test_terminal_summary_formats_units(tflite_factory: ModuleType, run: Run) -> None:
    m = run.target("cnn.tflite", tflite_factory.int8_cnn(0))
    run.item(m, "passed", Verdict("size", True, 53936, 51200 * 2, "B", "ok"))
    run.item(m, "failed", Verdict("latency", False, 0.0123, 0.01, "s", "slow"))
    run.item(m, "passed", Verdict("accuracy", True, 98.1234, 97.0, "%", "ok"))
    run.item(m, "passed", Verdict("accuracy_drop", True, 0.41, 1.0, "pt", "ok"))
    run.item(m, "passed", Verdict("firmware_bitexact", True, 0, 0, "mismatching samples", "ok"))
    run.item(m, "skipped", message="Skipped: flash: needs a board; to enable: pass --tinyml-board")
    lines = summary_lines(run.results)
    text = "\n".join(lines)
    assert lines[0] == f"cnn.tflite  (board {BOARD.name})"
    assert re.search(r"size\s+102,400 B\s+53,936 B\s+PASS", text)
    assert re.search(r"latency\s+10 ms\s+12.3 ms\s+FAIL", text)
    assert re.search(r"accuracy\s+97.00 %\s+98.12 %\s+PASS", text)
    assert re.search(r"accuracy_drop\s+1.00 pt\s+0.41 pt\s+PASS", text)
    assert re.search(r"firmware_bitexact\s+0 mismatching samples\s+0 mismatching samples\s+PASS", text)
    assert re.search(r"flash\s+-\s+-\s+SKIP  needs a board$", text, re.M)


# --- baseline -------------------------------------------------------------------------------------
def _baseline(factory: ModuleType, tmp_path: Path, **kwargs: Any) -> Path:
    first = Run(tmp_path / "before")
    first.root.mkdir()
    m = first.target("models/cnn.tflite", factory.int8_cnn(0))
    first.audit(m, accuracy=kwargs.get("accuracy", _accuracy(98.5, 98.0)), arena=kwargs.get("arena", 9000))
    out = reports.finish(first, report_dir=tmp_path / "before" / "out", baseline=None, plots=False)
    assert out.errors == []
    return tmp_path / "before" / "out" / "report.json"


def test_baseline_regressions_beyond_thresholds(
    tflite_factory: ModuleType, tmp_path: Path, schema: dict[str, Any]
) -> None:
    base = _baseline(tflite_factory, tmp_path)
    now = Run(tmp_path / "now")
    now.root.mkdir()
    reg = RegressionSpec(size_bytes=1024, accuracy_points=0.5, arena_bytes=4096)
    m = now.target(
        "models/cnn.tflite", tflite_factory.int8_cnn(0, height=16, width=16), regression=reg
    )  # larger model
    now.audit(
        m, accuracy=_accuracy(98.5, 97.2), arena=9000 + 4096
    )  # accuracy -0.8 pt; arena exactly at threshold
    outcome = reports.finish(now, report_dir=tmp_path / "now" / "out", baseline=base, plots=False)
    assert outcome.errors == []
    joined = "\n".join(outcome.regressions)
    assert len(outcome.regressions) == 2, joined
    assert "models/cnn.tflite: size grew by" in joined and "constraints.regression.size" in joined
    assert "accuracy fell by 0.80 pt (98.00 % → 97.20 %), more than the 0.5 pt allowed" in joined
    assert "arena" not in joined  # +4,096 B is not more than the 4 KiB allowed
    doc = json.loads((tmp_path / "now" / "out" / "report.json").read_text())
    validate(doc, schema)
    deltas = {d["metric"]: d for d in doc["targets"][0]["baseline"]["deltas"]}
    assert deltas["arena_bytes"]["delta"] == 4096 and not deltas["arena_bytes"]["regression"]
    assert deltas["accuracy_pct"]["regression"] and deltas["accuracy_pct"]["delta"] == pytest.approx(-0.8)
    text = "\n".join(summary_lines(now.results, outcome=outcome))
    assert re.search(r"arena\s+100,000 B\s+13,096 B\s+\+4.0 KiB\s+PASS", text), text
    assert re.search(r"accuracy\s+90.00 %\s+97.20 %\s+-0.80 pt REGRESSION\s+PASS", text), text
    assert "regressions against baseline" in text
    md = (tmp_path / "now" / "out" / "report.md").read_text()
    assert "**2 regressions** against baseline" in md and "**-0.80 pt regression**" in md


def test_baseline_without_thresholds_only_shows_deltas(tflite_factory: ModuleType, tmp_path: Path) -> None:
    base = _baseline(tflite_factory, tmp_path)
    now = Run(tmp_path / "now")
    now.root.mkdir()
    m = now.target(
        "other/place/cnn.tflite", tflite_factory.int8_cnn(0, filters=8)
    )  # label moved: matched by file name
    now.audit(m, accuracy=_accuracy(98.5, 90.0))
    outcome = reports.finish(now, report_dir=None, baseline=base, plots=False)
    assert outcome.regressions == [] and outcome.errors == []
    assert outcome.comparison is not None
    assert outcome.comparison.matched == {"other/place/cnn.tflite": "models/cnn.tflite"}
    d = outcome.comparison.delta("other/place/cnn.tflite", "size_bytes")
    assert d is not None and d.delta > 0 and d.text().startswith("size +")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "baseline report not found"),
        ("{not json", "not valid JSON"),
        ('{"schema": "something-else"}', "not a pytest-tinyml report"),
        (
            '{"schema": "pytest-tinyml/report", "version": 99, "targets": []}',
            "written by a newer pytest-tinyml",
        ),
        ('{"schema": "pytest-tinyml/report", "version": 1, "targets": {}}', "not a list of targets"),
    ],
)
def test_bad_baseline_is_one_error_line(
    tflite_factory: ModuleType, run: Run, tmp_path: Path, content: str | None, expected: str
) -> None:
    one_model(tflite_factory, run)
    path = tmp_path / "base.json"
    if content is not None:
        path.write_text(content)
    assert reports.check_baseline(path) is not None
    outcome = reports.finish(run, report_dir=tmp_path / "out", baseline=path, plots=False)
    assert len(outcome.errors) == 1 and expected in outcome.errors[0], outcome.errors
    assert str(path) in outcome.errors[0] and "fix:" in outcome.errors[0] and "\n" not in outcome.errors[0]
    assert outcome.regressions == [] and len(outcome.written) == 3  # the reports are still written


def test_baseline_may_be_the_report_being_replaced(
    tflite_factory: ModuleType, run: Run, tmp_path: Path
) -> None:
    one_model(tflite_factory, run, arena=9000)
    out = tmp_path / "out"
    reports.finish(run, report_dir=out, baseline=None, plots=False)
    again = Run(tmp_path)
    m = again.target("models/cnn.tflite", tflite_factory.int8_cnn(0), regression=RegressionSpec(arena_bytes=0))
    again.audit(m, arena=9001)
    outcome = reports.finish(again, report_dir=out, baseline=out / "report.json", plots=False)
    assert len(outcome.regressions) == 1 and "arena grew by 1 B" in outcome.regressions[0]
    assert json.loads((out / "report.json").read_text())["baseline"]["regressions"] == outcome.regressions
