"""Hooks for plugins that extend pytest-tinyml (prefix ``pytest_tinyml_``).

Implement them in a ``conftest.py`` or an installed pytest plugin. The built-in checks, boards, datasets
and model loaders are registered through these same hooks (``pytest_tinyml.builtin``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from pathlib import Path

    from pytest_tinyml.boards import Board
    from pytest_tinyml.checks.base import Check
    from pytest_tinyml.spec.model import DatasetSpec, ModelRef, Spec

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_tinyml_checks() -> list[Check]:
    """Return constraint checks to run on every spec and audited model.

    Each check has a ``name`` (its pytest item name, unique), ``applies(constraints) -> bool`` and
    ``evaluate(target) -> Verdict``; it raises ``NotEvaluable`` to skip with a reason. It declares ``key``
    (the ``constraints`` field it judges), ``metric`` (the name of the number it measures in reports and
    baselines, or None), ``unit`` and ``direction`` (``"lower"``/``"higher"`` is better, or ``""``) as
    plain attributes, or once as ``info = CheckInfo(...)`` on a subclass of
    :class:`pytest_tinyml.checks.base.DeclaredCheck`; see :class:`pytest_tinyml.checks.base.Check`.
    """


@hookspec
def pytest_tinyml_boards() -> list[Board | tuple[str, Mapping[str, Any]]]:
    """Return boards to add: :class:`~pytest_tinyml.boards.Board` objects or ``(name, fields)`` pairs
    with the fields of ``boards.yaml`` (core, clock, flash, ram, arena_ram, source, ...)."""


@hookspec
def pytest_tinyml_datasets() -> Mapping[str, Callable[[DatasetSpec, Path], Any]]:
    """Return dataset loaders by name: ``loader(dataset_spec, cache_dir) -> pytest_tinyml.pipeline.datasets.RawDataset``.

    The built-in loaders (mnist, fashion_mnist, svhn, mnist_offline) come through this hook too; a plugin's
    loader of the same name replaces the built-in one.

    A spec selects one with ``dataset: {name: <name>}``.
    """


@hookspec(firstresult=True)
def pytest_tinyml_load_model(ref: ModelRef, spec: Spec) -> Any:
    """Build or load the Keras model a spec names; return None to let the next implementation try.

    The built-in implementation imports ``module:function`` builders and loads ``.keras``/``.h5`` files
    and SavedModel directories in Keras safe mode.
    """
