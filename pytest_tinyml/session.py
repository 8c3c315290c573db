"""The run: what was asked (:class:`~pytest_tinyml.options.RunOptions`), the boards, checks, specs and
targets of this pytest session, and the items' records gathered from pytest's reports (so they reach the
controller under pytest-xdist too: :mod:`pytest_tinyml.records`). Registered as the ``tinyml-session`` plugin by
:mod:`pytest_tinyml.plugin`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_tinyml._util.text import printable
from pytest_tinyml.boards import DEFAULT_BOARD, Board, BoardRegistry
from pytest_tinyml.checks.base import Check
from pytest_tinyml.errors import NotEvaluable, SpecError, TinyMLError
from pytest_tinyml.measurements import Measurements
from pytest_tinyml.options import RunOptions
from pytest_tinyml.records import ItemRecord, record_from_report
from pytest_tinyml.spec.model import Spec
from pytest_tinyml.target import SpecArtifacts, TargetDescription, model_target, spec_targets

SESSION_KEY = pytest.StashKey["TinyMLSession"]()

def display(path: Path) -> str:
    """``path`` relative to the working directory when it can be, else as given."""
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


@dataclass(eq=False)
class TinyMLSession:
    config: pytest.Config
    specs: list[Path]
    models: list[Path]
    board_override: str | None
    boards: BoardRegistry
    options: RunOptions
    checks: list[Check]
    targets: dict[str, Measurements] = field(default_factory=dict)
    artifacts: dict[Path, SpecArtifacts] = field(default_factory=dict)
    loaded: dict[Path, Spec | SpecError] = field(default_factory=dict)
    results: list[ItemRecord] = field(default_factory=list)
    report_outcome: Any = None
    notes: list[str] = field(default_factory=list)  # lines for the terminal summary (export)
    # directories given to pytest for targets whose path it cannot take ("[" reads as parametrization):
    # under them, only the targets (and the directories leading to them) are collected
    collect_roots: list[Path] = field(default_factory=list)
    user_args: list[Path] = field(default_factory=list)  # the paths the command line named itself

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Collects item results (from reports, so pytest-xdist works too)."""
        progress = self.options.progress
        if progress is not None and hasattr(progress, "close"):
            progress.close()
        result = record_from_report(report)
        if result is not None:
            self.results.append(result)

    def board(self, name: str | None, where: str | None = None) -> Board:
        return self.boards.get(self.board_override or name or DEFAULT_BOARD, where=where)

    def spec(self, path: Path) -> Spec:
        if path not in self.loaded:
            from pytest_tinyml.spec import load_spec

            try:  # with --tinyml-model the spec only gives constraints and board: no model: section needed
                self.loaded[path] = load_spec(display(path), model_required=not self.models)
            except SpecError as exc:
                self.loaded[path] = exc
        value = self.loaded[path]
        if isinstance(value, SpecError):
            raise value
        return value

    def spec_artifacts(self, spec: Spec) -> SpecArtifacts:
        key = spec.path.resolve()
        if key not in self.artifacts:
            self.artifacts[key] = SpecArtifacts(spec, self.options)
        return self.artifacts[key]

    def export(self, out: Path) -> None:
        """Write each judged target's C export from the items' records (model file and measured arena size)."""
        from pytest_tinyml import emulate
        from pytest_tinyml.analysis.model import parse_model
        from pytest_tinyml.emulate.export import export_folder_names
        from pytest_tinyml.reports.collect import merged, read_model

        by_label: dict[str, list[Any]] = {}
        for r in self.results:
            by_label.setdefault(r.target, []).append(r)
        folders = export_folder_names(list(by_label))  # a-b.tflite and a_b.tflite get distinct folders
        for label, rows in by_label.items():
            info = merged(rows)
            arena_fact = info.facts.get("arena") or {}
            arena = arena_fact.get("export_bytes") or arena_fact.get("bytes")
            path = Path(info.model_path) if info.model_path else None
            if arena is None or path is None:
                missing = "no arena size (the arena item did not run or measure)" if arena is None else "no model file"
                self.notes.append(f"--tinyml-export: {label} not exported: {missing}")
                continue
            try:
                data = read_model(path)
                if data is None:
                    raise NotEvaluable(f"{path} is gone", "keep the model file until the run ends")
                model_info = parse_model(data, str(path))
            except (TinyMLError, NotEvaluable, OSError) as exc:
                self.notes.append(f"--tinyml-export: {label} not exported: {exc}")
                continue
            emulate.export(data, out / folders[label], arena_bytes=int(arena), model_info=model_info)

    # --- targets: made once, by the rules of pytest_tinyml.target ------------------------------------
    def _remember(self, targets: list[TargetDescription]) -> list[Measurements]:
        """The measurements of each target, made once per label (items and fixtures share them)."""
        return [self.targets.setdefault(t.label, Measurements(t)) for t in targets]

    def select_firmware(self, measurements: list[Measurements]) -> None:
        """After deselection (-m, -k): these targets' firmware items will run, so their ``arena``/``flash``
        items measure on the target as well (with the firmware items deselected they never build firmware)."""
        for m in measurements:
            m.select_firmware()

    def spec_targets(self, path: Path) -> list[Measurements]:
        """The targets of the spec at ``path`` (raises TinyMLError for a broken spec or unknown board)."""
        spec = self.spec(path)
        if spec.model.kind == "none":
            raise SpecError("the spec has no 'model:' section", where=spec.where(),
                            fix="name the model (model: {tflite: x.tflite}), or audit .tflite files with --tinyml-model")
        board = self.board(spec.board, where=spec.where("board"))
        artifacts = self.spec_artifacts(spec) if spec.builds else None
        return self._remember(
            spec_targets(spec, name=printable(display(path)), board=board, options=self.options, artifacts=artifacts)
        )

    def model_target(self, path: Path) -> Measurements:
        """The target of an audited ``.tflite``: under the one ``--tinyml-spec``'s constraints and board when
        one is given, else the audit defaults on the default board (raises TinyMLError for a broken spec)."""
        spec = self.spec(self.specs[0]) if self.specs else None
        board = self.board(spec.board if spec else None, where=spec.where("board") if spec else None)
        name = display(path)
        target = model_target(  # the label through the one name sanitizer; the file read is the real one
            Path(name), name=printable(name), board=board, options=self.options,
            constraints=spec.constraints if spec else None,
        )
        return self._remember([target])[0]
