"""Spec loading: units, schema, locations and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_tinyml.errors import SpecError
from pytest_tinyml.spec import load_spec
from pytest_tinyml.spec.units import UnitError, parse_percent, parse_points, parse_size, parse_time

GOOD = """\
version: 1
name: demo
model:
  builder: models.mnist_cnn:build
dataset:
  name: mnist_offline
constraints:
  max_size: 50KiB
  io_dtype: int8
  ops: tflm
  max_accuracy_drop: 1pt
  min_accuracy: 95%
  arena: board
  flash: 1MiB
  max_latency: 1ms
"""


def write(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("text", "expected"),
    [(51200, 51200), ("50KiB", 51200), ("50KB", 50000), ("50 kB", 50000), ("1MiB", 1048576), ("512B", 512), ("2MB", 2_000_000)],
)
def test_sizes(text: object, expected: int) -> None:
    assert parse_size(text).bytes == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("50Kb", "kilobits"),
        ("50kb", "kilobits"),
        (50.5, "no unit"),
        ("fifty", "not a number"),
        ("50 furlongs", "unknown size unit"),
        (-3, "negative"),
        (True, "boolean"),
        ("2000GB", "larger than"),
    ],
)
def test_bad_sizes(text: object, fragment: str) -> None:
    with pytest.raises(UnitError, match=fragment):
        parse_size(text)


def test_times_points_percent() -> None:
    assert parse_time("1ms") == pytest.approx(1e-3)
    assert parse_time("250us") == pytest.approx(250e-6)
    assert parse_time("2s") == 2
    assert parse_points("1pt") == 1 and parse_points(0.5) == 0.5
    assert parse_percent("95%") == 95
    with pytest.raises(UnitError, match="no unit"):
        parse_time(5)
    with pytest.raises(UnitError, match="ambiguous"):
        parse_points("1%")
    with pytest.raises(UnitError, match="percentage"):
        parse_percent(0.95)


def test_good_spec(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD))
    c = spec.constraints
    assert spec.name == "demo" and spec.model.kind == "builder"
    assert c.max_size is not None and c.max_size.bytes == 51200
    assert c.max_latency == pytest.approx(1e-3)
    assert c.arena is not None and c.arena.board
    assert c.flash is not None and c.flash.size is not None and c.flash.size.bytes == 1048576
    assert spec.quantization.modes == ("int8",)
    assert spec.where("constraints", "max_size").endswith("spec.yaml:8:3")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("max_size", "max_sise"), r"spec.yaml:8:3: constraints.max_sise: unknown key 'max_sise' \(fix: did you mean 'max_size'\?\)"),
        (GOOD.replace("50KiB", "50Kb"), r"spec.yaml:8:3: constraints.max_size: '50Kb': 'Kb' reads as kilobits"),
        (GOOD.replace("1ms", "1"), r"spec.yaml:15:\d+: constraints.max_latency: expected string, got int 1"),
        (GOOD.replace("version: 1", "version: 2"), r"spec.yaml:1:\d+: version: version 2 is not supported"),
        (GOOD.replace("name: demo\n", ""), r"'name' is a required property"),
        ("version: 1\nname: [x\n", r"spec.yaml:3:1: YAML syntax error"),
        ("", r"spec.yaml: the spec is empty"),
        ("- 1\n- 2\n", r"the spec must be a mapping"),
        (GOOD + "constraints: {}\n", r"duplicate key 'constraints'"),
        (GOOD.replace("tflm", "tlfm"), r"'tlfm' is not one of tflm, any \(fix: did you mean 'tflm'\?\)"),
        (GOOD.replace("mnist_offline\n", "mnist_offline\n  preprocess: x/256\n"), r"dataset.preprocess: 'x/256' is not one of"),
        (GOOD.replace("1pt", "1%"), r"'%' is ambiguous"),
        (GOOD.replace("models.mnist_cnn:build", "not a builder"), r"model.builder"),
        ("version: 1\nname: x\nmodel: {tflite: missing.tflite}\n", r"model.tflite: .*missing.tflite does not exist"),
        ("version: 1\nname: x\nmodel: {builder: 'a:b', tflite: x.tflite}\n", r"exactly one of"),
        ("a: &a [*a]\n", r"spec.yaml"),
    ],
)
def test_bad_specs(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as info:
        load_spec(write(tmp_path, text))
    assert "\n" not in str(info.value)


def test_alias_bomb_is_bounded(tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(SpecError, match="YAML nodes"):
        load_spec(write(tmp_path, "\n".join(lines) + "\n"))


def test_missing_directory_binary(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="spec file not found"):
        load_spec(tmp_path / "nope.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        load_spec(tmp_path)
    bad = tmp_path / "bin.yaml"
    bad.write_bytes(b"version: 1\n\xff\xfe")
    with pytest.raises(SpecError, match="not UTF-8 text"):
        load_spec(bad)


def test_tflite_spec_refuses_training(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"x")
    text = "version: 1\nname: x\nmodel: {tflite: m.tflite}\nquantization: {mode: int8}\n"
    with pytest.raises(SpecError, match="not trained or converted"):
        load_spec(write(tmp_path, text))


def test_accuracy_needs_dataset(tmp_path: Path) -> None:
    (tmp_path / "m.tflite").write_bytes(b"x")
    text = "version: 1\nname: x\nmodel: {tflite: m.tflite}\nconstraints: {max_accuracy_drop: 1}\n"
    with pytest.raises(SpecError, match="needs a dataset"):
        load_spec(write(tmp_path, text))


def test_repo_specs_load() -> None:
    root = Path(__file__).resolve().parent.parent
    specs = sorted((root / "specs").glob("*.yaml"))
    for path in specs:
        load_spec(path)


def test_firmware_kernels_key(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, GOOD + "  firmware:\n    kernels: reference\n"))
    assert spec.constraints.firmware is not None and spec.constraints.firmware.kernels == "reference"
    assert load_spec(write(tmp_path, GOOD + "  firmware:\n    samples: 5\n")).constraints.firmware.kernels is None  # type: ignore[union-attr]
    with pytest.raises(SpecError, match=r"constraints\.firmware\.kernels"):
        load_spec(write(tmp_path, GOOD + "  firmware:\n    kernels: cmsis\n"))
