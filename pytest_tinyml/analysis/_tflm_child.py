"""Child process that runs host TFLM (``python -m pytest_tinyml.analysis._tflm_child WORKDIR``).

The parent (:mod:`pytest_tinyml.analysis.tflm`) writes ``WORKDIR/request.json`` and ``model.tflite``
(plus ``inputs_<k>.npy`` for an invoke) and reads back ``result.json`` and ``outputs.npy``. TFLM reports
its reasons from C++ on file descriptor 2, so each stage's fd 2 is pointed (``dup2``) at its own file:
``stderr_allocate.txt``, ``stderr_arena.txt``, ``stderr_invoke.txt``; the parent reads them even when
this process dies from a signal. The address space is capped (``RLIMIT_AS``) so a hostile model cannot
exhaust the machine; the parent enforces the timeout.

Fault injection for tests only: ``PYTEST_TINYML_FAKE_CHILD_FAULT`` = ``segv`` (raise SIGSEGV after the
interpreter is built), ``hang`` (sleep forever) or ``exit`` (exit with status 3 without a result); append ``:invoke`` to fire
before the first inference instead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytest_tinyml.options import FAULT_ENV, Environment

__all__ = ["FAULT_ENV", "main"]


@contextmanager
def _fd2_to(path: Path) -> Iterator[None]:
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(fd)
        os.close(saved)


def _limit_memory(limit_bytes: int) -> None:
    if limit_bytes <= 0:
        return
    try:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        if hard != resource.RLIM_INFINITY:
            limit_bytes = min(limit_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))
    except (ImportError, ValueError, OSError):  # not available on this platform: run without the cap
        pass


def _fault(point: str) -> None:
    """Test-only fault injection: ``KIND`` or ``KIND:POINT`` (POINT = allocate (default) or invoke)."""
    spec = Environment.read().fake_child_fault
    if not spec:
        return
    kind, _, where = spec.partition(":")
    if (where or "allocate") != point:
        return
    if kind == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif kind == "hang":
        while True:
            time.sleep(3600)
    elif kind == "exit":
        os._exit(3)


def _write(workdir: Path, result: dict[str, Any]) -> None:
    tmp = workdir / "result.json.tmp"
    tmp.write_text(json.dumps(result))
    os.replace(tmp, workdir / "result.json")


def _build(runtime: Any, model: bytes, arena_size: int, workdir: Path) -> Any:
    with _fd2_to(workdir / "stderr_allocate.txt"):
        return runtime.Interpreter.from_bytes(model, arena_size=arena_size)


def _min_arena(runtime: Any, model: bytes, low: int, high: int, workdir: Path) -> int | None:
    """Smallest arena (16-byte steps) in ``[low, high]`` that allocates; None if ``high`` does not."""

    def fits(size: int) -> bool:
        with _fd2_to(workdir / "stderr_search.txt"):
            try:
                runtime.Interpreter.from_bytes(model, arena_size=size)
                return True
            except RuntimeError:
                return False

    lo, hi = low // 16, (high + 15) // 16
    if not fits(hi * 16):
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid * 16):
            hi = mid
        else:
            lo = mid + 1
    return hi * 16


def _exit_with_parent(parent: int) -> None:
    """A daemon thread ends this process when its parent is gone (pytest killed with SIGKILL, a crash):
    the child runs in its own session, so nothing else would stop a hung TFLM."""
    import threading

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(4)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str]) -> int:
    workdir = Path(argv[1])
    if len(argv) > 2:
        _exit_with_parent(int(argv[2]))
    request = json.loads((workdir / "request.json").read_text())
    _limit_memory(int(request.get("memory_limit", 0)))
    model = (workdir / "model.tflite").read_bytes()
    result: dict[str, Any] = {"ok": False, "stage": "import"}
    _write(workdir, result)

    from tflite_micro.python.tflite_micro import runtime

    result["stage"] = "allocate"
    _write(workdir, result)
    try:
        interpreter = _build(runtime, model, int(request["arena_size"]), workdir)
    except Exception as exc:  # TFLM raises RuntimeError; anything else is reported the same way
        result["error"] = f"{type(exc).__name__}: {exc}"
        _write(workdir, result)
        return 0
    _fault("allocate")
    with _fd2_to(workdir / "stderr_arena.txt"):
        interpreter.print_allocations()
    result["allocated"] = True

    if request.get("find_min_arena"):
        result["stage"] = "min_arena"
        _write(workdir, result)
        text = (workdir / "stderr_arena.txt").read_text(errors="replace")
        found = re.search(r"Arena allocation total (\d+) bytes", text)
        total = int(found.group(1)) if found else 0
        high = min(int(request["arena_size"]), 2 * total + 65536)
        result["min_arena"] = _min_arena(runtime, model, total, high, workdir)

    if request.get("mode") == "invoke":
        result["stage"] = "invoke"
        _write(workdir, result)
        import numpy as np

        n_inputs = int(request["num_inputs"])
        arrays = [np.load(workdir / f"inputs_{k}.npy", allow_pickle=False) for k in range(n_inputs)]
        shapes = [tuple(s) for s in request["input_shapes"]]
        outputs = []
        _fault("invoke")
        try:
            with _fd2_to(workdir / "stderr_invoke.txt"):
                for i in range(len(arrays[0])):
                    for k in range(n_inputs):
                        interpreter.set_input(arrays[k][i].reshape(shapes[k]), k)
                    interpreter.invoke()
                    outputs.append(np.array(interpreter.get_output(0), copy=True))
                    for j in range(1, int(request.get("num_outputs", 1))):  # every output: localize a mismatch
                        np.save(workdir / f"outputs_{i}_{j}.npy", np.array(interpreter.get_output(j), copy=True))
        except Exception as exc:
            result["error"] = f"{type(exc).__name__}: {exc}"
            result["failed_sample"] = len(outputs)
            _write(workdir, result)
            return 0
        np.save(workdir / "outputs.npy", np.stack(outputs) if outputs else np.zeros((0,)))

    result["ok"] = True
    result["stage"] = "done"
    _write(workdir, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
