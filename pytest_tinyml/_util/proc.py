"""The one process supervisor: emulator runs (QEMU, Renode) and the host-TFLM children both start here.

A :class:`Child` runs in its own process group (``killpg`` reaches anything it starts), optionally under
an address-space limit with core dumps off and ``PR_SET_PDEATHSIG`` (it dies with this process even when
this one is SIGKILLed); its stderr (and optionally stdout) goes to a file read back bounded. Closing it
(``with``, :meth:`Child.kill`, or interpreter exit for any child still alive) SIGKILLs the whole group
and reaps it, so no child outlives its caller: timeout, exception, Ctrl-C.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

__all__ = ["Child", "read_bounded", "signal_name"]

#: Children started and not yet reaped; killed at interpreter exit whatever else happened.
_LIVE: set[Child] = set()


def _limits(memory_limit: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:  # Linux: the child dies with the process that started it, even if that one is SIGKILLed
            import ctypes

            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    return apply


class Child:
    """``cmd`` started in ``cwd`` in its own process group; stderr to ``log`` (stdout too when
    ``stdout_to_log``, else discarded); stdin a pipe when ``stdin_pipe``, else ``/dev/null``.
    ``memory_limit``: RLIMIT_AS in bytes (with core dumps off and the parent-death signal), None: none.
    Raises OSError when the command cannot start."""

    def __init__(self, cmd: Sequence[str], *, log: Path, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None, memory_limit: int | None = None,
                 stdin_pipe: bool = False, stdout_to_log: bool = False) -> None:
        self.log = log
        self.started = time.perf_counter()
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                list(cmd), cwd=cwd, env=dict(env) if env is not None else None,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=err if stdout_to_log else subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
                preexec_fn=_limits(memory_limit) if memory_limit is not None else None,
            )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def poll(self) -> int | None:
        return self.proc.poll()

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; True when the child exited."""
        try:
            self.proc.wait(timeout=max(timeout, 0.01))
        except subprocess.TimeoutExpired:
            return False
        _LIVE.discard(self)
        return True

    def kill(self) -> None:
        """SIGKILL the child's process group and reap it (safe to call twice)."""
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                try:
                    self.proc.kill()
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # unkillable (D state): leave it to the atexit pass
            return
        finally:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        _LIVE.discard(self)

    def __enter__(self) -> Child:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.kill()


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes`` of ``path`` (b"" when it is missing): a child can print without bound."""
    try:
        with open(path, "rb") as fh:
            return fh.read(max_bytes)
    except OSError:
        return b""


def signal_name(returncode: int | None) -> str | None:
    """``SIGSEGV`` for a child killed by that signal; None when it exited on its own (or still runs)."""
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _kill_all_live() -> None:
    for child in list(_LIVE):
        child.kill()


atexit.register(_kill_all_live)
