"""Host-TFLM children die on every exit path, and every timeout comes from the ini setting.

Fake fault (documented in ``_tflm_child``): ``PYTEST_TINYML_FAKE_CHILD_FAULT=hang`` makes the child sleep
forever after TFLM allocated, standing in for a model that hangs TFLM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import ModuleType

import pytest

from pytest_tinyml.analysis import tflm
from pytest_tinyml.analysis._tflm_child import FAULT_ENV

# The driver stands for a user's program in a terminal: Ctrl-C raises KeyboardInterrupt in it. A process
# inherits an ignored SIGINT, and Python then installs no handler: a suite started as a background job of a
# non-interactive shell (``pytest ... &`` in a script, many CI and agent runners) would start the driver deaf to
# SIGINT, and the ctrl-c case would wait 30 s and fail (issue 22). So the driver sets the handler itself.
DRIVER = textwrap.dedent(
    """
    import signal
    import sys
    from pathlib import Path
    signal.signal(signal.SIGINT, signal.default_int_handler)
    from pytest_tinyml.analysis import tflm
    tflm.allocate(Path(sys.argv[1]).read_bytes(), timeout=1000)  # the factory's int8_cnn(), written by the test
    """
)


def children_under(marker: Path) -> list[int]:
    """Pids of live processes whose command line names a path under ``marker`` (our children's workdirs)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read()
            with open(f"/proc/{entry}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(marker).encode() in cmd and b"_tflm_child" in cmd and state != "Z":
            found.append(int(entry))
    return found


def wait_for(predicate, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs /proc to find the children")
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
def test_no_orphan_when_the_parent_is_interrupted_or_killed(
    tflite_factory: ModuleType, tmp_path: Path, how: signal.Signals
) -> None:
    work = tmp_path / "t"
    work.mkdir()
    model = tmp_path / "int8_cnn.tflite"
    model.write_bytes(tflite_factory.int8_cnn())
    env = dict(os.environ, **{FAULT_ENV: "hang", "TMPDIR": str(work)})
    parent = subprocess.Popen([sys.executable, "-c", DRIVER, str(model)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_for(lambda: children_under(work), 60), "the child never started"
        time.sleep(1.0)  # let it reach the (fake) hang
        parent.send_signal(how)
        parent.wait(timeout=30)
        assert wait_for(lambda: not children_under(work), 10), f"orphaned children: {children_under(work)}"
    finally:
        if parent.poll() is None:
            parent.kill()
        for pid in children_under(work):  # cleanup if the assertion failed
            os.kill(pid, signal.SIGKILL)


def test_allocate_and_invoke_take_the_configured_timeout(
    tflite_factory: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FAULT_ENV, "hang")
    start = time.monotonic()
    alloc = tflm.allocate(tflite_factory.int8_cnn(), timeout=2)
    assert alloc.timed_out and "timed out after 2 s" in (alloc.reason or "")
    assert time.monotonic() - start < 30
    import numpy as np

    monkeypatch.setenv(FAULT_ENV, "hang:invoke")
    with pytest.raises(tflm.TflmError, match=r"timed out after 2\.004 s"):  # 2 s x (1 + 2/1000 samples)
        tflm.invoke(tflite_factory.int8_cnn(), [np.zeros((1, 8, 8, 1), np.int8)] * 2, period=2)
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            tflm.check_timeout(bad)
