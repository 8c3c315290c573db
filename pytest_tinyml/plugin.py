"""pytest entry point: options, collection of specs and models, one item per constraint, fixtures.

This module knows pytest, not TensorFlow: building and measuring happen in :mod:`pytest_tinyml.measure`,
judging in :mod:`pytest_tinyml.checks`.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_tinyml import hookspecs
from pytest_tinyml.boards import DEFAULT_BOARD, Board, BoardRegistry, board_from_mapping
from pytest_tinyml.checks.base import CANONICAL_NAMES, Check, Verdict
from pytest_tinyml.errors import NotEvaluable, SpecError, TinyMLError
from pytest_tinyml.measure import Measurements, RunOptions, SpecArtifacts
from pytest_tinyml.spec.model import AUDIT_DEFAULTS, Constraints, Spec

SESSION_KEY = pytest.StashKey["TinyMLSession"]()


# --- options --------------------------------------------------------------------------------------
def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tinyml", "pytest-tinyml: can this model run on a microcontroller")
    group.addoption(
        "--tinyml-spec",
        action="append",
        default=[],
        metavar="PATH",
        help="spec YAML to build and judge (repeatable, globs accepted)",
    )
    group.addoption(
        "--tinyml-model",
        action="append",
        default=[],
        metavar="PATH",
        help=".tflite model to audit (repeatable, globs accepted); with --tinyml-spec, the spec's constraints apply",
    )
    group.addoption("--tinyml-board", default=None, metavar="NAME", help="board to judge against (overrides the spec)")
    group.addoption("--tinyml-rebuild", action="store_true", default=False, help="ignore the build cache and rebuild")
    group.addoption(
        "--tinyml-emulator",
        default=None,
        choices=("qemu", "renode"),
        help="emulator for firmware items (default: the spec's, else qemu)",
    )
    group.addoption(
        "--tinyml-firmware-samples",
        default=None,
        type=_positive_int,
        metavar="N",
        help="number of inputs the firmware items run (default: the spec's firmware.samples)",
    )
    group.addoption(
        "--tinyml-firmware-runtime",
        default=None,
        choices=("tinyml", "tflm"),
        help="runtime the firmware items build: tinyml (the project's C runtime, default) or tflm "
        "(real TFLM from the source tree in $TFLM_ROOT)",
    )
    group.addoption("--tinyml-export", default=None, metavar="DIR", help="write model_data.c/.h, op resolver and arena size here")
    group.addoption("--tinyml-report", default=None, metavar="DIR", help="write report.json, report.md and report.html here")
    group.addoption("--tinyml-baseline", default=None, metavar="JSON", help="compare with an earlier report.json")
    parser.addini("tinyml_spec", "spec files to judge (like --tinyml-spec)", type="linelist", default=[])
    parser.addini("tinyml_model", ".tflite files to audit (like --tinyml-model)", type="linelist", default=[])
    parser.addini("tinyml_board", "board to judge against (like --tinyml-board)", default="")
    parser.addini("tinyml_cache_dir", "build cache directory (default: pytest's cache dir/d/tinyml)", default="")
    parser.addini(
        "tinyml_tflm_timeout",
        "seconds one host-TFLM allocation may take in its child; an invoke run gets as much again per 1,000 samples "
        "(default 60)",
        default="60",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise pytest.UsageError(f"--tinyml-firmware-samples: {text!r} is not a whole number") from None
    if value < 1:
        raise pytest.UsageError(f"--tinyml-firmware-samples: {value} must be at least 1")
    return value


def _expand(patterns: list[str], option: str, rootdir: Path, want: tuple[str, ...]) -> list[Path]:
    out: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        if glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            if not matches:
                raise pytest.UsageError(f"{option} {pattern}: the pattern matches no file (fix: check the pattern)")
        else:
            if not path.exists():
                raise pytest.UsageError(f"{option} {pattern}: no such file (fix: check the path)")
            matches = [path]
        for match in matches:
            if match.is_dir():
                raise pytest.UsageError(
                    f"{option} {match}: is a directory (fix: name a file, or a glob such as {_display(match)}/*{want[0]})"
                )
            if match.is_file() and match.suffix.lower() not in want:
                raise pytest.UsageError(
                    f"{option} {match}: expected a {' or '.join(want)} file (fix: use "
                    + ("--tinyml-model for .tflite files" if option == "--tinyml-spec" else "--tinyml-spec for YAML specs")
                    + ")"
                )
            resolved = match.resolve()
            if resolved not in out:
                out.append(resolved)
    return out


@dataclass
class ItemResult:
    """What reports need of one item: filled from the test reports, so it works under pytest-xdist too."""

    nodeid: str
    target: str
    name: str
    status: str  # passed, failed, skipped, error
    verdict: dict[str, Any] | None = None
    message: str = ""
    model_path: str | None = None
    board: str | None = None
    mode: str | None = None


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
    results: list[ItemResult] = field(default_factory=list)
    report_outcome: Any = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Registered as a plugin: collects item results (from reports, so pytest-xdist works too)."""
        progress = self.options.progress
        if progress is not None and hasattr(progress, "close"):
            progress.close()
        result = _result_from_report(report)
        if result is not None:
            self.results.append(result)

    def board(self, name: str | None, where: str | None = None) -> Board:
        return self.boards.get(self.board_override or name or DEFAULT_BOARD, where=where)

    def spec(self, path: Path) -> Spec:
        if path not in self.loaded:
            from pytest_tinyml.spec import load_spec

            try:
                self.loaded[path] = load_spec(_display(path))
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


def _display(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def _collect_checks(config: pytest.Config) -> list[Check]:
    checks: list[Check] = []
    seen: dict[str, Check] = {}
    for group in config.hook.pytest_tinyml_checks():
        for check in group or []:
            name = getattr(check, "name", None)
            if not isinstance(name, str) or not name.isidentifier():
                raise pytest.UsageError(f"pytest_tinyml_checks: check {check!r} has no identifier-like 'name'")
            if name in seen:
                raise pytest.UsageError(f"pytest_tinyml_checks: two checks are named {name!r} (fix: rename one)")
            seen[name] = check
            checks.append(check)
    order = {n: i for i, n in enumerate(CANONICAL_NAMES)}
    checks.sort(key=lambda c: order.get(c.name, len(order)))
    return checks


def _collect_boards(config: pytest.Config) -> BoardRegistry:
    registry = BoardRegistry([])
    for group in reversed(config.hook.pytest_tinyml_boards()):  # built-ins first, plugins may override
        for board in group or []:
            if isinstance(board, tuple):
                name, fields = board
                board = board_from_mapping(name, fields, "pytest_tinyml_boards")
            registry.add(board)
    return registry


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    from pytest_tinyml import builtin

    config.addinivalue_line(
        "markers", "tinyml(spec=None, mode=None, model=None): select the spec/mode or .tflite the tinyml_* fixtures use"
    )
    if not config.pluginmanager.has_plugin("tinyml-builtin"):
        config.pluginmanager.register(builtin, "tinyml-builtin")
    rootdir = Path(str(config.rootpath))
    specs = _expand(list(config.getoption("tinyml_spec")) or config.getini("tinyml_spec"), "--tinyml-spec", rootdir, (".yaml", ".yml"))
    models = _expand(list(config.getoption("tinyml_model")) or config.getini("tinyml_model"), "--tinyml-model", rootdir, (".tflite",))
    if models and len(specs) > 1:
        raise pytest.UsageError("--tinyml-model with several --tinyml-spec: give one spec whose constraints apply to the models")
    try:
        boards = _collect_boards(config)
    except SpecError as exc:
        raise pytest.UsageError(str(exc)) from None
    board_override = config.getoption("tinyml_board") or config.getini("tinyml_board") or None
    if board_override:
        try:
            boards.get(board_override)
        except SpecError as exc:
            raise pytest.UsageError(f"--tinyml-board: {exc}") from None
    cache = config.getini("tinyml_cache_dir")
    cache_provider = getattr(config, "cache", None)
    if cache:
        cache_dir = Path(cache)
    elif cache_provider is not None:
        cache_dir = Path(str(cache_provider.mkdir("tinyml")))
    else:
        cache_dir = rootdir / ".pytest_cache" / "d" / "tinyml"
    try:
        tflm_timeout = float(config.getini("tinyml_tflm_timeout"))
        from pytest_tinyml.analysis import tflm

        tflm.configure(timeout=tflm_timeout)  # every host-TFLM child's timeout comes from this setting
    except ValueError:
        raise pytest.UsageError(
            f"tinyml_tflm_timeout = {config.getini('tinyml_tflm_timeout')!r}: expected a positive number of seconds"
        ) from None
    export = config.getoption("tinyml_export")
    samples = config.getoption("tinyml_firmware_samples")
    options = RunOptions(
        cache_dir=cache_dir,
        rebuild=bool(config.getoption("tinyml_rebuild")),
        emulator=config.getoption("tinyml_emulator"),
        firmware_samples=samples,
        export_dir=Path(export) if export else None,
        progress=_progress_writer(config),
        extra_loaders=_dataset_loaders(config),
        load_model=lambda ref, spec: config.hook.pytest_tinyml_load_model(ref=ref, spec=spec),
        tflm_timeout=tflm_timeout,
        firmware_runtime=config.getoption("tinyml_firmware_runtime"),
    )
    session = TinyMLSession(
        config=config,
        specs=specs,
        models=models,
        board_override=board_override,
        boards=boards,
        options=options,
        checks=_collect_checks(config),
    )
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "tinyml-session")
    baseline = config.getoption("tinyml_baseline")
    if baseline and not hasattr(config, "workerinput"):
        from pytest_tinyml import reports

        problem = reports.check_baseline(Path(baseline))
        if problem:
            raise pytest.UsageError(problem)
    wanted = models if models else specs
    if not wanted:
        return
    explicit = config.args_source == pytest.Config.ArgsSource.ARGS
    paths = [_display(p) for p in wanted]
    if explicit:
        config.args.extend(p for p in paths if p not in config.args)
    else:
        config.args[:] = paths


def _dataset_loaders(config: pytest.Config) -> dict[str, Any]:
    loaders: dict[str, Any] = {}
    for group in config.hook.pytest_tinyml_datasets():
        loaders.update(group or {})
    return loaders


def _progress_writer(config: pytest.Config) -> Any:
    """Progress lines for long steps (training, evaluation, firmware), shown even while an item runs."""
    from pytest_tinyml.reports.progress import ProgressWriter

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or config.getoption("verbose") < 0:
        return None
    return ProgressWriter.for_terminal_reporter(reporter, config.pluginmanager.get_plugin("capturemanager"))


# --- collection -----------------------------------------------------------------------------------
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    session: TinyMLSession | None = parent.config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    resolved = file_path.resolve()
    if session.models and resolved in session.models:
        return TinyMLModelFile.from_parent(parent, path=file_path)
    if not session.models and resolved in session.specs:
        return TinyMLSpecFile.from_parent(parent, path=file_path)
    return None


class TinyMLFailure(Exception):
    """A constraint that was measured and not met."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.message)


class TinyMLItem(pytest.Item):
    """One constraint on one target."""

    def __init__(self, *, check: Check, measurements: Measurements, line: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check
        self.measurements = measurements
        self.line = line
        self.verdict: Verdict | None = None
        self.user_properties.append(("tinyml_target", measurements.label))
        self.user_properties.append(("tinyml_board", measurements.board.name))
        if measurements.mode:
            self.user_properties.append(("tinyml_mode", measurements.mode))

    def runtest(self) -> None:
        __tracebackhide__ = True
        try:
            verdict = self.check.evaluate(self.measurements)
        except NotEvaluable as exc:
            self.user_properties.append(("tinyml_skip", str(exc)))
            # reported at the item's location (the spec or model), not at pytest's internals
            raise pytest.skip.Exception(
                f"{self.check.name}: {exc.reason}; to enable: {exc.enable}", _use_item_location=True
            ) from None
        self.verdict = verdict
        self.user_properties.append(("measured", verdict.measured))
        self.user_properties.append(("limit", verdict.limit))
        self.user_properties.append(("unit", verdict.unit))
        self.user_properties.append(("tinyml_verdict", json.dumps(verdict.to_dict(), default=str)))
        try:
            self.user_properties.append(("tinyml_model_path", str(self.measurements.tflite_path)))
        except (TinyMLError, NotEvaluable):
            pass
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
        return self.path, 0, f"{self.path.name}::spec"


def _items_for(
    parent: pytest.Collector, checks: list[Check], measurements: Measurements, suffix: str, lines: dict[str, int]
) -> Iterator[pytest.Item]:
    for check in checks:
        if check.applies(measurements.constraints):
            yield TinyMLItem.from_parent(
                parent,
                name=f"{check.name}{suffix}",
                check=check,
                measurements=measurements,
                line=lines.get(check.name, 0),
            )


_CONSTRAINT_KEYS = {
    "size": "max_size",
    "int8_io": "io_dtype",
    "tflm_ops": "ops",
    "arena": "arena",
    "flash": "flash",
    "accuracy": "min_accuracy",
    "accuracy_drop": "max_accuracy_drop",
    "latency": "max_latency",
    "firmware_bitexact": "firmware",
    "firmware_ram": "firmware",
}


def _constraint_lines(spec: Spec) -> dict[str, int]:
    out = {}
    for name, key in _CONSTRAINT_KEYS.items():
        loc = spec.locations.get(("constraints", key))
        if loc:
            out[name] = loc[0] - 1
    return out


class TinyMLSpecFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        session: TinyMLSession = self.config.stash[SESSION_KEY]
        try:
            spec = session.spec(self.path.resolve())
            board = session.board(spec.board, where=spec.where("board"))
        except TinyMLError as exc:
            yield SpecErrorItem.from_parent(self, name="spec", error=exc)
            return
        lines = _constraint_lines(spec)
        label = _display(self.path)
        if spec.model.kind == "tflite":
            assert spec.model.path is not None
            m = Measurements(label=label, constraints=spec.constraints, board=board, options=session.options, spec=spec, model_path=spec.model.path)
            session.targets[label] = m
            yield from _items_for(self, session.checks, m, "", lines)
            return
        artifacts = session.spec_artifacts(spec)
        modes = spec.quantization.modes
        for mode in modes:
            suffix = "" if len(modes) == 1 else f"[{mode}]"
            tlabel = label if len(modes) == 1 else f"{label}[{mode}]"
            constraints = spec.constraints if mode in ("int8", "qat") or len(modes) == 1 else _relaxed(spec.constraints)
            m = Measurements(
                label=tlabel, constraints=constraints, board=board, options=session.options, spec=spec, mode=mode, artifacts=artifacts
            )
            session.targets[tlabel] = m
            yield from _items_for(self, session.checks, m, suffix, lines)


def _relaxed(constraints: Constraints) -> Constraints:
    """In a multi-mode spec, float modes are compared, not deployed: firmware items only run for int8."""
    from dataclasses import replace

    return replace(constraints, firmware=None, max_latency=None)


class TinyMLModelFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        session: TinyMLSession = self.config.stash[SESSION_KEY]
        spec: Spec | None = None
        constraints = AUDIT_DEFAULTS
        lines: dict[str, int] = {}
        if session.specs:
            try:
                spec = session.spec(session.specs[0])
            except TinyMLError as exc:
                yield SpecErrorItem.from_parent(self, name="spec", error=exc)
                return
            constraints = spec.constraints
        try:
            board = session.board(spec.board if spec else None, where=spec.where("board") if spec else None)
        except TinyMLError as exc:
            yield SpecErrorItem.from_parent(self, name="spec", error=exc)
            return
        label = _display(self.path)
        m = Measurements(
            label=label, constraints=constraints, board=board, options=session.options, spec=None, model_path=Path(label)
        )
        session.targets[label] = m
        yield from _items_for(self, session.checks, m, "", lines)


# --- results, reports, export ---------------------------------------------------------------------
def _result_from_report(report: pytest.TestReport) -> ItemResult | None:
    props = {str(k): v for k, v in report.user_properties}
    if "tinyml_target" not in props:
        return None
    if report.when != "call" and not (report.when == "setup" and (report.failed or report.skipped)):
        return None
    verdict = json.loads(str(props["tinyml_verdict"])) if "tinyml_verdict" in props else None
    if report.skipped:
        status = "skipped"
        message = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    else:
        status = report.outcome if report.when == "call" else "error"
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else (report.longreprtext or "")
        message = verdict["message"] if verdict else (text.splitlines()[0] if text else "")
    return ItemResult(
        nodeid=report.nodeid,
        target=str(props["tinyml_target"]),
        name=report.nodeid.rsplit("::", 1)[-1],
        status=status,
        verdict=verdict,
        message=message,
        model_path=_opt_str(props.get("tinyml_model_path")),
        board=_opt_str(props.get("tinyml_board")),
        mode=_opt_str(props.get("tinyml_mode")),
    )


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    tiny = session.config.stash.get(SESSION_KEY, None)
    if tiny is None or hasattr(session.config, "workerinput"):
        return
    export = tiny.options.export_dir
    if export is not None:
        _export(tiny, export)
    report_dir = session.config.getoption("tinyml_report")
    baseline = session.config.getoption("tinyml_baseline")
    if report_dir or baseline:
        from pytest_tinyml import reports

        outcome = reports.finish(
            tiny, report_dir=Path(report_dir) if report_dir else None, baseline=Path(baseline) if baseline else None
        )
        tiny.report_outcome = outcome
        if (outcome.regressions or outcome.errors) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _export(tiny: TinyMLSession, out: Path) -> None:
    from pytest_tinyml import emulate
    from pytest_tinyml.emulate.export import export_folder_names

    folders = export_folder_names(list(tiny.targets))
    for label, m in tiny.targets.items():
        try:
            data = m.tflite_bytes
            arena = m.arena.bytes
        except (TinyMLError, NotEvaluable):
            continue
        emulate.export(data, out / folders[label], arena_bytes=arena, model_info=m.model_info)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    tiny = config.stash.get(SESSION_KEY, None)
    if tiny is None or not tiny.results:
        return
    from pytest_tinyml.reports.terminal import summary_lines

    terminalreporter.section("tinyml summary")
    for line in summary_lines(tiny.results, outcome=tiny.report_outcome):
        terminalreporter.write_line(line)


# --- public fixtures ------------------------------------------------------------------------------
def _target_for(request: pytest.FixtureRequest) -> Measurements:
    tiny: TinyMLSession = request.config.stash[SESSION_KEY]
    marker = request.node.get_closest_marker("tinyml")
    spec_path: str | None = marker.kwargs.get("spec") if marker else None
    mode: str | None = marker.kwargs.get("mode") if marker else None
    model: str | None = marker.kwargs.get("model") if marker else None
    if model:
        path = Path(model).resolve()
        label = _display(path)
        if label not in tiny.targets:
            tiny.targets[label] = Measurements(
                label=label, constraints=AUDIT_DEFAULTS, board=tiny.board(None), options=tiny.options, model_path=path
            )
        return tiny.targets[label]
    if spec_path is None:
        if not tiny.specs:
            pytest.skip("no spec: pass --tinyml-spec PATH or mark the test @pytest.mark.tinyml(spec='specs/x.yaml')")
        spec_file = tiny.specs[0]
    else:
        spec_file = Path(spec_path).resolve()
    try:
        spec = tiny.spec(spec_file)
        board = tiny.board(spec.board)
    except TinyMLError as exc:
        pytest.fail(str(exc), pytrace=False)
    mode = mode or spec.quantization.modes[0]
    label = _display(spec_file) if len(spec.quantization.modes) == 1 else f"{_display(spec_file)}[{mode}]"
    if label not in tiny.targets:
        artifacts = tiny.spec_artifacts(spec) if spec.builds else None
        tiny.targets[label] = Measurements(
            label=label,
            constraints=spec.constraints,
            board=board,
            options=tiny.options,
            spec=spec,
            mode=mode if spec.builds else None,
            model_path=spec.model.path if not spec.builds else None,
            artifacts=artifacts,
        )
    return tiny.targets[label]


def _unwrap(fn: Any) -> Any:
    __tracebackhide__ = True
    try:
        return fn()
    except NotEvaluable as exc:
        pytest.skip(f"{exc.reason}; to enable: {exc.enable}")
    except TinyMLError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def tinyml_measurements(request: pytest.FixtureRequest) -> Measurements:
    """Lazy measurements of the selected target (``@pytest.mark.tinyml(spec=..., mode=...)`` or the first
    ``--tinyml-spec``): ``.tflite_bytes``, ``.model_info``, ``.tflm_allocation``, ``.arena``, ``.accuracy``..."""
    return _target_for(request)


@pytest.fixture
def tinyml_spec(tinyml_measurements: Measurements) -> Spec:
    """The selected spec, validated and typed."""
    if tinyml_measurements.spec is None:
        pytest.skip("the selected target is a bare .tflite with no spec")
    return tinyml_measurements.spec


@pytest.fixture
def tinyml_tflite(tinyml_measurements: Measurements) -> Path:
    """Path of the selected target's ``.tflite`` (built and cached if the spec builds it)."""
    return _unwrap(lambda: tinyml_measurements.tflite_path)


@pytest.fixture
def tinyml_tflite_files(tinyml_measurements: Measurements) -> dict[str, Path]:
    """Every ``.tflite`` the spec builds, by quantization mode."""
    artifacts = tinyml_measurements.artifacts
    if artifacts is None:
        return {"model": _unwrap(lambda: tinyml_measurements.tflite_path)}
    return dict(_unwrap(lambda: artifacts.build).tflite)


@pytest.fixture
def tinyml_keras_model(tinyml_measurements: Measurements) -> Any:
    """The trained Keras model (imports Keras; built and cached on first use)."""
    artifacts = tinyml_measurements.artifacts
    if artifacts is None:
        pytest.skip("the selected target has no Keras model (it is a .tflite)")
    build = _unwrap(lambda: artifacts.build)
    from pytest_tinyml.build import load_keras_model

    return _unwrap(lambda: load_keras_model(build))


@pytest.fixture
def tinyml_dataset(tinyml_measurements: Measurements) -> Any:
    """The spec's dataset after preprocessing and splitting (x_train, y_train, x_val, y_val, x_test, y_test)."""
    spec = tinyml_measurements.spec
    if spec is None or spec.dataset is None:
        pytest.skip("the selected spec has no dataset")
    from pytest_tinyml.build import get_dataset

    options = tinyml_measurements.options
    return _unwrap(lambda: get_dataset(spec, options.cache_dir, options.extra_loaders))
