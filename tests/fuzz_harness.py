"""Run fuzz cases through the audit path and classify the outcome (hardening tests, bench/bench_fuzz.py).

Outcomes. Handled: ``model_error`` / ``spec_error`` (one-line ModelFileError / SpecError), ``verdicts``
(the checks returned verdicts or skips), ``tflm_refused`` (TFLM allocation failed with a reason),
``tflm_crash:SIGxxx`` (the TFLM child died from a signal: caught and reported), ``tflm_timeout`` (the
child was killed after the timeout). Bugs: ``BUG:traceback`` (an exception other than a TinyMLError /
NotEvaluable escaped), ``BUG:multiline`` (a user error of more than one line), ``BUG:hang`` (in-process
work exceeded the case timeout), ``BUG:pytest_crash`` (the pytest process died, reported an internal
error, or printed a Python traceback).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_tinyml.boards import DEFAULT_BOARD, BoardRegistry, builtin_boards
from pytest_tinyml.errors import ModelFileError, NotEvaluable, SpecError, TinyMLError
from pytest_tinyml.measurements import Measurements
from pytest_tinyml.options import RunOptions
from pytest_tinyml.spec.model import AUDIT_DEFAULTS
from pytest_tinyml.target import TargetDescription

# Checks that need no child process / emulator (run on every case that parses). The flash check also
# reports the firmware's measured ELF sizes, so it runs QEMU: it belongs with the firmware checks.
PARSE_CHECKS = ("size", "int8_io")
TFLM_CHECKS = ("tflm_ops", "arena")
FIRMWARE_CHECKS = ("flash", "firmware_bitexact", "latency", "firmware_ram")


@dataclass
class Outcome:
    kind: str
    detail: str = ""

    @property
    def bug(self) -> bool:
        return self.kind.startswith("BUG")


class CaseTimeout(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise CaseTimeout()


class time_limit:  # noqa: N801  (used as a context manager)
    """Limit on the CPU time (user + system) of in-process work, main thread only (SIGPROF).

    CPU time, not wall time: a parser stuck in a loop burns CPU and is caught, while a machine busy with
    other work (CI neighbours, pytest-xdist workers) does not turn a 1-second case into a false hang."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        self.old = signal.signal(signal.SIGPROF, _alarm)
        signal.setitimer(signal.ITIMER_PROF, self.seconds)

    def __exit__(self, *exc: object) -> None:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, self.old)


def _checks() -> dict[str, Any]:
    from pytest_tinyml.builtin import pytest_tinyml_checks

    return {c.name: c for c in pytest_tinyml_checks()}


_CHECKS: dict[str, Any] = {}
_BOARDS: BoardRegistry | None = None


def measurements_for(path: Path, cache_dir: Path, **given: Any) -> Measurements:
    global _BOARDS
    if _BOARDS is None:
        _BOARDS = BoardRegistry(builtin_boards())
    return Measurements(TargetDescription(label=str(path), constraints=AUDIT_DEFAULTS, board=_BOARDS.get(DEFAULT_BOARD),
                                          options=RunOptions(cache_dir=cache_dir), model_path=path), **given)


def _one_line(exc: BaseException) -> Outcome | None:
    text = str(exc)
    if "\n" in text or not text.strip():
        return Outcome("BUG:multiline", f"{type(exc).__name__}: {text!r}")
    return None


def _evaluate(m: Measurements, names: tuple[str, ...]) -> list[str]:
    """Evaluate the named checks; returns short results. User errors and skips are results, not bugs."""
    if not _CHECKS:
        _CHECKS.update(_checks())
    results = []
    for name in names:
        if not _CHECKS[name].applies(m.constraints):
            continue
        try:
            verdict = _CHECKS[name].evaluate(m)
            verdict.failure_text()
            json.dumps(verdict.to_dict(), default=str)
            results.append(f"{name}:{'pass' if verdict.passed else 'fail'}")
        except NotEvaluable as exc:
            results.append(f"{name}:skip({exc.reason[:40]})")
        except TinyMLError as exc:
            bad = _one_line(exc)
            if bad is not None:
                raise _Bug(bad) from exc
            results.append(f"{name}:error")
    return results


class _Bug(Exception):
    def __init__(self, outcome: Outcome) -> None:
        self.outcome = outcome
        super().__init__(outcome.detail)


def audit_parse(data: bytes, path: Path, cache_dir: Path, *, timeout: float = 10.0) -> tuple[Outcome, bool]:
    """Parse + the checks that need no child; returns (outcome, parsed)."""
    path.write_bytes(data)
    try:
        with time_limit(timeout):
            from pytest_tinyml import emulate

            m = measurements_for(path, cache_dir)
            try:
                info = m.model_info
            except ModelFileError as exc:
                return _one_line(exc) or Outcome("model_error", str(exc)[:160]), False
            json.dumps(info.to_dict())
            info.largest_tensors(3)
            emulate.unsupported_ops(info)
            m.flash  # noqa: B018  (the estimate; the flash check itself runs the firmware)
            results = _evaluate(m, PARSE_CHECKS)
            try:
                m.firmware_inputs  # noqa: B018  (random int8 inputs shaped like the model's input)
            except NotEvaluable:
                pass
            return Outcome("verdicts", " ".join(results)), True
    except _Bug as exc:
        return exc.outcome, False
    except CaseTimeout:
        return Outcome("BUG:hang", f"in-process audit used more than {timeout:g} s of CPU"), False
    except Exception as exc:  # noqa: BLE001  (the point: nothing else may escape)
        return Outcome("BUG:traceback", "".join(traceback.format_exception(exc))[-2000:]), False


def audit_tflm(data: bytes, path: Path, cache_dir: Path, *, timeout: float = 20.0,
               export_dir: Path | None = None) -> Outcome:
    """Host TFLM allocation in its child (``tflm.allocate``), then the tflm_ops and arena checks.

    Safe to call from threads (no signals here; the child has its own timeout).
    """
    from pytest_tinyml.analysis import tflm

    path.write_bytes(data)
    try:
        m = measurements_for(path, cache_dir)
        m.model_info  # noqa: B018
        alloc = tflm.allocate(data, timeout=timeout)
        Measurements.tflm_allocation.provide(m, alloc)  # what Measurements.tflm_allocation would compute
        results = _evaluate(m, TFLM_CHECKS)
        if alloc.ok and export_dir is not None:
            from pytest_tinyml import emulate

            emulate.export(data, export_dir, arena_bytes=m.arena.bytes, model_info=m.model_info)
    except _Bug as exc:
        return exc.outcome
    except (TinyMLError, NotEvaluable) as exc:
        return _one_line(exc) or Outcome("model_error", str(exc)[:160])
    except Exception as exc:  # noqa: BLE001
        return Outcome("BUG:traceback", "".join(traceback.format_exception(exc))[-2000:])
    if alloc.signal:
        return Outcome(f"tflm_crash:{alloc.signal}", " ".join(results))
    if alloc.timed_out:
        return Outcome("tflm_timeout", " ".join(results))
    if not alloc.ok:
        return Outcome("tflm_refused", (alloc.reason or "")[:160])
    return Outcome("tflm_allocated", " ".join(results))


def audit_firmware(data: bytes, path: Path, cache_dir: Path) -> Outcome:
    """The firmware checks (QEMU run of the model, host TFLM outputs for bit-exactness) on one model."""
    path.write_bytes(data)
    try:
        m = measurements_for(path, cache_dir)
        results = _evaluate(m, FIRMWARE_CHECKS)
    except _Bug as exc:
        return exc.outcome
    except Exception as exc:  # noqa: BLE001
        return Outcome("BUG:traceback", "".join(traceback.format_exception(exc))[-2000:])
    return Outcome("firmware_verdicts", " ".join(results))


def load_spec_case(data: bytes, path: Path, *, timeout: float = 10.0) -> Outcome:
    from pytest_tinyml.spec import load_spec

    path.write_bytes(data)
    try:
        with time_limit(timeout):
            try:
                spec = load_spec(path)
            except SpecError as exc:
                return _one_line(exc) or Outcome("spec_error", str(exc)[:160])
            return Outcome("spec_ok", spec.name)
    except CaseTimeout:
        return Outcome("BUG:hang", f"load_spec used more than {timeout:g} s of CPU")
    except Exception as exc:  # noqa: BLE001
        return Outcome("BUG:traceback", "".join(traceback.format_exception(exc))[-2000:])


# a Python traceback, pytest's internal error, or the "file.py:123: SomeError" line ending a long repr
# (warnings such as "core.py:172: DeprecationWarning" are not errors)
_TRACEBACK = re.compile(r"Traceback \(most recent call last\)|INTERNALERROR|^\S+\.py:\d+: \w*(Error|Exception)\b", re.M)


#: Plugins of the test environment that a child pytest run never uses: loading them costs about 0.7 s per
#: child (hypothesis' pytest plugin, pytest-benchmark where installed); ``-p no:NAME`` is harmless when absent.
CHILD_PLUGINS_OFF = ("-p", "no:hypothesispytest", "-p", "no:benchmark")


def run_pytest(args: list[str], cwd: Path, *, timeout: float = 300.0) -> tuple[Outcome, str]:
    """Run ``python -m pytest ARGS`` in ``cwd``; a dead process, an internal error or a traceback is a bug."""
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *CHILD_PLUGINS_OFF, "-q",
           *args]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired:
        return Outcome("BUG:hang", f"pytest ran more than {timeout:g} s"), ""
    out = proc.stdout + proc.stderr
    if proc.returncode < 0:
        return Outcome("BUG:pytest_crash", f"pytest died with signal {-proc.returncode}"), out
    if proc.returncode not in (0, 1, 2, 4, 5):
        return Outcome("BUG:pytest_crash", f"pytest exit status {proc.returncode}"), out
    found = _TRACEBACK.search(out)
    if found:
        return Outcome("BUG:pytest_crash", f"traceback in pytest output: {found.group(0)}"), out
    return Outcome(f"pytest_exit_{proc.returncode}"), out
