"""Host TFLM (PyPI ``tflite-micro``) run in a child process.

Public API (other packages code against exactly these names):

- ``allocate(model: bytes, *, timeout: float | None = None) -> TflmAllocation``
- ``invoke(model: bytes, inputs: list[numpy.ndarray], *, timeout: float | None = None) -> list[numpy.ndarray]``

Timeouts come from one setting, the ini option ``tinyml_tflm_timeout`` (the plugin passes it to
:func:`configure`): an allocation may take that long, an invoke run that long plus as much again per
1,000 samples a child handles. Children are killed on every exit path: timeout, an exception or Ctrl-C
in the waiting parent (``KeyboardInterrupt``), interpreter exit (``atexit``), and the parent's death (the
child watches its parent and exits).
  ``inputs`` holds one array per sample for a single-input model (shape = the input tensor's shape
  without or with the batch-1 dimension, dtype = the input tensor's dtype); returns one output array per
  sample (first output tensor, the tensor's own dtype and shape). Raises ``TflmError`` on failure
  (allocation failure with TFLM's reason, crash with the signal, timeout).
- ``arena_32bit(info: ModelInfo, alloc: TflmAllocation) -> Arena32``: the arena a 32-bit Cortex-M build
  needs, derived from the 64-bit host figures (method in its docstring).
- ``tflm_op_report(info: ModelInfo, alloc: TflmAllocation | None) -> list[OpSupport]``.

Why a child process: TFLM is C++ and some corrupted models crash it (SIGSEGV); a hostile model could
also allocate without bound. The child (``python -m pytest_tinyml.analysis._tflm_child``) caps its
address space with ``RLIMIT_AS`` and is killed on timeout. TFLM prints its reasons from C++ on file
descriptor 2; the child points fd 2 at a file per stage, so the reasons survive a crash.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml.analysis.names import clip
from pytest_tinyml.errors import TinyMLError
from pytest_tinyml.kinds import KernelSet, OpStatus
from pytest_tinyml.options import child_environment

if TYPE_CHECKING:
    import numpy

    from pytest_tinyml.analysis.model import ModelInfo

#: Arena handed to the host interpreter: big enough for anything a microcontroller could run. TFLM
#: does not touch the arena's pages before it plans them, so this costs address space only.
DEFAULT_HOST_ARENA = 256 << 20
#: Address-space cap for the child (``RLIMIT_AS``).
DEFAULT_MEMORY_LIMIT = 4 << 30

_CHILD_MODULE = "pytest_tinyml.analysis._tflm_child"

#: Seconds an allocation may take (``tinyml_tflm_timeout``); see :func:`configure`.
_TIMEOUT = 60.0
#: Samples per extra timeout period for an invoke run.
SAMPLES_PER_PERIOD = 1000

#: Children started and not yet reaped; killed at interpreter exit whatever else happened.
_LIVE: set[subprocess.Popen[bytes]] = set()


def configure(*, timeout: float) -> None:
    """Set the timeout every allocation and invoke uses when the caller passes none (the ini option)."""
    global _TIMEOUT
    if not 0 < timeout < 1e7:  # also refuses NaN and infinity
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    _TIMEOUT = float(timeout)


def current_timeout() -> float:
    return _TIMEOUT


def _kill_all_live() -> None:
    for proc in list(_LIVE):
        _kill(proc)


atexit.register(_kill_all_live)
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


# --------------------------------------------------------------------------------------------------
# Child process plumbing
# --------------------------------------------------------------------------------------------------


@dataclass
class _ChildRun:
    workdir: Path
    returncode: int | None
    timed_out: bool
    result: dict[str, Any]
    stderr: dict[str, str]  # stage -> text ("allocate", "arena", "invoke", "python")

    @property
    def signal(self) -> str | None:
        if self.returncode is None or self.returncode >= 0:
            return None
        try:
            return signal.Signals(-self.returncode).name
        except ValueError:
            return f"signal {-self.returncode}"


def _start_child(workdir: Path) -> subprocess.Popen[bytes]:
    env = child_environment()
    with open(workdir / "stderr_python.txt", "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", _CHILD_MODULE, str(workdir), str(os.getpid())],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
            start_new_session=True,  # its own process group: killpg reaches anything it starts
        )
    _LIVE.add(proc)
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group and reap it (safe to call twice)."""
    if proc.returncode is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                proc.kill()
            except ProcessLookupError:
                pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:  # unkillable (D state): leave it to the atexit pass
        return
    _LIVE.discard(proc)


def _collect(workdir: Path, returncode: int | None, timed_out: bool) -> _ChildRun:
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
    return _ChildRun(workdir, returncode, timed_out, result, stderr)


def _write_request(workdir: Path, model: bytes, request: dict[str, Any]) -> None:
    (workdir / "model.tflite").write_bytes(model)
    (workdir / "request.json").write_text(json.dumps(request))


def _run_children(workdirs: list[Path], timeout: float) -> list[_ChildRun]:
    """Start one child per workdir (already holding its request) and wait for all, within ``timeout``."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for w in workdirs:
            procs.append(_start_child(w))
        deadline = time.monotonic() + timeout
        runs = []
        for w, proc in zip(workdirs, procs, strict=True):
            timed_out = False
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                _kill(proc)
                timed_out = True
            _LIVE.discard(proc)
            runs.append(_collect(w, None if timed_out else proc.returncode, timed_out))
        return runs
    finally:  # Ctrl-C (KeyboardInterrupt), an exception, pytest exiting: no child outlives this call
        for proc in procs:
            if proc.returncode is None:
                _kill(proc)


_MAX_STDERR_BYTES = 1 << 20
_MAX_REASON_LINE_CHARS = 400


def _reason_lines(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.splitlines():
        line = clip(raw.strip(), _MAX_REASON_LINE_CHARS)
        if not line or line.startswith("[RecordingMicroAllocator]"):
            continue
        if lines and lines[-1] == line:
            continue
        lines.append(line)
    return lines


def _reason(run: _ChildRun, stage: str) -> str:
    """TFLM's own words for a failure in ``stage``, else the Python error, else the exit status."""
    lines = _reason_lines(run.stderr.get(stage, ""))
    if not lines and stage == "allocate":
        lines = _reason_lines(run.stderr.get("arena", ""))
    if not lines and run.result.get("error"):
        lines = [str(run.result["error"])]
    if not lines:
        lines = _reason_lines(run.stderr.get("python", ""))[-3:]
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


# --------------------------------------------------------------------------------------------------
# allocate / invoke
# --------------------------------------------------------------------------------------------------


def allocate(
    model: bytes,
    *,
    timeout: float | None = None,
    arena_size: int = DEFAULT_HOST_ARENA,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    find_min_arena: bool = False,
) -> TflmAllocation:
    """Build a host TFLM interpreter for ``model`` in a child process and allocate its tensors.

    On success ``host_arena_bytes`` is TFLM's "Arena allocation total" (64-bit host) and ``details``
    holds the head/tail split and the recorded allocation categories (see
    :func:`parse_print_allocations`). With ``find_min_arena`` the child also binary-searches the
    smallest arena that allocates (``details["host_min_arena_bytes"]``; it exceeds the total by the
    temporary allocations made during Prepare). On failure ``reason`` holds TFLM's own stderr lines,
    ``signal`` the signal that killed the child, ``timed_out`` whether it was killed after ``timeout``
    (default: the configured ``tinyml_tflm_timeout``).
    """
    timeout = _TIMEOUT if timeout is None else timeout
    workdir = Path(tempfile.mkdtemp(prefix="tinyml-tflm-"))
    try:
        request: dict[str, Any] = {
            "mode": "allocate",
            "arena_size": arena_size,
            "memory_limit": memory_limit,
        }
        if find_min_arena:
            request["find_min_arena"] = True
        _write_request(workdir, bytes(model), request)
        run = _run_children([workdir], timeout)[0]
        return _allocation_from(run, timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _allocation_from(run: _ChildRun, timeout: float) -> TflmAllocation:
    stderr = "".join(run.stderr.get(s, "") for s in ("allocate", "arena", "python"))
    details = parse_print_allocations(run.stderr.get("arena", ""))
    if run.result.get("min_arena"):
        details["host_min_arena_bytes"] = int(run.result["min_arena"])
    allocated = bool(run.result.get("allocated"))
    if run.timed_out and not (allocated and run.result.get("stage") == "min_arena"):
        return TflmAllocation(
            ok=False,
            host_arena_bytes=details.get("total"),
            reason=f"timed out after {timeout:g} s in stage {run.result.get('stage', 'start')}",
            timed_out=True,
            stderr=stderr,
            details=details,
        )
    if (
        (run.signal or run.timed_out)
        and allocated
        and "total" in details
        and run.result.get("stage") == "min_arena"
    ):
        # TFLM can crash on arenas that are too small while searching the minimum: keep the allocation.
        details["host_min_arena_failed"] = 1
        return TflmAllocation(
            ok=True, host_arena_bytes=details["total"], reason=None, stderr=stderr, details=details
        )
    if run.signal:
        lines = _reason(run, "allocate")
        reason = f"TFLM crashed with {run.signal} during {run.result.get('stage', 'start')}"
        return TflmAllocation(
            ok=False,
            host_arena_bytes=details.get("total"),
            reason=f"{reason}: {lines}" if lines else reason,
            signal=run.signal,
            stderr=stderr,
            details=details,
        )
    if allocated and "total" in details:
        return TflmAllocation(
            ok=True, host_arena_bytes=details["total"], reason=None, stderr=stderr, details=details
        )
    reason = _reason(run, "allocate") or f"child exited with status {run.returncode}"
    return TflmAllocation(ok=False, host_arena_bytes=None, reason=reason, stderr=stderr, details=details)


_NUMPY_DTYPES = {
    "float32": "float32",
    "float16": "float16",
    "float64": "float64",
    "int8": "int8",
    "uint8": "uint8",
    "int16": "int16",
    "uint16": "uint16",
    "int32": "int32",
    "uint32": "uint32",
    "int64": "int64",
    "uint64": "uint64",
    "bool": "bool",
}


def invoke(
    model: bytes,
    inputs: list[numpy.ndarray] | list[Any],
    *,
    timeout: float | None = None,
    workers: int = 1,
    memory_limit: int = DEFAULT_MEMORY_LIMIT,
    num_outputs: int = 1,
    period: float | None = None,
) -> list[numpy.ndarray]:
    """Run host TFLM on each sample (batch 1, in order) and return the first output per sample (with
    ``num_outputs`` > 1: a tuple of the first ``num_outputs`` outputs per sample).

    For a model with several inputs, each sample is a tuple/list with one array per input. ``workers``
    > 1 splits the samples over that many child processes (each allocates its own interpreter; results
    come back in the original order). Raises :class:`TflmError` with TFLM's reason and the stage
    (``allocate``, ``invoke``), the signal on a crash, or the timeout. Raises ``ValueError`` when an
    input does not match the model's input tensor shape or dtype. Without ``timeout`` a child may take
    ``period`` seconds (the ``tinyml_tflm_timeout``) plus as much again per 1,000 samples it runs.
    """
    import numpy as np

    from pytest_tinyml.analysis.model import parse_model

    data = bytes(model)
    info = parse_model(data, "<model>")
    specs = info.inputs
    n_inputs = len(specs)
    samples = list(inputs)
    stacks: list[np.ndarray] = []
    for k, spec in enumerate(specs):
        dtype = _NUMPY_DTYPES.get(spec.dtype)
        if dtype is None:
            raise ValueError(f"input {k} ({spec.name}) has type {spec.dtype}, which invoke() cannot feed")
        shape = tuple(max(d, 1) for d in spec.shape)
        column = []
        for i, sample in enumerate(samples):
            arr = sample[k] if n_inputs > 1 else sample
            if n_inputs > 1 and not isinstance(sample, (tuple, list)):
                raise ValueError(f"sample {i}: the model has {n_inputs} inputs, pass a tuple of arrays")
            arr = np.asarray(arr)
            if arr.dtype != np.dtype(dtype):
                raise ValueError(
                    f"sample {i} input {k}: dtype {arr.dtype}, the model's input {spec.name!r} wants {dtype}"
                )
            if arr.size != int(np.prod(shape)) or arr.shape not in (shape, shape[1:]):
                raise ValueError(
                    f"sample {i} input {k}: shape {arr.shape}, the model's input {spec.name!r} has {shape}"
                )
            column.append(arr.reshape(shape))
        stacks.append(np.stack(column) if column else np.zeros((0, *shape), dtype=dtype))
    if not samples:
        return []

    workers = max(1, min(int(workers), len(samples)))
    bounds = [round(i * len(samples) / workers) for i in range(workers + 1)]
    if timeout is None:  # the allocation timeout (``period``), plus as much again per 1,000 samples a child runs
        per_child = max(b - a for a, b in zip(bounds, bounds[1:], strict=False))
        timeout = (_TIMEOUT if period is None else period) * (1 + per_child / SAMPLES_PER_PERIOD)
    root = Path(tempfile.mkdtemp(prefix="tinyml-tflm-"))
    try:
        workdirs = []
        for w in range(workers):
            wd = root / f"w{w}"
            wd.mkdir()
            for k in range(n_inputs):
                np.save(wd / f"inputs_{k}.npy", stacks[k][bounds[w] : bounds[w + 1]])
            _write_request(
                wd,
                data,
                {
                    "mode": "invoke",
                    "arena_size": DEFAULT_HOST_ARENA,
                    "memory_limit": memory_limit,
                    "num_inputs": n_inputs,
                    "input_shapes": [[max(d, 1) for d in s.shape] for s in specs],
                    "num_outputs": num_outputs,
                },
            )
            workdirs.append(wd)
        runs = _run_children(workdirs, timeout)
        outputs: list[np.ndarray] = []
        for w, run in enumerate(runs):
            stage = str(run.result.get("stage", "start"))
            if run.timed_out:
                raise TflmError(f"timed out after {timeout:g} s", stage=stage)
            if run.signal:
                detail = _reason(run, "invoke" if stage == "invoke" else "allocate")
                text = f"crashed with {run.signal}" + (f": {detail}" if detail else "")
                raise TflmError(text, stage=stage)
            if not run.result.get("ok"):
                if not run.result.get("allocated"):
                    raise TflmError(_reason(run, "allocate"), stage="allocate")
                failed = bounds[w] + int(run.result.get("failed_sample", 0))
                raise TflmError(f"sample {failed}: {_reason(run, 'invoke')}", stage="invoke")
            out = np.load(run.workdir / "outputs.npy", allow_pickle=False)
            if num_outputs == 1:
                outputs.extend(out[i] for i in range(len(out)))
                continue
            for i in range(len(out)):  # a tuple of every output per sample
                rest = [np.load(run.workdir / f"outputs_{i}_{j}.npy", allow_pickle=False) for j in range(1, num_outputs)]
                outputs.append((out[i], *rest))  # type: ignore[arg-type]
        return outputs
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------------
# 32-bit arena
# --------------------------------------------------------------------------------------------------

# sizeof() of TFLM's allocator structs and objects, measured by compiling tflite-micro's own headers
# (commit 90b983c2b, TF_LITE_STATIC_MEMORY) with g++ for x86-64 and with arm-none-eabi-g++ 12.2
# -mcpu=cortex-m4 (AAPCS, short enums).                                        (64-bit, 32-bit)
_SIZEOF = {
    "TfLiteEvalTensor": (24, 12),
    "TfLiteTensor": (64, 32),
    "NodeAndRegistration": (64, 32),
    "TfLiteAffineQuantization": (24, 12),
    "SubgraphAllocations": (16, 8),
    "MicroBuiltinDataAllocator": (16, 8),  # vtable pointer + allocator pointer
}
# Objects the allocator places at the top of the arena before the model. The host wrapper uses the
# recording variants (RecordingSingleArenaBufferAllocator 104 + GreedyMemoryPlanner 72 +
# RecordingMicroAllocator 248); a firmware MicroInterpreter(model, resolver, arena, size) creates
# SingleArenaBufferAllocator 36 + GreedyMemoryPlanner 44 + MicroAllocator 36 (32-bit).
_HOST_FIXED_OBJECTS = 104 + 72 + 248
_TARGET_FIXED_OBJECTS = 36 + 44 + 36
# Tail bytes outside the recorded categories that the host allocates and a firmware build does not, beyond
# the allocator objects, the builtin-data allocator and the subgraph records above: 32 B, measured as the
# constant part of (host tail - Cortex-M4 tail) on TFLM's hello_world, micro_speech and person_detect and
# seed 001's CNN (real TFLM 90b983c built for Cortex-M4 with a RecordingMicroInterpreter under QEMU).
_HOST_UNRECORDED = 32
# Kernel persistent data with pointers, per operator (TFLM 90b983c headers compiled for x86-64 and
# Cortex-M4, rounded to the 16-byte persistent-buffer alignment): OpDataConv 72 -> 56 B (CONV_2D,
# DEPTHWISE_CONV_2D), OpDataFullyConnected 64 -> 48 B, SoftmaxParams 80 -> 56 B: 16 B each once aligned.
# The kernels' two input/output pointer arrays: 32 B in all. Builtin options of FULLY_CONNECTED
# (TfLiteFullyConnectedParams 16 -> 5 B with short enums, plus the alignment of what follows): 27 B
# measured per operator.
_OPDATA_SAVING = {"CONV_2D": 16, "DEPTHWISE_CONV_2D": 16, "FULLY_CONNECTED": 16 + 27, "SOFTMAX": 16}
_POINTER_ARRAYS_SAVING = 32
# CMSIS-NN's FULLY_CONNECTED keeps 32 B more persistent data than the reference kernel (measured on
# hello_world: 3 ops, +96 B); other CMSIS-NN kernels changed arena_used_bytes() by at most 32 B in all on the
# models above.
_CMSIS_NN_EXTRA = {"FULLY_CONNECTED": 32}


@dataclass(frozen=True)
class Arena32:
    bytes: int  # estimated arena_used_bytes() of a 32-bit Cortex-M build
    host_bytes: int  # "Arena allocation total" printed by the 64-bit host runtime
    method: str
    required_bytes: int | None = None  # smallest tensor_arena that allocates, when the host minimum is known
    head_bytes: int = 0  # activation plan + scratch buffers (same on both targets)
    tail_bytes: int = 0  # persistent part, 32-bit estimate


def _align16(n: int) -> int:
    return (n + 15) // 16 * 16


def arena_32bit(info: ModelInfo, alloc: TflmAllocation, kernels: str = "reference") -> Arena32:
    """Arena a 32-bit Cortex-M TFLM build needs, derived from the 64-bit host allocation.

    Method. TFLM splits its arena into a *head* (the greedy memory plan of activation tensors plus
    kernel scratch buffers) and a *tail* (persistent data). The head holds tensor bytes only, and its
    plan is computed from tensor sizes and lifetimes, so it is the same on a 32-bit target as on the
    64-bit host (with the same reference kernels). The tail is rebuilt category by category from the
    host's ``print_allocations()`` record, replacing each pointer-bearing struct by its 32-bit size
    (sizes measured by compiling TFLM's headers for x86-64 and for Cortex-M4):

    - ``TfLiteEvalTensor`` 24 -> 12 bytes per tensor, ``NodeAndRegistration`` 64 -> 32 per operator,
      persistent ``TfLiteTensor`` (model inputs/outputs) 64 -> 32, ``TfLiteAffineQuantization``
      24 -> 12 (half of the recorded quantization allocations; the zero-point arrays are int32 on
      both);
    - the allocator objects the host wrapper puts in the arena (recording allocator, planner: 424
      bytes) become the firmware's plain ones (116 bytes), the builtin-data allocator 16 -> 8 and the
      per-subgraph allocation records 16 -> 8 each;
    - kernel persistent buffers (OpData, per-channel multipliers and shifts), builtin option structs
      and variable buffers are pointer-free or int32 arrays and are kept as they are.

    ``bytes`` estimates ``MicroInterpreter::arena_used_bytes()`` on the target. ``required_bytes``
    (only when :func:`allocate` ran with ``find_min_arena=True``) adds the temporary allocations made
    while kernels prepare (host minimum minus host total, halved because they are mostly
    ``TfLiteTensor`` structs) and 16 bytes for aligning the arena start.

    Accuracy. Against hand-derived 32-bit layouts this is exact for the struct categories; the
    remaining error comes from per-allocation alignment padding that differs between the targets
    (8-byte versus 4-byte alignment), at most a few bytes per persistent allocation. Reference points:
    TFLM's hello_world int8 model prints 1,504 bytes on the host and is estimated at 868 bytes here
    (its example reserves 3,000); for person detection see the package report.
    """
    if not alloc.ok or alloc.host_arena_bytes is None:
        raise TflmError(alloc.reason or "allocation failed", stage="allocate")
    d = alloc.details
    host_total = alloc.host_arena_bytes
    head = d.get("head", 0)
    tail = d.get("tail", host_total - head)

    def per_item(key: str, struct: str) -> int:
        count = d.get(f"{key}_count", 0)
        size64, size32 = _SIZEOF[struct]
        return min(d.get(f"{key}_used", 0), count * (size64 - size32))

    saving = per_item("eval_tensors", "TfLiteEvalTensor")
    saving += per_item("nodes", "NodeAndRegistration")
    saving += per_item("persistent_tensors", "TfLiteTensor")
    quant_structs = d.get("quantization_count", 0) // 2
    saving += quant_structs * (
        _SIZEOF["TfLiteAffineQuantization"][0] - _SIZEOF["TfLiteAffineQuantization"][1]
    )
    saving += _HOST_FIXED_OBJECTS - _TARGET_FIXED_OBJECTS + _HOST_UNRECORDED
    saving += _SIZEOF["MicroBuiltinDataAllocator"][0] - _SIZEOF["MicroBuiltinDataAllocator"][1]
    n_subgraphs = len(info.subgraphs)
    saving += n_subgraphs * (_SIZEOF["SubgraphAllocations"][0] - _SIZEOF["SubgraphAllocations"][1])
    op_names = [op.name for op in info.ops]
    op_saving = _POINTER_ARRAYS_SAVING + sum(_OPDATA_SAVING.get(name, 0) for name in op_names)
    if kernels == KernelSet.CMSIS_NN:
        op_saving -= sum(_CMSIS_NN_EXTRA.get(name, 0) for name in op_names)
    saving += op_saving
    tail32 = max(tail - saving, 0)
    total32 = head + tail32
    required = None
    host_min = d.get("host_min_arena_bytes")
    if host_min is not None:
        # Kernels' Prepare() temporaries (measured: hello_world needs 396 B above arena_used_bytes() on
        # Cortex-M4 where the host needs 432 B): taken at their host size, an upper bound.
        temp64 = max(host_min - host_total, 0)
        required = _align16(total32 + temp64) + 64  # 64 B: the estimate's error on the models above
    method = (
        f"host head {head} B kept (tensor plan, pointer-free); host tail {tail} B rebuilt with 32-bit "
        f"struct sizes: -{saving} B for {d.get('eval_tensors_count', 0)} TfLiteEvalTensor, "
        f"{d.get('nodes_count', 0)} NodeAndRegistration, {d.get('persistent_tensors_count', 0)} "
        f"TfLiteTensor, {quant_structs} TfLiteAffineQuantization, allocator objects, "
        f"{n_subgraphs} subgraph record(s), {op_saving} B of per-operator data ({kernels} kernels)"
    )
    return Arena32(
        bytes=total32,
        host_bytes=host_total,
        method=method,
        required_bytes=required,
        head_bytes=head,
        tail_bytes=tail32,
    )


# --------------------------------------------------------------------------------------------------
# Op support report
# --------------------------------------------------------------------------------------------------

FIX_REQUANTIZE = (
    "re-quantize with a representative dataset and int8-only ops "
    "(converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8])"
)


@dataclass(frozen=True)
class OpSupport:
    op: str
    count: int
    status: OpStatus  # ok | register (TFLM ships it, the firmware must add it) | unsupported | rejected
    reason: str | None = None  # TFLM's words when the runtime rejected it, else the table's explanation
    fix: str | None = None
    custom: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "count": self.count,
            "status": self.status,
            "reason": self.reason,
            "fix": self.fix,
            "custom": self.custom,
        }


_PREPARE_FAIL_RE = re.compile(r"Node (\S+) \(number (\d+)\) failed to (?:prepare|invoke)")
_NOT_FOUND_RE = re.compile(r"Didn't find op for builtin opcode '([^']+)'")
_CUSTOM_FAIL_RE = re.compile(r"Failed to get registration from op code (\S+)")


def _failure_fix(info: ModelInfo, op: str, lines: list[str]) -> str:
    text = " ".join(lines)
    if "Hybrid models are not supported" in text or re.search(
        r"Input type: FLOAT32 with filter type: INT", text
    ):
        return FIX_REQUANTIZE + " (hybrid/dynamic-range models run float activations against int8 weights)"
    if info.quantization == "float16" or "kTfLiteFloat16" in text or "FLOAT16" in text:
        return FIX_REQUANTIZE + " (float16 weights are not supported by TFLM)"
    if info.quantization == "dynamic_range":
        return FIX_REQUANTIZE
    if re.search(r"Type (\w+) \(\d+\) not supported|not supported|was not true", text):
        return (
            f"make {op} run on tensor types TFLM implements for it (int8/int16 or float32): "
            "convert with full-integer quantization or change the layer"
        )
    return f"check the {op} layer's configuration against TFLM's kernel (see TFLM's message)"


def tflm_op_report(info: ModelInfo, alloc: TflmAllocation | None = None) -> list[OpSupport]:
    """One :class:`OpSupport` per distinct op of the model, in order of first use.

    Combines the op table of :mod:`pytest_tinyml.analysis.tflm_ops` (what TFLM ships; signal-library and
    other custom kernels are ``"register"``: TFLM has them but the firmware's op resolver must add them)
    with the host runtime's allocation failure, which is authoritative: an op TFLM named in its failure
    is ``"rejected"`` with TFLM's lines as the reason and a fix for the failure class (hybrid or float16
    quantization, unregistered custom op, op missing from TFLM, unsupported tensor types).
    """
    from pytest_tinyml.analysis import tflm_ops

    failed = alloc is not None and not alloc.ok
    lines = _reason_lines(alloc.stderr) if alloc is not None and failed else []
    failed_text = (
        "; ".join(lines) if lines else ((alloc.reason or "") if alloc is not None and failed else "")
    )
    rejected: dict[str, str] = {}
    for i, line in enumerate(lines):
        m = _PREPARE_FAIL_RE.search(line)
        if m:
            context = [x for x in lines[max(0, i - 3) : i + 1]]
            rejected.setdefault(m.group(1), "; ".join(context))
        m = _NOT_FOUND_RE.search(line)
        if m:
            rejected.setdefault(m.group(1), line)
    custom_failed = any(_CUSTOM_FAIL_RE.search(x) for x in lines)

    report: list[OpSupport] = []
    counts = info.ops_by_name
    customs = set(info.custom_ops)
    for name, count in counts.items():
        custom = name in customs
        if name in rejected:
            reason = rejected[name]
            if _NOT_FOUND_RE.search(reason):
                hint = tflm_ops.REPLACEMENT_HINTS.get(name, "use ops TFLM implements")
                fix = f"replace op {name}: {hint}"
            else:
                fix = _failure_fix(info, name, lines)
            report.append(OpSupport(name, count, OpStatus.REJECTED, reason, fix, custom))
            continue
        if custom:
            if tflm_ops.is_flex_op(name):
                report.append(
                    OpSupport(
                        name,
                        count,
                        OpStatus.UNSUPPORTED,
                        "a TensorFlow (Flex) op embedded with SELECT_TF_OPS; TFLM cannot run TensorFlow ops",
                        tflm_ops.REPLACEMENT_HINTS["FlexOps"],
                        True,
                    )
                )
            elif name in tflm_ops.TFLM_SIGNAL_OPS:
                report.append(
                    OpSupport(
                        name,
                        count,
                        OpStatus.REGISTER,
                        "TFLM ships it (signal library) but the firmware must register it",
                        f"call MicroMutableOpResolver::Add{name.removeprefix('Signal')}() (signal op {name}) "
                        "in the firmware's op resolver",
                        True,
                    )
                )
            elif name in tflm_ops.TFLM_OTHER_CUSTOM_OPS:
                method = tflm_ops.TFLM_OTHER_CUSTOM_OPS[name]
                report.append(
                    OpSupport(
                        name,
                        count,
                        OpStatus.REGISTER,
                        "TFLM ships it but the firmware must register it",
                        f"call MicroMutableOpResolver::{method} in the firmware's op resolver",
                        True,
                    )
                )
            else:
                what = tflm_ops.VENDOR_CUSTOM_OPS.get(name, "a custom op TFLM does not ship")
                reason = what
                if custom_failed:
                    reason = f"{what}; TFLM: {'; '.join(x for x in lines if _CUSTOM_FAIL_RE.search(x))}"
                report.append(
                    OpSupport(
                        name,
                        count,
                        OpStatus.UNSUPPORTED,
                        reason,
                        f"register custom op {name} in the firmware's op resolver, or convert without it",
                        True,
                    )
                )
            continue
        if name not in tflm_ops.TFLM_BUILTIN_OPS:
            hint = tflm_ops.REPLACEMENT_HINTS.get(
                name, "use ops TFLM implements, or write and register a kernel"
            )
            report.append(
                OpSupport(
                    name,
                    count,
                    OpStatus.UNSUPPORTED,
                    f"TFLM has no kernel for builtin op {name}",
                    f"replace op {name}: {hint}",
                )
            )
            continue
        report.append(OpSupport(name, count, OpStatus.OK))

    if failed_text and not any(r.status in (OpStatus.REJECTED, OpStatus.UNSUPPORTED) for r in report):
        # TFLM failed without naming an op of the model: attach its words to the model as a whole.
        model_fix: str | None = _failure_fix(info, "the model", lines) if lines else None
        report.append(OpSupport("(model)", 1, OpStatus.REJECTED, failed_text, model_fix))
    return report
