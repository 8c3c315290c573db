"""Seeded fuzz sample of the model audit path (the full run is bench/bench_fuzz.py).

Every mutated file must end in a one-line ModelFileError or in verdicts; the TFLM child may crash or be
refused, never the test process. Targeted cases check the error names what is wrong.
"""

from __future__ import annotations

import collections
import re
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import fuzz_harness as fh
import fuzz_mutate as fm
import pytest

from pytest_tinyml.analysis.model import parse_model
from pytest_tinyml.errors import ModelFileError

if TYPE_CHECKING:
    from conftest import PytestRunner

SEED = 7


@pytest.fixture(scope="module")
def bases() -> list[fm.Base]:
    return fm.make_bases(fm.factory_models())


def test_field_map_finds_the_schema_fields(bases: list[fm.Base]) -> None:
    cnn = next(b for b in bases if b.name == "int8_cnn")
    info = parse_model(cnn.data, "int8_cnn")
    n_tensors = len(info.tensors)
    assert cnn.fm.counts["tensor"] == n_tensors and cnn.fm.counts["operator"] == len(info.ops)
    assert len(cnn.fm.shapes) >= n_tensors  # shapes and shape signatures
    # every recorded opcode_index really holds the op's opcode index
    opcode_values = [struct.unpack_from("<I", cnn.data, p)[0] for p, _ in cnn.fm.scalars["opcode_index"]]
    assert max(opcode_values) < len(info.operator_codes)
    assert len(cnn.fm.ints["tensor_index"]) == sum(len(op.inputs) + len(op.outputs) for op in info.ops) + 2


def test_seeded_sample_parses_or_fails_in_one_line(bases: list[fm.Base], tmp_path: Path) -> None:
    outcomes: collections.Counter[str] = collections.Counter()
    bugs = []
    for i in range(400):
        base, ops, data = fm.model_case(bases, SEED, i)
        outcome, _ = fh.audit_parse(data, tmp_path / "case.tflite", tmp_path / "cache")
        outcomes[outcome.kind] += 1
        if outcome.bug:
            bugs.append(f"case {SEED}/{i} ({base}, {ops}): {outcome.kind}\n{outcome.detail}")
    assert not bugs, "\n\n".join(bugs[:3])
    # the sample reaches past the header checks (some mutants still parse) and is not trivially valid
    assert outcomes["verdicts"] >= 40 and outcomes["model_error"] >= 100, outcomes


def test_seeded_sample_through_tflm_children(bases: list[fm.Base], tmp_path: Path) -> None:
    parsed: list[int] = []
    i = 0
    while len(parsed) < 16:
        _, _, data = fm.model_case(bases, SEED, i)
        if fh.audit_parse(data, tmp_path / "p.tflite", tmp_path / "cache")[1]:
            parsed.append(i)
        i += 1

    def job(k: int) -> fh.Outcome:
        _, _, data = fm.model_case(bases, SEED, k)
        d = tmp_path / f"c{k}"
        d.mkdir()
        return fh.audit_tflm(data, d / "case.tflite", tmp_path / "cache", timeout=30, export_dir=d / "export")

    with ThreadPoolExecutor(2) as ex:
        outcomes = list(ex.map(job, parsed))
    assert not [o for o in outcomes if o.bug], [o.detail for o in outcomes if o.bug]
    assert {"tflm_allocated", "tflm_refused"} <= {o.kind for o in outcomes}


def _mutated(data: bytes, fmt: str, pos: int, value: int) -> bytes:
    out = bytearray(data)
    struct.pack_into("<" + fmt, out, pos, value)
    return bytes(out)


def _error(data: bytes) -> str:
    with pytest.raises(ModelFileError) as info:
        parse_model(data, "m.tflite")
    text = str(info.value)
    assert "\n" not in text and text.startswith("m.tflite: ")
    return text


def test_targeted_mutations_name_the_problem(bases: list[fm.Base]) -> None:
    cnn = next(b for b in bases if b.name == "int8_cnn")
    data, fmap = cnn.data, cnn.fm
    n_tensors = fmap.counts["tensor"]
    pos = fmap.ints["tensor_index"][0]
    assert "tensor" in _error(_mutated(data, "i", pos, n_tensors))
    assert "tensor" in _error(_mutated(data, "i", pos, -(2**31)))
    pos, _ = fmap.scalars["opcode_index"][0]
    assert "operator code" in _error(_mutated(data, "I", pos, 0xFFFFFFFF))
    pos, _ = fmap.scalars["buffer_index"][-1]
    assert "buffer" in _error(_mutated(data, "I", pos, 2**31))
    pos, _ = fmap.vector_lengths[0]
    assert "vector claims" in _error(_mutated(data, "I", pos, 0x7FFFFFFF))
    # an offset aimed at itself / at the table holding it (a cycle): still one bounded error or a parse
    for offset_pos, parent in fmap.offsets[:40]:
        for target in (offset_pos, parent):
            if target < 0:
                continue
            try:
                parse_model(_mutated(data, "I", offset_pos, (target - offset_pos) % (1 << 32)), "m.tflite")
            except ModelFileError as exc:
                assert "\n" not in str(exc)
    assert "identifier" in _error(data[:4] + b"TFL2" + data[8:]) or "not a TFLite" in _error(data[:4] + b"TFL2" + data[8:])
    assert "truncated or corrupted" in _error(data[: len(data) // 2])
    assert "size-prefixed" in _error(struct.pack("<I", len(data)) + data)


def test_huge_and_negative_shapes_do_not_reach_numpy(bases: list[fm.Base], tmp_path: Path) -> None:
    """Regression: a 2^31-1 or negative input dimension made the firmware input generation raise
    MemoryError / ValueError (a traceback in the flash and firmware items)."""
    cnn = next(b for b in bases if b.name == "int8_cnn")
    input_shape = cnn.fm.shapes[0]
    for value in (2**31 - 1, -2, -(2**31), 0):
        data = bytearray(cnn.data)
        struct.pack_into("<i", data, input_shape[-1], value)
        outcome, parsed = fh.audit_parse(bytes(data), tmp_path / "case.tflite", tmp_path / "cache")
        assert not outcome.bug, outcome.detail
        m = fh.measurements_for(tmp_path / "case.tflite", tmp_path / "cache")
        if parsed:
            from pytest_tinyml.errors import NotEvaluable

            with pytest.raises(NotEvaluable, match="has shape"):
                m.firmware_inputs  # noqa: B018


def test_pytest_on_corrupt_models_reports_one_line_failures(
    run_pytest: PytestRunner, bases: list[fm.Base], tmp_path: Path
) -> None:
    cnn = next(b for b in bases if b.name == "int8_cnn")
    (tmp_path / "cut.tflite").write_bytes(cnn.data[:1000])
    outcome, out = run_pytest.checked(["--tinyml-model", "cut.tflite", "-o", f"tinyml_cache_dir={tmp_path / 'c'}"], tmp_path)
    assert outcome.kind == "pytest_exit_1", (outcome, out)
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    # each failure section is the item's one-line error: "<check>: cut.tflite: truncated or corrupted: ..."
    sections = [line for line in out.splitlines() if re.match(r"\w+: cut\.tflite: truncated or corrupted: ", line)]
    assert len(failed) >= 5 and len(sections) == len(failed), out


def test_thousands_of_dimensions_are_refused(bases: list[fm.Base], tmp_path: Path) -> None:
    """Regression (bench_fuzz seed 1 case 4111): a shape vector whose length was raised to thousands
    parsed, and its element count (thousands of digits) broke json.dumps / f"{n:,}" in reports."""
    cnn = next(b for b in bases if b.name == "int8_cnn")
    pos = next(p for p, kind in cnn.fm.vector_lengths if kind == "shape")
    data = _mutated(cnn.data, "I", pos, (len(cnn.data) - pos - 4) // 4)
    assert "dimensions; TFLite kernels take at most 16" in _error(data)
    outcome, _ = fh.audit_parse(data, tmp_path / "case.tflite", tmp_path / "cache")
    assert outcome.kind == "model_error"
