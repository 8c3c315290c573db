"""The built-in checks and boards, registered through the plugin's own hooks like any other plugin."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_tinyml.boards import Board
    from pytest_tinyml.checks.base import Check
    from pytest_tinyml.spec.model import ModelRef, Spec


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


@pytest.hookimpl(trylast=True)
def pytest_tinyml_load_model(ref: ModelRef, spec: Spec) -> Any:
    from pytest_tinyml.build import load_model

    return load_model(ref, spec)
