"""The parser's work and memory are bounded by the file size, even when flatbuffer tables are shared."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import fuzz_mutate as fm
import pytest

from pytest_tinyml.analysis import _fb
from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.errors import ModelFileError

if TYPE_CHECKING:
    from conftest import PytestRunner


def test_small_sharing_still_parses() -> None:
    """A file may share a table a few times (the budget is generous: real models use < 1x their size)."""
    info = parse_model(fm.shared_tensor_model(50, 40), "ok.tflite")
    assert len(info.tensors) == 50 and info.tensors[0].name == "N" * 40


def test_shared_name_table_over_the_decode_budget_is_one_clear_error() -> None:
    data = fm.shared_tensor_model(12_500, 50_000)  # 100 KB file, 625 MB of names without a budget
    assert len(data) < 110_000
    with pytest.raises(ModelFileError) as err:
        parse_model(data, "shared.tflite")
    msg = str(err.value)
    assert msg.startswith("shared.tflite: refused: decoding needs more than")
    assert "tables or strings shared many times over" in msg and "byte offset" in msg and " name" in msg
    assert "\n" not in msg


def test_shared_subgraph_over_the_table_budget_is_one_clear_error() -> None:
    data = fm.shared_tensor_model(2_000, 1, shared_subgraph=2_000)  # 16 KB file, 4 million table visits
    with pytest.raises(ModelFileError, match=r"refused: more than [\d,]+ table visits for a [\d,]+-byte file"):
        parse_model(data, "sg.tflite")


def test_budget_counts_what_the_reader_decodes(tflite_factory: ModuleType) -> None:
    data = tflite_factory.int8_cnn()
    reader = _fb.Reader(data)
    root = reader.root()
    assert reader.tables_opened == 1 and reader.decoded == 0
    subgraphs = root.tables(2, "subgraphs")
    assert reader.decoded == 4 * len(subgraphs) and reader.tables_opened == 1 + len(subgraphs)
    name = subgraphs[0].string(4, "name")
    assert reader.decoded == 4 * len(subgraphs) + len(name or "")
    assert reader.decode_budget == _fb.DECODE_FACTOR * len(data) + _fb.DECODE_SLACK


def test_shared_table_model_fails_its_items_not_the_session(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "shared.tflite").write_bytes(fm.shared_tensor_model(12_500, 50_000))
    (tmp_path / "good.tflite").write_bytes(tflite_factory.int8_cnn())
    outcome, out = run_pytest.checked(["--tinyml-model", "shared.tflite", "--tinyml-model", "good.tflite",
                                  "-o", f"tinyml_cache_dir={tmp_path / 'c'}", "-rf", "-k", "size"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    assert "refused: decoding needs more than" in out
    assert "PASSED" in out or "passed" in out  # good.tflite::size still ran
