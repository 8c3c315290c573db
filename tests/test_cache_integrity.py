"""Cache entries that decide verdicts are checked against a digest kept apart from them (index/).

End to end with the real firmware run (arm-none-eabi-gcc + QEMU): a cached result.json edited to claim
fewer instructions must not turn into a faster latency; the real figure comes back.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import tflite_factory  # noqa: E402

from pytest_tinyml import emulate  # noqa: E402
from pytest_tinyml._util import cachefs  # noqa: E402

pytest_plugins = ["pytester"]


def _latency(pytester: pytest.Pytester, report: str) -> float:
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--tinyml-spec", "lat.yaml", "--tinyml-model", "m.tflite", "-k", "latency",
        "--tinyml-firmware-runtime", "tinyml",
        "-o", "tinyml_cache_dir=c", "--tinyml-report", report, timeout=600,
    )
    assert result.ret == 0, result.stdout.str()
    doc = json.loads((pytester.path / report / "report.json").read_text())
    value = doc["targets"][0]["metrics"]["latency_seconds"]
    assert isinstance(value, float) and value > 0
    return value


def _claim_faster(meta: dict[str, object]) -> None:
    """Edit a cached firmware result to claim a 1000x faster model: fewer instructions, and no instruction-class
    counts (latency then comes from the edited instruction count, as it does where the QEMU plugin is absent)."""
    meta["instructions_per_inference"] = float(meta["instructions_per_inference"]) / 1000  # type: ignore[arg-type]
    meta["instruction_counts"] = None


@pytest.mark.firmware
def test_edited_run_result_is_not_trusted(pytester: pytest.Pytester) -> None:
    status = emulate.toolchain_status()
    if not status.ok:
        pytest.skip(f"firmware toolchain missing: {', '.join(status.missing)}")
    (pytester.path / "m.tflite").write_bytes(tflite_factory.int8_cnn(0))
    (pytester.path / "lat.yaml").write_text(
        "version: 1\nname: lat\nboard: mps2_an386\nconstraints: {max_latency: 10s, firmware: {samples: 1}}\n"
    )
    real = _latency(pytester, "r1")
    entries = [p.parent for p in (pytester.path / "c" / "runs").glob("*/result.json")
               if "instructions_per_inference" in json.loads(p.read_text())]
    assert len(entries) == 1
    result_json = entries[0] / "result.json"
    meta = json.loads(result_json.read_text())
    _claim_faster(meta)
    result_json.write_text(json.dumps(meta))

    assert _latency(pytester, "r2") == real  # mismatch with the index: the firmware ran again

    # what the index does not stop (README): someone who rewrites the entry and its index digest too
    meta = json.loads(result_json.read_text())
    _claim_faster(meta)
    result_json.write_text(json.dumps(meta))
    files = {name: (entries[0] / name).read_bytes() for name in ("result.json", "outputs.npz")}
    cachefs.DigestIndex(pytester.path / "c").put("runs", entries[0].name, cachefs.entry_digest(files))
    assert _latency(pytester, "r3") < real / 100
