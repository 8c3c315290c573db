"""Collection: a spec or ``.tflite`` file becomes one pytest item per constraint of each of its targets.

Registered as the ``tinyml-items`` plugin by :mod:`pytest_tinyml.plugin`. Targets are made by the
session (:meth:`pytest_tinyml.session.TinyMLSession.spec_targets`), never here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_tinyml import records
from pytest_tinyml._util.files import not_regular, target_key
from pytest_tinyml._util.text import printable
from pytest_tinyml.checks.base import Check, Verdict, check_info
from pytest_tinyml.errors import ModelFileError, NotEvaluable, SpecError, TinyMLError
from pytest_tinyml.measurements import Measurements as Target
from pytest_tinyml.session import SESSION_KEY, TinyMLSession, display
from pytest_tinyml.spec.model import Spec


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    session: TinyMLSession | None = parent.config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    if target_key(file_path) in (session.models or session.specs):
        return TinyMLFile.from_parent(parent, path=file_path, name=printable(file_path.name),
                                      nodeid=file_nodeid(file_path, parent.config.rootpath))
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Under a directory collected only for targets whose path pytest cannot take (``model[v2].tflite``):
    everything but the targets and the directories leading to them, unless the command line named it."""
    session: TinyMLSession | None = config.stash.get(SESSION_KEY, None)
    if session is None or not session.collect_roots:
        return None
    path = Path(os.path.abspath(collection_path))
    if not any(root in path.parents for root in session.collect_roots):
        return None
    if any(arg == path or arg in path.parents for arg in session.user_args):
        return None
    targets = session.models or session.specs
    if target_key(path) in targets or any(path == t.parent or path in t.parents for t in targets):
        return None
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_collect_directory(path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """pytest's directory walk offers only regular files to ``pytest_collect_file``: a directory holding a
    spec or model that is not one (a FIFO, a device, a symlink to one) is collected by a directory node
    that offers it as well, so that file fails its own item instead of pytest's "not found"."""
    session: TinyMLSession | None = parent.config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    try:
        here = path.resolve()
        odd = [t.name for t in (session.models or session.specs) if t.parent == here and not t.is_file()]
    except OSError:
        return None
    if not odd:
        return None
    if (path / "__init__.py").is_file():  # a Python package: pytest's own node, plus the odd files
        package: TargetsPackage = TargetsPackage.from_parent(parent, path=path)
        package.odd_names = frozenset(odd)
        return package
    node: TargetsDir = TargetsDir.from_parent(parent, path=path)
    node.odd_names = frozenset(odd)
    return node


class TargetsPackage(pytest.Package):
    """A Python package directory as pytest collects it, then the spec or model files in it that are not
    regular files."""

    odd_names: frozenset[str] = frozenset()

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        yield from super().collect()
        for name in sorted(self.odd_names):
            path = self.path / name
            if self.session.isinitpath(path) or not self.ihook.pytest_ignore_collect(collection_path=path,
                                                                                     config=self.config):
                yield from self.ihook.pytest_collect_file(file_path=path, parent=self)


class TargetsDir(pytest.Directory):
    """A directory as pytest's own node collects it, plus the spec or model files in it that are not
    regular files (offered to ``pytest_collect_file`` like the others, never opened here)."""

    odd_names: frozenset[str] = frozenset()

    def collect(self) -> Iterator[pytest.Item | pytest.Collector]:
        ihook = self.ihook
        try:
            entries = sorted(os.scandir(self.path), key=lambda entry: entry.name)
        except OSError:
            return
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()
                is_file = entry.is_file() or entry.name in self.odd_names
            except OSError:
                continue
            if is_dir:
                if not self.session.isinitpath(path, with_parents=True) and ihook.pytest_ignore_collect(
                    collection_path=path, config=self.config
                ):
                    continue
                col = ihook.pytest_collect_directory(path=path, parent=self)
                if col is not None:
                    yield col
            elif is_file:
                if not self.session.isinitpath(path) and ihook.pytest_ignore_collect(
                    collection_path=path, config=self.config
                ):
                    continue
                yield from ihook.pytest_collect_file(file_path=path, parent=self)


def file_nodeid(path: Path, rootpath: Path) -> str:
    """The node id of a spec or model file: its path relative to the rootdir, or its absolute path when it
    lies outside (pytest would give such a file an empty id: ``::size`` for every model, which loses items
    under ``--dist loadfile`` and breaks ``--lf``, ``-k`` and JUnit classnames). Through the one name
    sanitizer (:func:`~pytest_tinyml._util.text.printable`)."""
    absolute = Path(os.path.normpath(path.absolute()))
    try:
        nodeid = absolute.relative_to(rootpath).as_posix()
    except ValueError:
        nodeid = absolute.as_posix()
    return printable(nodeid)  # a file name is data: control characters shown escaped (terminal, JUnit)


class TinyMLFailure(Exception):
    """A constraint that was measured and not met."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.message)


class TinyMLItem(pytest.Item):
    """One constraint on one target."""

    def __init__(self, *, check: Check, measurements: Target, line: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.measurements = measurements
        self.line = line
        self.verdict: Verdict | None = None
        self.information: dict[str, Any] | None = None  # what a skipped check still measured
        self._record()  # a setup error still reports what the item was about

    @property
    def target(self) -> Target:
        return self.measurements

    def _record(self) -> None:
        """(Re)write the item's record into its user properties (carried to the controller by its report)."""
        text = records.encode(records.target_record(self.measurements), self.verdict.to_dict() if self.verdict else None,
                              self.information)
        self.user_properties[:] = [(k, v) for k, v in self.user_properties if k != records.PROPERTY]
        self.user_properties.append((records.PROPERTY, text))

    def runtest(self) -> None:
        __tracebackhide__ = True
        try:
            self._judge()
        finally:
            self._record()

    def _judge(self) -> None:
        __tracebackhide__ = True
        try:
            verdict = self.check.evaluate(self.measurements)
        except NotEvaluable as exc:
            self.information = exc.information
            # reported at the item's location (the spec or model), not at pytest's internals
            raise pytest.skip.Exception(
                f"{self.check.name}: {exc.reason}; to enable: {exc.enable}", _use_item_location=True
            ) from None
        self.verdict = verdict
        self.user_properties.append(("measured", verdict.measured))
        self.user_properties.append(("limit", verdict.limit))
        self.user_properties.append(("unit", verdict.unit))
        if not verdict.passed:
            raise TinyMLFailure(verdict)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, TinyMLFailure):
            return excinfo.value.verdict.failure_text()
        if isinstance(excinfo.value, TinyMLError):
            return f"{self.check.name}: {excinfo.value}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.line, f"{self.measurements.label}::{self.name}"

    @property
    def location(self) -> tuple[str, int | None, str]:
        return sanitized_location(super().location)


class SpecErrorItem(pytest.Item):
    """Stands in for a spec that cannot be read: fails with the one-line error, other specs still run."""

    def __init__(self, *, error: TinyMLError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def runtest(self) -> None:
        raise self.error

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str | Any:
        if isinstance(excinfo.value, TinyMLError):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, 0, f"{printable(self.path.name)}::{self.name}"

    @property
    def location(self) -> tuple[str, int | None, str]:
        return sanitized_location(super().location)


def sanitized_location(location: tuple[str, int | None, str]) -> tuple[str, int | None, str]:
    """An item's location (file, line, head line) with the file name through the one name sanitizer:
    pytest writes it into reports and the JUnit ``file`` attribute."""
    return printable(location[0]), location[1], printable(location[2])


def constraint_lines(spec: Spec | None, checks: list[Check]) -> dict[str, int]:
    """Check name -> 0-based line of the constraint it judges in the spec (from each check's ``key``)."""
    out: dict[str, int] = {}
    if spec is None:
        return out
    for check in checks:
        key = check_info(check).key
        loc = spec.locations.get(("constraints", key)) if key else None
        if loc:
            out[check.name] = loc[0] - 1
    return out


def items_for(parent: pytest.Collector, checks: list[Check], targets: list[Target]) -> Iterator[pytest.Item]:
    """One item per check that applies to each target (``name[mode]`` for one mode of several)."""
    for target in targets:
        lines = constraint_lines(target.spec, checks)
        suffix = f"[{target.mode}]" if target.mode and target.label != target.source else ""  # one mode of several
        for check in checks:
            if check_info(check).npu and target.board.npu is None:
                continue  # NPU items only for boards with an Ethos-U NPU
            if check.applies(target.constraints):
                item = TinyMLItem.from_parent(
                    parent,
                    name=f"{check.name}{suffix}",
                    check=check,
                    measurements=target,
                    line=lines.get(check.name, 0),
                )
                for marker in item_markers(check, target):
                    item.add_marker(marker)
                yield item


def item_markers(check: Check, target: Target) -> list[str]:
    """``firmware`` for items that build and run firmware (cross-compiler, emulator); ``slow`` for items of a
    spec that builds its model (training, conversion); plus what the check declares."""
    markers = list(check_info(check).markers)
    if target.artifacts is not None and "slow" not in markers:
        markers.append("slow")
    return markers


class TinyMLFile(pytest.File):
    """A spec or ``.tflite`` file: one item per check that applies to each of its targets (a spec with
    several quantization modes has one target per mode)."""

    def collect(self) -> Iterator[pytest.Item]:
        session: TinyMLSession = self.config.stash[SESSION_KEY]
        kind = not_regular(self.path)
        if kind is not None:  # never opened: a FIFO would block, /dev/zero never end
            where = display(self.path)
            if session.models:
                yield SpecErrorItem.from_parent(self, name="model", error=ModelFileError(
                    f"not a regular file: {kind}", where=where, fix="pass the .tflite file itself"))
            else:
                yield SpecErrorItem.from_parent(self, name="spec", error=SpecError(
                    f"not a regular file: {kind}", where=where, fix="name the spec YAML file itself"))
            return
        path = self.path.resolve()
        try:
            targets = [session.model_target(path)] if session.models else session.spec_targets(path)
        except TinyMLError as exc:
            yield SpecErrorItem.from_parent(self, name="spec", error=exc)
            return
        yield from items_for(self, session.checks, targets)
