"""Tensors TFLM's 32-bit arithmetic cannot size, or larger than the RAM limit, fail ``arena`` by name."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.boards import builtin_boards
from pytest_tinyml.checks.memory import TFLM_SIZE_LIMIT, oversized_tensor, tensor_bytes

if TYPE_CHECKING:
    from conftest import PytestRunner


def fc_model(factory: ModuleType, rows: int, units: int, out_name: str = "huge_output") -> bytes:
    """int8 FULLY_CONNECTED: input rows x 1, weights units x 1, output rows x units."""
    g = factory.Graph()
    x = g.add(factory.Tensor("input", (rows, 1), factory.INT8, scale=(0.05,), zero_point=(0,)))
    w = g.const("weights", np.ones((units, 1)), factory.INT8, scale=(0.01,), zero_point=(0,))
    y = g.add(factory.Tensor(out_name, (rows, units), factory.INT8, scale=(0.1,), zero_point=(0,)))
    g.ops.append(factory.Op(factory.OP["FULLY_CONNECTED"], [x, w], [y], factory.OPTION_TYPES["FullyConnectedOptions"]))
    g.inputs, g.outputs = [x], [y]
    return g.build()


def test_overflowing_tensor_is_found(tflite_factory: ModuleType) -> None:
    info = parse_model(fc_model(tflite_factory, 65536, 65536), "fc.tflite")
    over = oversized_tensor(info, 1 << 40)  # even with an absurd RAM limit
    assert over is not None
    t, nbytes, why = over
    assert t.name == "huge_output" and nbytes == TFLM_SIZE_LIMIT == tensor_bytes(t) and "32-bit" in why


def test_activation_over_the_ram_limit_is_found_and_sane_models_pass(tflite_factory: ModuleType) -> None:
    info = parse_model(fc_model(tflite_factory, 1024, 512), "fc.tflite")  # 512 KiB output
    over = oversized_tensor(info, 256 * 1024)
    assert over is not None and over[0].name == "huge_output" and over[1] == 512 * 1024 and "RAM" in over[2]
    assert oversized_tensor(info, 1 << 20) is None
    assert oversized_tensor(parse_model(tflite_factory.int8_cnn(), "cnn.tflite"), 100) is not None  # its largest activation: 144 B
    nano = next(b for b in builtin_boards() if b.name == "arduino_nano_33_ble_sense")
    assert oversized_tensor(parse_model(tflite_factory.int8_cnn(), "cnn.tflite"), nano.ram_bytes) is None


def test_overflow_fails_arena_even_when_tflm_refuses_the_model(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    """Found by bench_fuzz: the check once asked TFLM first, so a model TFLM refuses skipped arena."""
    (tmp_path / "fc.tflite").write_bytes(fc_model(tflite_factory, 201_326_592, 16))  # 3 GiB int8 output, 201M-row input
    outcome, out = run_pytest.checked(["--tinyml-model", "fc.tflite", "-o", f"tinyml_cache_dir={tmp_path / 'c'}",
                                  "-rfs", "-k", "arena"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    assert "FAILED fc.tflite::arena" in out and "tensor 'huge_output'" in out


def test_65536_squared_output_fails_arena_naming_the_tensor(
    run_pytest: PytestRunner, tflite_factory: ModuleType, tmp_path: Path
) -> None:
    (tmp_path / "fc.tflite").write_bytes(fc_model(tflite_factory, 65536, 65536))
    outcome, out = run_pytest.checked(["--tinyml-model", "fc.tflite", "-o", f"tinyml_cache_dir={tmp_path / 'c'}",
                                  "-rf", "-k", "arena"], tmp_path)
    assert outcome.kind == "pytest_exit_1", out
    assert "FAILED fc.tflite::arena" in out
    assert "tensor 'huge_output' (subgraph 0 #2, int8 65536x65536) needs 4,294,967,296 B" in out
    assert "overflows TFLM's 32-bit byte count" in out
