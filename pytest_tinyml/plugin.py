"""pytest entry point: options, configuration and hook wiring.

The run lives in :mod:`pytest_tinyml.session`, collection and items in :mod:`pytest_tinyml.items`, the
public fixtures in :mod:`pytest_tinyml.fixtures` (each registered as a plugin here, like the built-in
checks of :mod:`pytest_tinyml.builtin`). This module knows pytest, not TensorFlow: targets and their
measurements are :mod:`pytest_tinyml.target`'s, judging is :mod:`pytest_tinyml.checks`'.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_tinyml import hookspecs
from pytest_tinyml.boards import BoardRegistry, board_from_mapping
from pytest_tinyml.checks.base import CANONICAL_NAMES, Check
from pytest_tinyml.errors import SpecError
from pytest_tinyml.options import Environment
from pytest_tinyml.session import SESSION_KEY, RunOptions, TinyMLSession, display

__all__ = ["SESSION_KEY", "TinyMLSession"]


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
    group.addoption(
        "--tinyml-board",
        default=None,
        metavar="NAME",
        help="board to judge against (overrides the spec); --tinyml-boards lists them, pytest_tinyml/boards.yaml "
        "has their figures and sources, plugins add more with the pytest_tinyml_boards hook",
    )
    group.addoption(
        "--tinyml-boards",
        action="store_true",
        default=False,
        help="list the boards (name, core, clock, flash, RAM, emulators) and exit",
    )
    group.addoption("--tinyml-rebuild", action="store_true", default=False, help="ignore the build cache and rebuild")
    group.addoption(
        "--tinyml-emulator",
        default=None,
        choices=("qemu", "renode"),
        help="emulator for firmware items (default: the spec's firmware.emulator, else QEMU where the board has a "
        "QEMU machine, else Renode when `renode` is on PATH)",
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
        help="runtime the firmware items build: tflm (real TFLM; default when its sources can be had from "
        "$TFLM_ROOT, the source cache ($TINYML_TFLM_SOURCES or ini tinyml_tflm_sources) or a download, else the "
        "items fall back to tinyml and say so) or tinyml (the project's C runtime)",
    )
    group.addoption(
        "--tinyml-kernels",
        default=None,
        choices=("cmsis_nn", "reference"),
        help="TFLM kernel set (default: the spec's firmware.kernels, else cmsis_nn on Cortex-M4/M7/M33/M55, "
        "reference elsewhere)",
    )
    group.addoption(
        "--tinyml-offline",
        action="store_true",
        default=None,
        help="never download TFLM sources (also TINYML_OFFLINE=1 or ini tinyml_offline): use $TFLM_ROOT or the "
        "source cache ($TINYML_TFLM_SOURCES), else the firmware items run the project's runtime",
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
    parser.addini("tinyml_tflm_sources", "TFLM source cache directory (default: <cache dir>/tflm-sources)", default="")
    parser.addini("tinyml_tflm_mirror", "base URL of TFLM source archives (default https://github.com)", default="")
    parser.addini("tinyml_offline", "never download TFLM sources (like --tinyml-offline)", type="bool", default=False)
    parser.addini(
        "tinyml_input_blocks_keep",
        "input blocks (model + samples) kept under <cache dir>/firmware/inputs so recorded emulator commands can be "
        "rerun; the least recently used go past this size (default 256MiB)",
        default="256MiB",
    )


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not config.getoption("tinyml_boards"):
        return None
    config._do_configure()  # as pytest's own --markers does: plugins' boards are registered in configure
    try:
        tiny: TinyMLSession = config.stash[SESSION_KEY]
        for line in board_lines(tiny.boards):
            print(line)
    finally:
        config._ensure_unconfigure()
    return 0


def board_lines(boards: BoardRegistry) -> list[str]:
    """The board table of ``--tinyml-boards``."""
    from pytest_tinyml.emulate.toolchain import CORES, RENODE_PLATFORMS, platform_can_run
    from pytest_tinyml.fmt import fmt_bytes

    def refused(platform: str, core: str) -> bool:  # e.g. Cortex-M7 builds on Renode 1.15.1's M7 model
        known = RENODE_PLATFORMS.get(platform)
        return known is not None and core in CORES and not platform_can_run(known, core)

    rows = [("board", "core", "clock", "flash", "RAM", "emulators")]
    for board in sorted(boards, key=lambda b: b.name):
        emulators = [f"{name} {machine}" + (f" (refused for {board.core} builds)"
                                            if name == "renode" and refused(machine, board.core) else "")
                     for name in ("qemu", "renode")
                     if isinstance(machine := getattr(board, name, None), str) and machine]
        rows.append((board.name, board.core, f"{board.clock_hz / 1e6:g} MHz", fmt_bytes(board.flash_bytes),
                     fmt_bytes(board.ram_bytes), ", ".join(emulators) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    lines.append("(figures and datasheet sources: pytest_tinyml/boards.yaml; --tinyml-board NAME selects one)")
    return lines


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
                    f"{option} {match}: is a directory (fix: name a file, or a glob such as {display(match)}/*{want[0]})"
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
            metric = getattr(check, "metric", None)
            direction = getattr(check, "direction", "")
            if metric is not None and (not isinstance(metric, str) or not metric.isidentifier()):
                raise pytest.UsageError(f"pytest_tinyml_checks: check {name!r} declares metric {metric!r}, not an identifier")
            if direction not in ("lower", "higher", ""):
                raise pytest.UsageError(
                    f"pytest_tinyml_checks: check {name!r} declares direction {direction!r} "
                    "(fix: 'lower' when smaller is better, 'higher' when larger is better, or '')"
                )
            if metric and direction and metric in {getattr(c, "metric", None) for c in checks}:
                raise pytest.UsageError(f"pytest_tinyml_checks: two checks declare metric {metric!r} (fix: rename one)")
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
    from pytest_tinyml import builtin, fixtures, items

    config.addinivalue_line(
        "markers", "tinyml(spec=None, mode=None, model=None): select the spec/mode or .tflite the tinyml_* fixtures use"
    )
    config.addinivalue_line(
        "markers", "firmware: builds firmware and runs it on an emulated MCU (deselect with -m 'not firmware')"
    )
    config.addinivalue_line("markers", "slow: needs a model build (training, conversion; deselect with -m 'not slow')")
    for name, module in (("tinyml-builtin", builtin), ("tinyml-items", items), ("tinyml-fixtures", fixtures)):
        if not config.pluginmanager.has_plugin(name):
            config.pluginmanager.register(module, name)
    taken = rootdir_taken_from(config)
    if taken is not None and not hasattr(config, "workerinput"):
        equals = ", ".join(t.replace(" ", "=", 1) for t in taken.split(", "))
        config.issue_config_time_warning(
            pytest.PytestConfigWarning(
                f"pytest took its rootdir {config.rootpath} from '{taken}' (it fixes the rootdir before plugin "
                f"options are known), so the ini file where you ran pytest is not used; write '{equals}' "
                "or pass --rootdir"
            ),
            stacklevel=2,
        )
    rootdir = Path(str(config.rootpath))
    specs = _expand(list(config.getoption("tinyml_spec")) or config.getini("tinyml_spec"), "--tinyml-spec", rootdir, (".yaml", ".yml"))
    models = _expand(list(config.getoption("tinyml_model")) or config.getini("tinyml_model"), "--tinyml-model", rootdir, (".tflite",))
    explicit = config.args_source == pytest.Config.ArgsSource.ARGS
    if explicit:  # node ids and paths on the command line: pytest 'models/a.tflite::size' selects one item
        named_models, named_specs = _named_targets(config)
        models += [p for p in named_models if p not in models]
        specs += [p for p in named_specs if p not in specs]
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
    keep = config.getini("tinyml_input_blocks_keep")
    try:
        from pytest_tinyml.spec.units import parse_size

        inputs_keep = parse_size(keep.strip() or "256MiB").bytes
    except ValueError as exc:
        raise pytest.UsageError(f"ini tinyml_input_blocks_keep: {exc}") from None
    export = config.getoption("tinyml_export")
    sources = config.getini("tinyml_tflm_sources") or os.environ.get("TINYML_TFLM_SOURCES", "")
    samples = config.getoption("tinyml_firmware_samples")
    environment = Environment.read()
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
        kernels=config.getoption("tinyml_kernels"),
        offline=bool(config.getoption("tinyml_offline") or config.getini("tinyml_offline")
                     or os.environ.get("TINYML_OFFLINE", "") not in ("", "0")),
        tflm_sources=Path(sources).expanduser() if sources else None,
        tflm_mirror=config.getini("tinyml_tflm_mirror") or None,
        inputs_keep_bytes=inputs_keep,
        tflm_root=environment.tflm_root,
        environment=environment,
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
    if explicit:
        named = {_arg_file(arg) for arg in config.args}
        config.args.extend(display(p) for p in wanted if p not in named)
    else:
        config.args[:] = [display(p) for p in wanted]


def rootdir_taken_from(config: pytest.Config) -> str | None:
    """The ``--tinyml-model PATH`` / ``--tinyml-spec PATH`` values (space form) pytest took the rootdir from,
    or None.

    pytest fixes the rootdir and reads the ini file before it loads plugins from entry points, so it does not
    yet know these options and takes the value after them for a test path; a plugin cannot change that after
    the fact (the ini file's addopts and markers are read by then). ``--tinyml-model=PATH`` or ``--rootdir``
    avoid it. Found by asking pytest's own rule again without those values: a different rootdir means they
    moved it."""
    import inspect

    from _pytest.config.findpaths import determine_setup

    args = [str(a) for a in config.invocation_params.args]
    if any(a == "--rootdir" or a.startswith("--rootdir=") for a in args):
        return None
    spaced = [f"{o} {v}" for o, v in zip(args, args[1:], strict=False) if o in ("--tinyml-model", "--tinyml-spec")]
    if not spaced:
        return None
    given = {
        "inifile": config.option.inifilename,
        "override_ini": config.option.override_ini,
        "args": list(config.option.file_or_dir or []),
        "rootdir_cmd_arg": None,
        "invocation_dir": Path(config.invocation_params.dir),
    }
    try:
        accepted = inspect.signature(determine_setup).parameters
        rootpath = determine_setup(**{k: v for k, v in given.items() if k in accepted})[0]  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - pytest's internal rule changed: say nothing rather than guess
        return None
    return ", ".join(spaced) if Path(rootpath).resolve() != Path(config.rootpath).resolve() else None


def _arg_file(arg: str) -> Path | None:
    """The file a command-line argument names (``models/a.tflite::size`` -> ``models/a.tflite``), resolved."""
    part = arg.split("::", 1)[0]
    if not part or part.startswith("-"):
        return None
    try:
        path = Path(part).expanduser().resolve()
        return path if path.is_file() else None
    except (OSError, ValueError):
        return None


def _named_targets(config: pytest.Config) -> tuple[list[Path], list[Path]]:
    """``.tflite`` files and spec YAML files named as test paths or node ids (``pytest 'a.tflite::size'``)."""
    models: list[Path] = []
    specs: list[Path] = []
    for arg in config.args:
        path = _arg_file(arg)
        if path is None:
            continue
        suffix = path.suffix.lower()
        if suffix == ".tflite" and path not in models:
            models.append(path)
        elif suffix in (".yaml", ".yml") and path not in specs:
            specs.append(path)
    return models, specs


def _dataset_loaders(config: pytest.Config) -> dict[str, Any]:
    """Dataset loaders by name: the built-in ones (called last, listed first), then plugins' (which win)."""
    loaders: dict[str, Any] = {}
    for group in reversed(config.hook.pytest_tinyml_datasets()):
        loaders.update(group or {})
    return loaders


def _progress_writer(config: pytest.Config) -> Any:
    """Progress lines for long steps (training, evaluation, firmware), shown even while an item runs."""
    from pytest_tinyml.reports.progress import ProgressWriter

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or config.getoption("verbose") < 0:
        return None
    return ProgressWriter.for_terminal_reporter(reporter, config.pluginmanager.get_plugin("capturemanager"))


# --- reports and export (on the controller) ---------------------------------------------------------------------
@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """After deselection (-m, -k): targets whose firmware items will run let ``arena``/``flash`` measure on
    the target as well; with the firmware items deselected they never build firmware."""
    tiny = config.stash.get(SESSION_KEY, None)
    if tiny is not None:
        tiny.select_firmware([m for item in items if (m := getattr(item, "measurements", None)) is not None
                              and item.get_closest_marker("firmware") is not None])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    tiny = session.config.stash.get(SESSION_KEY, None)
    if tiny is None or hasattr(session.config, "workerinput"):
        return
    export = tiny.options.export_dir
    if export is not None:
        tiny.export(export)
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


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    tiny = config.stash.get(SESSION_KEY, None)
    if tiny is None or not tiny.results:
        return
    from pytest_tinyml.reports.terminal import summary_lines

    report = getattr(tiny.report_outcome, "report", None)
    if report is None and len({r.target for r in tiny.results}) > 1:
        from pytest_tinyml.reports.collect import build_report

        try:
            report = build_report(tiny, model_files=False)  # for the comparison table across targets
        except Exception:  # noqa: BLE001 - the summary must not fail the run; the per-target tables stand
            report = None
    terminalreporter.section("tinyml summary")
    for line in summary_lines(tiny.results, outcome=tiny.report_outcome, report=report):
        terminalreporter.write_line(line)
    for line in tiny.notes:
        terminalreporter.write_line(line)
