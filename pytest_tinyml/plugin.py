"""pytest entry point: option declarations and hook wiring.

What the invocation asks for (files, boards, checks, :class:`~pytest_tinyml.options.RunOptions`) is read
once, in ``pytest_configure``, by :mod:`pytest_tinyml.invocation`. The run lives in
:mod:`pytest_tinyml.session`, collection and items in :mod:`pytest_tinyml.items`, the
public fixtures in :mod:`pytest_tinyml.fixtures` (each registered as a plugin here, like the built-in
checks of :mod:`pytest_tinyml.builtin`). This module knows pytest, not TensorFlow: targets and their
measurements are :mod:`pytest_tinyml.target`'s, judging is :mod:`pytest_tinyml.checks`'.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_tinyml import hookspecs, invocation
from pytest_tinyml.kinds import Emulator, KernelSet, Runtime
from pytest_tinyml.session import SESSION_KEY, TinyMLSession

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
        choices=Emulator.values(),
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
        choices=(Runtime.TINYML.value, Runtime.TFLM.value),
        help="runtime the firmware items build: tflm (real TFLM; default when its sources can be had from "
        "$TFLM_ROOT, the source cache ($TINYML_TFLM_SOURCES or ini tinyml_tflm_sources) or a download, else the "
        "items fall back to tinyml and say so) or tinyml (the project's C runtime)",
    )
    group.addoption(
        "--tinyml-kernels",
        default=None,
        choices=KernelSet.values(),
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
        "(default 60; a unit s, min or h may follow: 90s, 5min)",
        default="60",
    )
    parser.addini(
        "tinyml_emulator_timeout",
        "how long one emulator run (QEMU or Renode: all the firmware samples of a target) may take, in seconds; "
        "a unit s, min or h may follow: 600s, 10min (default 300)",
        default="300",
    )
    parser.addini(
        "tinyml_download_deadline",
        "how long the download of one TFLM source archive may take in total, however slowly it arrives, in "
        "seconds; a unit s, min or h may follow (default 30min)",
        default="30min",
    )
    parser.addini("tinyml_tflm_sources", "TFLM source cache directory (default: <user cache>/tflm-sources)", default="")
    parser.addini(
        "tinyml_user_cache",
        "the user-level cache shared by every project (TFLM sources and libraries, the firmware runtime, the QEMU "
        "plugin); default $TINYML_USER_CACHE, else $XDG_CACHE_HOME/pytest-tinyml, else ~/.cache/pytest-tinyml",
        default="",
    )
    parser.addini(
        "tinyml_user_cache_size",
        "size bound of the user-level cache: least recently used entries go past it (default 4GiB)",
        default="4GiB",
    )
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
        from pytest_tinyml.reports.terminal import board_lines

        for line in board_lines(tiny.boards):
            print(line)
    finally:
        config._ensure_unconfigure()
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise pytest.UsageError(f"--tinyml-firmware-samples: {text!r} is not a whole number") from None
    if value < 1:
        raise pytest.UsageError(f"--tinyml-firmware-samples: {value} must be at least 1")
    return value


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
    invocation.warn_if_rootdir_moved(config)
    specs, models = invocation.target_files(config)
    boards = invocation.collect_boards(config)
    board_override = invocation.board_override(config, boards)
    options = invocation.run_options(config)
    session = TinyMLSession(
        config=config,
        specs=specs,
        models=models,
        board_override=board_override,
        boards=boards,
        options=options,
        checks=invocation.collect_checks(config),
    )
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(session, "tinyml-session")
    if options.baseline is not None and not hasattr(config, "workerinput"):
        from pytest_tinyml import reports

        problem = reports.check_baseline(options.baseline)
        if problem:
            raise pytest.UsageError(problem)
    session.user_args = invocation.user_paths(config)
    session.collect_roots = invocation.point_args(config, models if models else specs)


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
    if tiny.options.report_dir is not None or tiny.options.baseline is not None:
        from pytest_tinyml import reports

        outcome = reports.finish(tiny, report_dir=tiny.options.report_dir, baseline=tiny.options.baseline)
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
