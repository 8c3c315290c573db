"""Running one emulator to the firmware's end marker, on the process supervisor (:mod:`pytest_tinyml._util.proc`):
the UART is read from a file until a complete ``TM:END`` line, an abort line, the process's exit, too
many bytes, or the timeout; the emulator's process group is killed on every exit path.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_tinyml._util.proc import Child, read_bounded
from pytest_tinyml.emulate.errors import FirmwareError, emulator_timeout
from pytest_tinyml.emulate.qemu import QEMU_MEMORY_LIMIT

#: Free-text lines after which the firmware never reaches its end marker: TFLM's TFLITE_ABORT (built with
#: TF_LITE_MCU_DEBUG_LOG) prints "HALTED" and spins. The host stops the emulator there instead of waiting
#: for the timeout.
ABORT_LINES = (b"HALTED",)


@dataclass
class EmulatorRun:
    uart: bytes
    returncode: int | None  # None: stopped by the host after the end marker
    stderr: list[str]
    seconds: float


def run_emulator(cmd: list[str], cwd: Path, serial: Path, timeout: float, *, max_bytes: int,
                 memory_limit: int = QEMU_MEMORY_LIMIT, env: Mapping[str, str] | None = None,
                 marker: bytes = b"TM:END ",
                 on_end: Callable[[subprocess.Popen[bytes], Path], None] | None = None) -> EmulatorRun:
    """Start ``cmd`` in ``cwd`` (its own process group, limited), wait until ``serial`` holds a complete
    ``marker`` line, the process exits, ``max_bytes`` arrive, or ``timeout`` passes; always kill the group.
    ``on_end(proc, console_log)`` runs after the marker, before the kill (stdin is then a pipe to it)."""
    start = time.perf_counter()
    errlog = cwd.parent / (cwd.name + ".stderr")
    try:
        child = Child(cmd, log=errlog, cwd=cwd, env=env, memory_limit=memory_limit, stdin_pipe=on_end is not None,
                      stdout_to_log=True)
    except OSError as exc:
        raise FirmwareError(f"cannot start {cmd[0]}: {exc}", stage="emulate", output=[]) from exc
    data = b""
    rc: int | None = None
    with child:  # the emulator's process group is killed on every way out of this block
        while True:
            rc = child.poll()
            if serial.exists():
                data = read_bounded(serial, max_bytes + 1)
            pos = data.find(b"\n" + marker) if not data.startswith(marker) else 0
            if pos >= 0 and data.find(b"\n", pos + 1) >= 0:
                rc = child.poll()
                if on_end is not None and rc is None:
                    on_end(child.proc, errlog)
                break
            if any((b"\n" + line + b"\n") in b"\n" + data for line in ABORT_LINES):
                rc = child.poll()
                break
            if len(data) > max_bytes:
                raise FirmwareError(f"the firmware wrote more than {max_bytes} bytes to the UART", stage="protocol",
                                    output=[], fix="the model's outputs are larger than expected; report this")
            if rc is not None:
                break
            if time.perf_counter() - start > timeout:
                raise emulator_timeout(timeout, data.decode("latin-1").splitlines()[-20:])
            time.sleep(0.005 if time.perf_counter() - start < 1 else 0.02)
    stderr = read_bounded(errlog, 64 << 10).decode("latin-1").splitlines()[-40:]
    return EmulatorRun(data, rc, stderr, time.perf_counter() - start)
