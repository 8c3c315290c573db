"""Distinct models export to distinct folders (``a-b.tflite`` and ``a_b.tflite`` once shared one)."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pytest_tinyml.emulate.export import export_folder_names

if TYPE_CHECKING:
    from conftest import PytestRunner


def test_folder_names_are_distinct_and_stable() -> None:
    labels = ["a-b.tflite", "a_b.tflite", "a.b.tflite", "c.tflite", "---", "", "é.tflite", "_.tflite"]
    names = export_folder_names(labels)
    assert len(set(names.values())) == len(labels)
    assert names["c.tflite"] == "c_tflite"  # no collision: the plain name
    assert names["a-b.tflite"].startswith("a_b_tflite_") and names["---"].startswith("model_")
    assert all(n and "/" not in n and n.isascii() for n in names.values())
    # a label's folder does not depend on which other labels are exported alongside a colliding one
    assert export_folder_names(["a-b.tflite", "a_b.tflite"])["a-b.tflite"] == names["a-b.tflite"]


def test_colliding_labels_export_to_two_folders(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "a-b.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (tmp_path / "a_b.tflite").write_bytes(tflite_factory.int8_cnn(1, filters=8))
    outcome, out = run_pytest.checked(["--tinyml-model", "a-b.tflite", "--tinyml-model", "a_b.tflite",
                                  "-o", f"tinyml_cache_dir={tmp_path / 'c'}", "-k", "arena",
                                  "--tinyml-export", "exp"], tmp_path)
    assert outcome.kind == "pytest_exit_0", out
    folders = sorted(p for p in (tmp_path / "exp").iterdir())
    assert len(folders) == 2, folders
    sources = {(f / "model_data.c").read_text() for f in folders}
    assert len(sources) == 2  # each folder holds its own model
