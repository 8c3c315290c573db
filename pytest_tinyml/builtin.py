"""The built-in checks, boards and dataset loaders, registered through the plugin's own hooks like any
other plugin's.

Model loading has its built-in fallback inside :mod:`pytest_tinyml.pipeline` (``module:function``
builders, ``.keras`` files, SavedModels); the ``pytest_tinyml_load_model`` hook is consulted first, so a
plugin can override how a model is built. A plugin's dataset loader of the same name as a built-in one
replaces it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from pytest_tinyml.boards import Board
    from pytest_tinyml.checks.base import Check
    from pytest_tinyml.pipeline.datasets import Loader


@pytest.hookimpl
def pytest_tinyml_checks() -> list[Check]:
    from pytest_tinyml.checks.registry import builtin_checks

    return builtin_checks()


@pytest.hookimpl(trylast=True)  # called last: the plugin lets earlier (other plugins') loaders win
def pytest_tinyml_datasets() -> dict[str, Loader]:
    from pytest_tinyml.pipeline.datasets import BUILTIN_LOADERS

    return dict(BUILTIN_LOADERS)


@pytest.hookimpl
def pytest_tinyml_boards() -> list[Board]:
    from pytest_tinyml.boards import builtin_boards

    return builtin_boards()
