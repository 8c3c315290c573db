"""Test-suite wide settings.

Tests never reach the internet: TFLM source downloads are off unless a test turns them on against a
127.0.0.1 server it starts (tests/test_tflm_sources.py). Real-TFLM tests use ``TFLM_ROOT`` or a filled
source cache (``TINYML_TFLM_SOURCES``) when the developer points one at a local copy, and skip otherwise.

The switch is set by a session fixture, not when this file is imported: pytest also loads this conftest
when a user runs ``pytest --tinyml-spec specs/mnist.yaml`` from the repository root, and that run must
download the pinned TFLM sources as README says. The fixture runs only for the suite's own test
functions (a tinyml item requests no fixtures), and pytester runs inherit the variable.

Plugin runs the suite starts keep their user-level cache in the session's temporary folder
(``_session_user_cache``), not in the developer's home.

Helpers every test file shares come from here as fixtures: ``tflite_factory`` (the flatbuffer model
builder of ``tests/tflite_factory.py``; pytest puts this folder on ``sys.path`` to import this conftest,
in the main process and in every xdist worker, so no test file edits ``sys.path``) and ``run_pytest``
(:class:`PytestRunner`: pytest in a child process, the one helper for it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import fuzz_harness


@pytest.fixture(autouse=True, scope="session")
def _no_tflm_downloads() -> Iterator[None]:
    before = os.environ.get("TINYML_OFFLINE")
    os.environ.setdefault("TINYML_OFFLINE", "1")
    yield
    if before is None:
        os.environ.pop("TINYML_OFFLINE", None)
    else:
        os.environ["TINYML_OFFLINE"] = before


@pytest.fixture(autouse=True, scope="session")
def _session_user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The user-level cache of every plugin run the suite starts: one folder per test session (shared by
    the xdist workers of the session), never the developer's ``~/.cache/pytest-tinyml``, unless
    ``$TINYML_USER_CACHE`` is already set (a developer keeping real-TFLM libraries between runs)."""
    before = os.environ.get("TINYML_USER_CACHE")
    if before is None:
        base = tmp_path_factory.getbasetemp()
        shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
        os.environ["TINYML_USER_CACHE"] = str(shared / "user-cache")
    yield
    if before is None:
        os.environ.pop("TINYML_USER_CACHE", None)


@pytest.fixture(scope="session")
def tflite_factory() -> ModuleType:
    """The TFLite flatbuffer builder (tests/tflite_factory.py): ``tflite_factory.int8_cnn(0)`` etc."""
    import tflite_factory as factory  # here, not at the top: a user's own run loads this conftest too

    return factory


class PytestRunner:
    """The one way a test runs pytest in a child process (the ``run_pytest`` fixture).

    ``run_pytest(*args)``: ``pytester.runpytest_subprocess`` in the test's pytester folder, with
    ``-p no:cacheprovider`` (unless ``cache=True``), ``-r<report>`` (``-rA`` unless told otherwise; ``None``
    for pytest's default) and a timeout (600 s unless told otherwise).
    ``run_pytest.checked(args, cwd)``: ``python -m pytest`` in ``cwd`` with the output classified
    (``fuzz_harness.run_pytest``: a dead process, an internal error or a traceback is a bug).
    """

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def __call__(
        self, *args: str, cache: bool = False, report: str | None = "A", timeout: float = 600
    ) -> pytest.RunResult:
        import fuzz_harness

        pytester: pytest.Pytester = self._request.getfixturevalue("pytester")
        head = [*([] if cache else ["-p", "no:cacheprovider"]), *fuzz_harness.CHILD_PLUGINS_OFF,
                *([f"-r{report}"] if report else [])]
        return pytester.runpytest_subprocess(*head, *args, timeout=timeout)

    @staticmethod
    def checked(args: list[str], cwd: Path, *, timeout: float = 300.0) -> tuple[fuzz_harness.Outcome, str]:
        import fuzz_harness  # imports the plugin's modules: only when a test asks for it

        return fuzz_harness.run_pytest(args, cwd, timeout=timeout)

    @staticmethod
    def outcomes(result: pytest.RunResult) -> dict[str, str]:
        """``{"model.tflite::size": "PASSED", ...}`` from a ``-rA`` summary (parametrisation brackets dropped)."""
        out = {}
        for line in result.outlines:
            for word in ("PASSED", "FAILED", "SKIPPED", "ERROR"):
                if line.startswith(word + " "):
                    nodeid = line.split(" ", 1)[1].split(" - ")[0]
                    out[nodeid.replace("[", "").split(" ")[0]] = word
        return out


@pytest.fixture
def run_pytest(request: pytest.FixtureRequest) -> PytestRunner:
    """Runs pytest in a child process: see :class:`PytestRunner`."""
    return PytestRunner(request)
