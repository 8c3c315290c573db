"""The built-in checks and boards, registered through the plugin's own hooks like any other plugin.

Datasets and model loaders have built-in fallbacks inside :mod:`pytest_tinyml.build` (the names listed in
README and ``module:function`` builders); the ``pytest_tinyml_datasets`` and ``pytest_tinyml_load_model``
hooks are consulted first, so a plugin can add names or override how a model is built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_tinyml.boards import Board
    from pytest_tinyml.checks.base import Check


@pytest.hookimpl
def pytest_tinyml_checks() -> list[Check]:
    from pytest_tinyml.checks.accuracy import AccuracyCheck, AccuracyDropCheck
    from pytest_tinyml.checks.firmware import FirmwareBitexactCheck, LatencyCheck
    from pytest_tinyml.checks.io import IoCheck
    from pytest_tinyml.checks.memory import ArenaCheck, FirmwareRamCheck, FlashCheck
    from pytest_tinyml.checks.ops import TflmOpsCheck
    from pytest_tinyml.checks.size import SizeCheck

    return [
        SizeCheck(),
        IoCheck(),
        TflmOpsCheck(),
        ArenaCheck(),
        FlashCheck(),
        AccuracyCheck(),
        AccuracyDropCheck(),
        LatencyCheck(),
        FirmwareBitexactCheck(),
        FirmwareRamCheck(),
    ]


@pytest.hookimpl
def pytest_tinyml_boards() -> list[Board]:
    from pytest_tinyml.boards import builtin_boards

    return builtin_boards()
