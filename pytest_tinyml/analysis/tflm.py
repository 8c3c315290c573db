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

Rooms: the child plumbing is :mod:`.tflm_host` (on the process supervisor :mod:`pytest_tinyml._util.proc`),
the 32-bit arena arithmetic :mod:`.arena32`, the op report :mod:`.tflm_report`; this module holds
``allocate``/``invoke`` and names the public API.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml.analysis import tflm_host
from pytest_tinyml.analysis.arena32 import Arena32, arena_32bit
from pytest_tinyml.analysis.tflm_host import (
    ChildRun,
    TflmAllocation,
    TflmError,
    parse_print_allocations,
    run_children,
    write_request,
)
from pytest_tinyml.analysis.tflm_report import FIX_REQUANTIZE, OpSupport, tflm_op_report

if TYPE_CHECKING:
    import numpy


#: Arena handed to the host interpreter: big enough for anything a microcontroller could run. TFLM
#: does not touch the arena's pages before it plans them, so this costs address space only.
DEFAULT_HOST_ARENA = 256 << 20
#: Address-space cap for the child (``RLIMIT_AS``).
DEFAULT_MEMORY_LIMIT = 4 << 30

#: Seconds an allocation may take when the caller passes none (the plugin passes ini
#: ``tinyml_tflm_timeout`` from its options).
DEFAULT_TIMEOUT = 60.0
#: Samples per extra timeout period for an invoke run.
SAMPLES_PER_PERIOD = 1000


def check_timeout(timeout: float) -> float:
    """``timeout`` in seconds if it is a positive, finite number; ValueError otherwise."""
    if not 0 < timeout < 1e7:  # also refuses NaN and infinity
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


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
    (default :data:`DEFAULT_TIMEOUT`).
    """
    timeout = DEFAULT_TIMEOUT if timeout is None else check_timeout(timeout)
    workdir = Path(tempfile.mkdtemp(prefix="tinyml-tflm-"))
    try:
        request: dict[str, Any] = {
            "mode": "allocate",
            "arena_size": arena_size,
            "memory_limit": memory_limit,
        }
        if find_min_arena:
            request["find_min_arena"] = True
        write_request(workdir, bytes(model), request)
        run = run_children([workdir], timeout)[0]
        return _allocation_from(run, timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _allocation_from(run: ChildRun, timeout: float) -> TflmAllocation:
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
        lines = tflm_host.reason(run, "allocate")
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
    reason = tflm_host.reason(run, "allocate") or f"child exited with status {run.returncode}"
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
        timeout = (DEFAULT_TIMEOUT if period is None else check_timeout(period)) * (1 + per_child / SAMPLES_PER_PERIOD)
    root = Path(tempfile.mkdtemp(prefix="tinyml-tflm-"))
    try:
        workdirs = []
        for w in range(workers):
            wd = root / f"w{w}"
            wd.mkdir()
            for k in range(n_inputs):
                np.save(wd / f"inputs_{k}.npy", stacks[k][bounds[w] : bounds[w + 1]])
            write_request(
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
        runs = run_children(workdirs, timeout)
        outputs: list[np.ndarray] = []
        for w, run in enumerate(runs):
            stage = str(run.result.get("stage", "start"))
            if run.timed_out:
                raise TflmError(f"timed out after {timeout:g} s", stage=stage)
            if run.signal:
                detail = tflm_host.reason(run, "invoke" if stage == "invoke" else "allocate")
                text = f"crashed with {run.signal}" + (f": {detail}" if detail else "")
                raise TflmError(text, stage=stage)
            if not run.result.get("ok"):
                if not run.result.get("allocated"):
                    raise TflmError(tflm_host.reason(run, "allocate"), stage="allocate")
                failed = bounds[w] + int(run.result.get("failed_sample", 0))
                raise TflmError(f"sample {failed}: {tflm_host.reason(run, 'invoke')}", stage="invoke")
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


__all__ = [
    "FIX_REQUANTIZE",
    "Arena32",
    "OpSupport",
    "TflmAllocation",
    "TflmError",
    "allocate",
    "arena_32bit",
    "check_timeout",
    "invoke",
    "parse_print_allocations",
    "tflm_op_report",
]
