"""Fuzzing the spec loader: whatever the YAML, ``load_spec`` returns a Spec or raises a one-line SpecError."""

from __future__ import annotations

import collections
from pathlib import Path

import fuzz_harness as fh
import fuzz_mutate as fm
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_tinyml.errors import SpecError
from pytest_tinyml.spec import load_spec

REPO = Path(__file__).resolve().parents[1]
SEED = 7
_SETTINGS = settings(max_examples=150, derandomize=True, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def test_seeded_spec_mutations(tmp_path: Path) -> None:
    bases = [fm.SPEC_TFLITE, (REPO / "specs" / "mnist.yaml").read_text()]
    outcomes: collections.Counter[str] = collections.Counter()
    bugs = []
    for i in range(300):
        ops, data = fm.spec_case(bases, SEED, i)
        outcome = fh.load_spec_case(data, tmp_path / "spec.yaml")
        outcomes[outcome.kind] += 1
        if outcome.bug:
            bugs.append(f"spec case {SEED}/{i} ({ops}): {outcome.detail}")
    assert not bugs, "\n\n".join(bugs[:3])
    assert outcomes["spec_error"] > 100 and outcomes["spec_ok"] > 0, outcomes


def _load(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "spec.yaml"
    path.write_bytes(data)
    try:
        load_spec(path)
    except SpecError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))


@_SETTINGS
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=400))
def test_arbitrary_text(tmp_path: Path, text: str) -> None:
    _load(tmp_path, text.encode("utf-8"))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
_KEYS = ["version", "name", "model", "dataset", "training", "quantization", "board", "constraints",
         "description", "regression"]


@_SETTINGS
@given(st.dictionaries(st.sampled_from(_KEYS), _json, max_size=8), st.booleans())
def test_wrong_types_in_every_field(tmp_path: Path, fields: dict[str, object], keep_valid_head: bool) -> None:
    data = dict(fields)
    if keep_valid_head:
        data = {"version": 1, "name": "x", "model": {"tflite": "m.tflite"}, **fields}
    _load(tmp_path, yaml.safe_dump(data, allow_unicode=True).encode("utf-8"))


@_SETTINGS
@given(st.sampled_from(["max_size", "arena", "flash", "max_latency", "min_accuracy", "max_accuracy_drop", "io_dtype",
                        "ops", "firmware"]), _json | st.sampled_from(["1e999KiB", "-3KiB", "nanms", "99999999999999999999GiB",
                                                                       "1e-320s", "∞%", "50 KiB", "0x10KiB"]))
def test_hostile_constraint_values(tmp_path: Path, key: str, value: object) -> None:
    data = {"version": 1, "name": "x", "model": {"tflite": "m.tflite"}, "constraints": {key: value}}
    _load(tmp_path, yaml.safe_dump(data, allow_unicode=True).encode("utf-8"))


@pytest.mark.parametrize(
    ("text", "message", "where"),
    [
        # regression; the place is the collection that goes past 1000 levels, whatever the PyYAML version
        ("version: 1\nname: deep\nmodel: " + "[" * 5000 + "]" * 5000 + "\n", "YAML nesting is too deep", "3:1007"),
        ("version: 1\nname: deep\nmodel: " + "{a: " * 3000 + "1" + "}" * 3000 + "\n", "YAML nesting is too deep",
         "3:4004"),
        (fm._alias_bomb(9), "more than 20000 YAML nodes", ""),
        ("version: 1\nname: rec\nmodel: &m {tflite: x.tflite, args: *m}\n", "", ""),
        ("version: 1\nname: x\nmodel: !!python/object/apply:os.system ['echo pwned']\n", "", ""),
        ("version: 1\nname: x\nmodel: {tflite: !!python/name:os.system }\n", "", ""),
    ],
    ids=["deep_list", "deep_map", "alias_bomb", "recursive_alias", "python_object_tag", "python_name_tag"],
)
def test_structural_attacks_are_one_line_errors(tmp_path: Path, text: str, message: str, where: str) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message or None) as info:
        load_spec(path)
    assert "\n" not in str(info.value)
    if where:  # the plugin's one line, with the place: not the YAML library's wording
        assert str(info.value).startswith(f"{path}:{where}: {message} (fix: ")
