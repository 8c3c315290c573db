"""A seeded sample of bench/bench_fuzz.py's issue-13 hostile classes (the bench runs hundreds)."""

from __future__ import annotations

from pathlib import Path

import fuzz_hostile as fz
import pytest

OWN_CLASSES = [c for c in fz.CLASSES if c != "hostile_cache"]


@pytest.mark.parametrize("index", range(30))
def test_hostile_case(tmp_path: Path, index: int) -> None:
    case = fz.hostile_case(7, index)
    if case.cls == "huge_constant" and case.params.get("mib", 0) > 5:
        pytest.skip("large constants run in the bench only (they take seconds)")
    kind, detail = fz.run_case(case, tmp_path, compile_c=index in (3, 9))
    assert kind.startswith("ok:"), f"{case.cls} {case.what}: {kind}\n{detail}"


def test_every_class_is_generated() -> None:
    assert {fz.hostile_case(7, i).cls for i in range(len(fz.CLASSES))} == set(fz.CLASSES)
    assert set(OWN_CLASSES) < set(fz.CLASSES)
