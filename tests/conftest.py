"""Test-suite wide settings.

Tests never reach the internet: TFLM source downloads are off unless a test turns them on against a
127.0.0.1 server it starts (tests/test_tflm_sources.py). Real-TFLM tests use ``TFLM_ROOT`` or a filled
source cache (``TINYML_TFLM_SOURCES``) when the developer points one at a local copy, and skip otherwise.
"""

import os

os.environ.setdefault("TINYML_OFFLINE", "1")
