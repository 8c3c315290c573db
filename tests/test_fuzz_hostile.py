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


def test_run_cache_round_trip_still_hits(tmp_path: Path) -> None:
    """The hostile_cache validation must not turn every genuine entry into a miss."""
    import numpy as np

    from pytest_tinyml.emulate.result import FirmwareResult
    from pytest_tinyml.emulate.runcache import RunCache

    result = FirmwareResult(outputs=[np.zeros(3, np.int8)], arena_bytes=1, stack_bytes=2, static_ram_bytes=3,
                            text_bytes=4, rodata_bytes=5, flash_bytes=6, instructions_per_inference=7.0,
                            machine="mps2-an386", elf_path=tmp_path / "app.elf", build_cached=False, seconds=0.5,
                            runtime="tflm", kernels="cmsis_nn")
    cache = RunCache(tmp_path / "runs")
    cache.save_firmware("k", result)
    hit = cache.load_firmware("k")
    assert hit is not None and hit.instructions_per_inference == 7.0 and hit.kernels == "cmsis_nn"
    meta = (tmp_path / "runs" / "k" / "result.json")
    meta.write_text(meta.read_text().replace('"seconds": 0.5', '"seconds": "fast"'))
    assert cache.load_firmware("k") is None  # a wrongly typed field is a miss, not a crash
