"""The small utilities: one JSON-safe converter (three callers' options), one seconds formatter (both
callers' outputs), one ``module:function`` importer that leaves ``sys.path`` as it found it."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pytest_tinyml._util.durations import format_seconds
from pytest_tinyml._util.imports import FunctionNotFound, import_function, module_source
from pytest_tinyml._util.jsonsafe import jsonsafe


@dataclass
class _Args:
    path: Path
    values: tuple[int, ...]


def test_jsonsafe_report_defaults() -> None:
    value = {1: (1, 2), "s": {3, 1}, "p": Path("a/b"), "n": float("nan"), "i": np.int64(3), "a": np.arange(3)}
    assert jsonsafe(value) == {"1": [1, 2], "s": [1, 3], "p": "a/b", "n": None, "i": 3, "a": [0, 1, 2]}
    deep: list[object] = []
    cur = deep
    for _ in range(45):
        nxt: list[object] = []
        cur.append(nxt)
        cur = nxt
    text = json.dumps(jsonsafe(deep))
    assert text.startswith("[" * 41 + '"[[[[[]]]]]"')  # past 40 levels: the value's text


def test_jsonsafe_record_bounds() -> None:
    out = jsonsafe({"k": "x" * 50, "l": list(range(10))}, max_depth=20, too_deep_text=False, max_text=8, max_items=3)
    assert out == {"k": "xxxxxxx…", "l": [0, 1, 2]}
    assert jsonsafe([[[1]]], max_depth=1, too_deep_text=False) == [[None]]


def test_jsonsafe_structure_only_keeps_leaves_for_json_default() -> None:
    out = jsonsafe({"a": _Args(Path("x"), (1, 2)), "f": float("nan"), "s": {1}}, structure_only=True)
    assert out["a"] == {"path": "x", "values": [1, 2]}
    assert out["s"] == {1} and out["f"] != out["f"]  # left for json.dumps(default=str)


@pytest.mark.parametrize("seconds, ns, us", [
    (2.5, "2.5 s", "2.5 s"), (0.0123, "12.3 ms", "12.3 ms"), (4.2e-5, "42 µs", "42 µs"),
    (4.2e-8, "42 ns", "0.042 µs"), (0, "0 µs", "0 µs"), (-0.002, "-2 ms", "-2e+03 µs"),
])
def test_one_seconds_formatter_both_styles(seconds: float, ns: str, us: str) -> None:
    assert format_seconds(seconds) == ns
    assert format_seconds(seconds, smallest="µs") == us


def test_import_function_leaves_sys_path_unchanged(tmp_path: Path) -> None:
    (tmp_path / "tinyml_probe_pkg").mkdir()
    (tmp_path / "tinyml_probe_pkg" / "__init__.py").write_text("")
    (tmp_path / "tinyml_probe_pkg" / "mod.py").write_text("def load():\n    return 42\nvalue = 1\n")
    before = list(sys.path)
    try:
        assert module_source("tinyml_probe_pkg.mod", [tmp_path])[1] is not None
        assert sys.path == before
        assert import_function("tinyml_probe_pkg.mod:load", [tmp_path])() == 42
        assert sys.path == before
        with pytest.raises(FunctionNotFound):
            import_function("tinyml_probe_pkg.mod:value", [tmp_path])
        with pytest.raises(ImportError):
            import_function("tinyml_no_such_module:f", [tmp_path])
        assert sys.path == before
    finally:
        for name in [n for n in sys.modules if n.startswith("tinyml_probe_pkg")]:
            del sys.modules[name]
