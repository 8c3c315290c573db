"""Test-suite wide settings.

Tests never reach the internet: TFLM source downloads are off unless a test turns them on against a
127.0.0.1 server it starts (tests/test_tflm_sources.py). Real-TFLM tests use ``TFLM_ROOT`` or a filled
source cache (``TINYML_TFLM_SOURCES``) when the developer points one at a local copy, and skip otherwise.

The switch is set by a session fixture, not when this file is imported: pytest also loads this conftest
when a user runs ``pytest --tinyml-spec specs/mnist.yaml`` from the repository root, and that run must
download the pinned TFLM sources as README says. The fixture runs only for the suite's own test
functions (a tinyml item requests no fixtures), and pytester runs inherit the variable.
"""

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="session")
def _no_tflm_downloads() -> Iterator[None]:
    before = os.environ.get("TINYML_OFFLINE")
    os.environ.setdefault("TINYML_OFFLINE", "1")
    yield
    if before is None:
        os.environ.pop("TINYML_OFFLINE", None)
    else:
        os.environ["TINYML_OFFLINE"] = before
