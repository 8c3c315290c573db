"""The host-TFLM child processes (``python -m pytest_tinyml.analysis._tflm_child``) on the process
supervisor (:mod:`pytest_tinyml._util.proc`): their requests, their results, TFLM's reasons read back
from the per-stage stderr files, and the allocation record (``print_allocations()``) parsed.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tinyml._util.proc import Child, signal_name
from pytest_tinyml.analysis.names import clip
from pytest_tinyml.errors import TinyMLError
from pytest_tinyml.options import child_environment

_CHILD_MODULE = "pytest_tinyml.analysis._tflm_child"
_MAX_REASON_LINES = 12


class TflmError(TinyMLError):
    """TFLM could not run the model: ``reason`` is TFLM's own words (or the signal / timeout).

    A :class:`~pytest_tinyml.errors.TinyMLError`, so an item that needs TFLM's outputs (firmware
    bit-exactness) fails with this one line instead of a traceback when the model crashes TFLM.
    """

    def __init__(self, reason: str, *, stage: str) -> None:
        self.reason = reason
        self.stage = stage
        super().__init__(f"TFLM {stage} failed: {reason}")


@dataclass
class TflmAllocation:
    ok: bool
    host_arena_bytes: int | None  # "Arena allocation total N bytes" from the 64-bit host runtime
    reason: str | None  # TFLM's stderr lines when allocation failed
    signal: str | None = None  # e.g. "SIGSEGV" when the child crashed
    timed_out: bool = False
    stderr: str = ""
    details: dict[str, int] = field(default_factory=dict)


@dataclass
class ChildRun:
    workdir: Path
    returncode: int | None
    timed_out: bool
    result: dict[str, Any]
    stderr: dict[str, str]  # stage -> text ("allocate", "arena", "invoke", "python")

    @property
    def signal(self) -> str | None:
        return signal_name(self.returncode)


def _start_child(workdir: Path) -> Child:
    return Child(
        [sys.executable, "-m", _CHILD_MODULE, str(workdir), str(os.getpid())],
        log=workdir / "stderr_python.txt",
        env=child_environment(),
    )


def _collect(workdir: Path, returncode: int | None, timed_out: bool) -> ChildRun:
    result: dict[str, Any] = {}
    try:
        result = json.loads((workdir / "result.json").read_text())
    except (OSError, ValueError):
        pass
    stderr = {}
    for stage in ("allocate", "arena", "invoke", "python"):
        path = workdir / f"stderr_{stage}.txt"
        if path.exists():
            with open(path, "rb") as fh:  # bounded: a hostile name can make TFLM print megabytes
                stderr[stage] = fh.read(_MAX_STDERR_BYTES).decode("utf-8", errors="replace")
    return ChildRun(workdir, returncode, timed_out, result, stderr)


def write_request(workdir: Path, model: bytes, request: dict[str, Any]) -> None:
    (workdir / "model.tflite").write_bytes(model)
    (workdir / "request.json").write_text(json.dumps(request))


def run_children(workdirs: list[Path], timeout: float) -> list[ChildRun]:
    """Start one child per workdir (already holding its request) and wait for all, within ``timeout``."""
    children: list[Child] = []
    try:
        for w in workdirs:
            children.append(_start_child(w))
        deadline = time.monotonic() + timeout
        runs = []
        for w, child in zip(workdirs, children, strict=True):
            timed_out = not child.wait(deadline - time.monotonic())
            if timed_out:
                child.kill()
            runs.append(_collect(w, None if timed_out else child.returncode, timed_out))
        return runs
    finally:  # Ctrl-C (KeyboardInterrupt), an exception, pytest exiting: no child outlives this call
        for child in children:
            child.kill()


_MAX_STDERR_BYTES = 1 << 20
_MAX_REASON_LINE_CHARS = 400


def reason_lines(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.splitlines():
        line = clip(raw.strip(), _MAX_REASON_LINE_CHARS)
        if not line or line.startswith("[RecordingMicroAllocator]"):
            continue
        if lines and lines[-1] == line:
            continue
        lines.append(line)
    return lines


def reason(run: ChildRun, stage: str) -> str:
    """TFLM's own words for a failure in ``stage``, else the Python error, else the exit status."""
    lines = reason_lines(run.stderr.get(stage, ""))
    if not lines and stage == "allocate":
        lines = reason_lines(run.stderr.get("arena", ""))
    if not lines and run.result.get("error"):
        lines = [str(run.result["error"])]
    if not lines:
        lines = reason_lines(run.stderr.get("python", ""))[-3:]
    if not lines and run.returncode and run.returncode > 0:
        lines = [f"child exited with status {run.returncode} in stage {run.result.get('stage', 'start')}"]
    if len(lines) > _MAX_REASON_LINES:
        lines = lines[:_MAX_REASON_LINES] + [f"... ({len(lines) - _MAX_REASON_LINES} more lines)"]
    return "; ".join(lines)


_TOTAL_RE = re.compile(r"Arena allocation (total|head|tail) (\d+) bytes")
_CATEGORY_RE = re.compile(
    r"'([^']+)' used (\d+) bytes with alignment overhead \(requested (\d+) bytes for (\d+) "
)


_CATEGORY_KEYS = {
    "TfLiteEvalTensor data": "eval_tensors",
    "Persistent TfLiteTensor data": "persistent_tensors",
    "Persistent TfLiteTensor quantization data": "quantization",
    "Persistent buffer data": "persistent_buffers",
    "TfLiteTensor variable buffer data": "variable_buffers",
    "NodeAndRegistration struct": "nodes",
    "Operator runtime data": "op_data",
    "Persistent compression data": "compression",
}


def parse_print_allocations(text: str) -> dict[str, int]:
    """``print_allocations()`` output -> ``{"total", "head", "tail"}`` plus ``<key>_used``,
    ``<key>_requested`` and ``<key>_count`` for each recorded category, key one of ``eval_tensors``,
    ``persistent_tensors``, ``quantization``, ``persistent_buffers``, ``variable_buffers``, ``nodes``,
    ``op_data``, ``compression``."""
    details: dict[str, int] = {}
    for m in _TOTAL_RE.finditer(text):
        details[m.group(1)] = int(m.group(2))
    for m in _CATEGORY_RE.finditer(text):
        key = _CATEGORY_KEYS.get(m.group(1), re.sub(r"[^a-z0-9]+", "_", m.group(1).lower()).strip("_"))
        details[f"{key}_used"] = int(m.group(2))
        details[f"{key}_requested"] = int(m.group(3))
        details[f"{key}_count"] = int(m.group(4))
    return details
