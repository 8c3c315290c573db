"""Auditing a model must not import TensorFlow (6-8 s, 800 MB): checked in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

_SCRIPT = """
import json, sys
import pytest_tinyml.analysis
from pytest_tinyml.analysis.model import load_model, load_model_bytes
from pytest_tinyml.analysis.tflm import allocate, arena_32bit, tflm_op_report
from pytest_tinyml.analysis.flash import estimate_flash
path = sys.argv[1]
info = load_model(path)
alloc = allocate(load_model_bytes(path))
arena = arena_32bit(info, alloc)
report = tflm_op_report(info, alloc)
flash = estimate_flash(info)
print(json.dumps({
    "ok": alloc.ok,
    "arena": arena.bytes,
    "flash": flash.model_bytes + flash.runtime_code_bytes,
    "tf": sorted(m for m in sys.modules if m == "tensorflow" or m.startswith(("tensorflow.", "keras", "tf_keras"))),
}))
"""


def test_audit_does_not_import_tensorflow(tflite_factory: ModuleType, tmp_path: Path) -> None:
    model = tmp_path / "cnn.tflite"
    model.write_bytes(tflite_factory.int8_cnn())
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(model)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["ok"] and result["arena"] > 0 and result["flash"] > 0
    assert result["tf"] == []
