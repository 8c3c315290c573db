"""Huge models fail ``size``/``flash`` early, without compiling firmware or reading them more than once."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np
import pytest

from pytest_tinyml.analysis.model import MAX_MODEL_BYTES, load_model
from pytest_tinyml.emulate.build import model_c_source
from pytest_tinyml.emulate.export import write_model_c
from pytest_tinyml.errors import ModelFileError

if TYPE_CHECKING:
    from conftest import PytestRunner


def big_fc_model(factory: ModuleType, units: int, features: int) -> bytes:
    """int8 FULLY_CONNECTED whose weights are ``units x features`` bytes."""
    g = factory.Graph()
    x = g.add(factory.Tensor("input", (1, features), factory.INT8, scale=(0.05,), zero_point=(0,)))
    w = g.const("big_weights", np.ones((units, features)), factory.INT8, scale=(0.01,), zero_point=(0,))
    y = g.add(factory.Tensor("output", (1, units), factory.INT8, scale=(0.1,), zero_point=(0,)))
    g.ops.append(factory.Op(factory.OP["FULLY_CONNECTED"], [x, w], [y], factory.OPTION_TYPES["FullyConnectedOptions"]))
    g.inputs, g.outputs = [x], [y]
    return g.build()


def test_file_over_the_read_bound_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "huge.tflite"
    with open(path, "wb") as fh_:
        fh_.truncate(MAX_MODEL_BYTES + 1)  # sparse: no disk, and the refusal must not read it
    with pytest.raises(ModelFileError) as err:
        load_model(path)
    assert "file is 67,108,865 bytes, more than the 67,108,864-byte limit" in str(err.value)
    assert "\n" not in str(err.value)


def test_model_over_the_board_flash_fails_flash_without_building_firmware(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "big.tflite").write_bytes(big_fc_model(tflite_factory, 2048, 1024))  # 2 MiB of weights; nRF52840 has 1 MiB
    cache = tmp_path / "c"
    outcome, out = run_pytest.checked(["--tinyml-model", "big.tflite", "-o", f"tinyml_cache_dir={cache}", "-rfs",
                                  "--tinyml-board", "nano33ble"], tmp_path, timeout=240)
    assert outcome.kind == "pytest_exit_1", out
    assert "FAILED big.tflite::flash" in out
    assert "no firmware was built" in out
    assert not (cache / "firmware").exists() or not any((cache / "firmware").rglob("model_data.c"))


def test_export_streams_the_same_c_text(tmp_path: Path) -> None:
    data = os.urandom(200_003)
    write_model_c(data, tmp_path / "m.c", "g_model")
    assert (tmp_path / "m.c").read_text() == model_c_source(data, "g_model")
    write_model_c(b"", tmp_path / "e.c", "g_model")
    assert (tmp_path / "e.c").read_text() == model_c_source(b"", "g_model")
