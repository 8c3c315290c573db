"""What this pytest invocation asks for, read once in ``pytest_configure``: the spec and model files
(options, ini, globs and node ids on the command line), the boards and checks the plugins register, and
the :class:`~pytest_tinyml.options.RunOptions` (command line, ini file and environment).

Every problem is a one-line :class:`pytest.UsageError`. :mod:`pytest_tinyml.plugin` wires these into
pytest's hooks; the precedence between explicit settings and the environment is
:meth:`pytest_tinyml.options.RunOptions.resolve`'s.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_tinyml._util.files import target_key
from pytest_tinyml._util.text import printable
from pytest_tinyml.boards import BoardRegistry, board_from_mapping
from pytest_tinyml.checks.base import CANONICAL_NAMES, Check
from pytest_tinyml.errors import SpecError
from pytest_tinyml.kinds import Direction
from pytest_tinyml.options import Environment, RunOptions
from pytest_tinyml.session import display

#: ``--tinyml-spec``/``--tinyml-model`` and the file suffixes each accepts.
SPEC_SUFFIXES = (".yaml", ".yml")
MODEL_SUFFIXES = (".tflite",)


# --- the files to judge ---------------------------------------------------------------------------
def expand(patterns: list[str], option: str, want: tuple[str, ...]) -> list[Path]:
    """The files ``patterns`` name (globs expanded, each resolved once), or a UsageError."""
    out: list[Path] = []
    for pattern in patterns:
        path = Path(pattern).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
        if _exists(path):  # a literal path that exists wins over glob interpretation: model[v2].tflite
            matches = [path]
        elif glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            if not matches:
                raise pytest.UsageError(
                    f"{option} {printable(pattern)}: the pattern matches no file (fix: check the pattern)"
                )
        else:
            raise pytest.UsageError(f"{option} {printable(pattern)}: no such file (fix: check the path)")
        for match in matches:
            if match.is_dir():
                raise pytest.UsageError(
                    f"{option} {printable(str(match))}: is a directory (fix: name a file, or a glob such as "
                    f"{printable(display(match))}/*{want[0]})"
                )
            if match.is_file() and match.suffix.lower() not in want:
                raise pytest.UsageError(
                    f"{option} {printable(str(match))}: expected a {' or '.join(want)} file (fix: use "
                    + ("--tinyml-model for .tflite files" if option == "--tinyml-spec" else "--tinyml-spec for YAML specs")
                    + ")"
                )
            # not a regular file (FIFO, device, socket, a symlink to one): kept, its item fails saying so
            resolved = target_key(match)
            if resolved not in out:
                out.append(resolved)
    return out


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: not a file that exists
        return False


def arg_file(arg: str) -> Path | None:
    """The file a command-line argument names (``models/a.tflite::size`` -> ``models/a.tflite``) as
    :func:`~pytest_tinyml._util.files.target_key` names it (a FIFO or device too: its item fails)."""
    part = arg.split("::", 1)[0]
    if not part or part.startswith("-"):
        return None
    try:
        path = Path(part).expanduser()
        return target_key(path) if path.exists() and not path.is_dir() else None
    except (OSError, ValueError):
        return None


def named_targets(config: pytest.Config) -> tuple[list[Path], list[Path]]:
    """``.tflite`` files and spec YAML files named as test paths or node ids (``pytest 'a.tflite::size'``)."""
    models: list[Path] = []
    specs: list[Path] = []
    for arg in config.args:
        path = arg_file(arg)
        if path is None:
            continue
        suffix = path.suffix.lower()
        if suffix in MODEL_SUFFIXES and path not in models:
            models.append(path)
        elif suffix in SPEC_SUFFIXES and path not in specs:
            specs.append(path)
    return models, specs


def target_files(config: pytest.Config) -> tuple[list[Path], list[Path]]:
    """(specs, models) to judge: the options' (else the ini's), plus files named on the command line."""
    specs = expand(list(config.getoption("tinyml_spec")) or config.getini("tinyml_spec"), "--tinyml-spec", SPEC_SUFFIXES)
    models = expand(list(config.getoption("tinyml_model")) or config.getini("tinyml_model"), "--tinyml-model",
                    MODEL_SUFFIXES)
    if explicit_args(config):  # node ids and paths on the command line: pytest 'models/a.tflite::size' selects one item
        named_models, named_specs = named_targets(config)
        models += [p for p in named_models if p not in models]
        specs += [p for p in named_specs if p not in specs]
    if models and len(specs) > 1:
        raise pytest.UsageError("--tinyml-model with several --tinyml-spec: give one spec whose constraints apply to the models")
    return specs, models


def explicit_args(config: pytest.Config) -> bool:
    return config.args_source == pytest.Config.ArgsSource.ARGS


def point_args(config: pytest.Config, wanted: list[Path]) -> list[Path]:
    """Make pytest collect ``wanted`` (besides what the command line names, or instead of testpaths).

    pytest refuses a path argument with ``[`` (it reads it as parametrization): such a target is collected
    through the nearest directory above it whose path has none. Returns those directories (under them
    only the targets are collected: :func:`pytest_tinyml.items.pytest_ignore_collect`)."""
    if not wanted:
        return []
    if explicit_args(config):
        named = {arg_file(arg) for arg in config.args}
        extra = [p for p in wanted if p not in named]
    else:
        extra = list(wanted)
        config.args[:] = []
    roots: list[Path] = []
    for path in extra:
        if "[" not in display(path):
            config.args.append(display(path))
            continue
        root = next(d for d in path.parents if "[" not in display(d))
        if root not in roots:
            roots.append(root)
            config.args.append(display(root))
    return roots


def user_paths(config: pytest.Config) -> list[Path]:
    """The paths the command line named itself (before :func:`point_args`), absolute."""
    if not explicit_args(config):
        return []
    out = []
    for arg in config.args:
        part = arg.split("::", 1)[0]
        if part and not part.startswith("-"):
            out.append(Path(os.path.abspath(Path(part).expanduser())))
    return out


# --- what plugins register ------------------------------------------------------------------------
def collect_checks(config: pytest.Config) -> list[Check]:
    """The checks of every ``pytest_tinyml_checks`` implementation, validated, in canonical order."""
    checks: list[Check] = []
    seen: set[str] = set()
    metrics: set[str] = set()
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
            if direction not in Direction.values():
                raise pytest.UsageError(
                    f"pytest_tinyml_checks: check {name!r} declares direction {direction!r} "
                    "(fix: 'lower' when smaller is better, 'higher' when larger is better, or '')"
                )
            if metric and direction and metric in metrics:
                raise pytest.UsageError(f"pytest_tinyml_checks: two checks declare metric {metric!r} (fix: rename one)")
            seen.add(name)
            if metric:
                metrics.add(metric)
            checks.append(check)
    order = {n: i for i, n in enumerate(CANONICAL_NAMES)}
    checks.sort(key=lambda c: order.get(c.name, len(order)))
    return checks


def collect_boards(config: pytest.Config) -> BoardRegistry:
    """The boards of every ``pytest_tinyml_boards`` implementation (built-ins first, plugins may override)."""
    registry = BoardRegistry([])
    try:
        for group in reversed(config.hook.pytest_tinyml_boards()):
            for board in group or []:
                if isinstance(board, tuple):
                    name, fields = board
                    board = board_from_mapping(name, fields, "pytest_tinyml_boards")
                registry.add(board)
    except SpecError as exc:
        raise pytest.UsageError(str(exc)) from None
    return registry


def board_override(config: pytest.Config, boards: BoardRegistry) -> str | None:
    """``--tinyml-board`` (else ini ``tinyml_board``), checked against ``boards``; None when not given."""
    name = config.getoption("tinyml_board") or config.getini("tinyml_board") or None
    if name:
        try:
            boards.get(name)
        except SpecError as exc:
            raise pytest.UsageError(f"--tinyml-board: {exc}") from None
    return name


def dataset_loaders(config: pytest.Config) -> dict[str, Any]:
    """Dataset loaders by name: the built-in ones (called last, listed first), then plugins' (which win)."""
    loaders: dict[str, Any] = {}
    for group in reversed(config.hook.pytest_tinyml_datasets()):
        loaders.update(group or {})
    return loaders


def progress_writer(config: pytest.Config) -> Any:
    """Progress lines for long steps (training, evaluation, firmware), shown even while an item runs."""
    from pytest_tinyml.reports.progress import ProgressWriter

    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or config.getoption("verbose") < 0:
        return None
    return ProgressWriter.for_terminal_reporter(reporter, config.pluginmanager.get_plugin("capturemanager"))


# --- the run options ------------------------------------------------------------------------------
def cache_dir(config: pytest.Config) -> Path:
    """ini ``tinyml_cache_dir``, else pytest's cache dir ``d/tinyml``."""
    cache = config.getini("tinyml_cache_dir")
    cache_provider = getattr(config, "cache", None)
    if cache:
        return Path(cache)
    if cache_provider is not None:
        return Path(str(cache_provider.mkdir("tinyml")))
    return Path(str(config.rootpath)) / ".pytest_cache" / "d" / "tinyml"


#: The timeouts' accepted range: more than 0 and less than this many seconds (NaN and infinity refused).
MAX_TIMEOUT_SECONDS = 1e7
_DURATION_UNITS = {"s": 1.0, "min": 60.0, "h": 3600.0}


def ini_seconds(config: pytest.Config, name: str) -> float:
    """ini ``name``, a timeout: a number of seconds, optionally with a unit (``90``, ``90s``, ``5min``,
    ``1.5h``), more than 0 and less than :data:`MAX_TIMEOUT_SECONDS`; else a one-line UsageError that says
    so."""
    import re

    text = str(config.getini(name))
    try:
        value = float(text)  # a bare number of seconds, as float() reads it
    except ValueError:
        found = re.fullmatch(r"\s*([0-9][0-9._]*(?:[eE][+-]?[0-9]+)?)\s*(s|min|h)\s*", text[:100])
        try:
            value = float(found.group(1)) * _DURATION_UNITS[found.group(2)] if found else 0.0
        except ValueError:
            value = 0.0
    if not 0 < value < MAX_TIMEOUT_SECONDS:  # also refuses NaN and infinity
        raise pytest.UsageError(
            f"{name} = {text[:100]!r}: expected a positive number of seconds below {MAX_TIMEOUT_SECONDS:,.0f}, "
            "optionally with a unit s, min or h (e.g. 60, 90s, 5min)"
        )
    return value


def tflm_timeout(config: pytest.Config) -> float:
    """ini ``tinyml_tflm_timeout`` in seconds (:func:`ini_seconds`)."""
    return ini_seconds(config, "tinyml_tflm_timeout")


def download_deadline(config: pytest.Config) -> float:
    """ini ``tinyml_download_deadline`` in seconds (:func:`ini_seconds`): the total time one TFLM source
    archive may take to download (besides the per-read timeout)."""
    return ini_seconds(config, "tinyml_download_deadline")


def emulator_timeout(config: pytest.Config) -> float:
    """ini ``tinyml_emulator_timeout`` in seconds (:func:`ini_seconds`): how long one emulator run may take."""
    return ini_seconds(config, "tinyml_emulator_timeout")


def user_cache_limit(config: pytest.Config) -> int:
    """ini ``tinyml_user_cache_size`` in bytes."""
    from pytest_tinyml.spec.units import parse_size

    try:
        return parse_size(config.getini("tinyml_user_cache_size").strip() or "4GiB").bytes
    except ValueError as exc:
        raise pytest.UsageError(f"ini tinyml_user_cache_size: {exc} (e.g. 4GiB)") from None


def inputs_keep_bytes(config: pytest.Config) -> int:
    """ini ``tinyml_input_blocks_keep`` in bytes."""
    from pytest_tinyml.spec.units import parse_size

    try:
        return parse_size(config.getini("tinyml_input_blocks_keep").strip() or "256MiB").bytes
    except ValueError as exc:
        raise pytest.UsageError(f"ini tinyml_input_blocks_keep: {exc}") from None


def run_options(config: pytest.Config, environment: Environment | None = None) -> RunOptions:
    """The :class:`RunOptions` of this invocation (``environment``: as read now when not given)."""
    cache = cache_dir(config)
    timeout = tflm_timeout(config)
    emulator_seconds = emulator_timeout(config)
    deadline = download_deadline(config)
    keep = inputs_keep_bytes(config)
    export = config.getoption("tinyml_export")
    report_dir = config.getoption("tinyml_report")
    baseline = config.getoption("tinyml_baseline")
    sources = config.getini("tinyml_tflm_sources")
    user_cache = config.getini("tinyml_user_cache")
    limit = user_cache_limit(config)
    return RunOptions.resolve(
        environment if environment is not None else Environment.read(),
        cache_dir=cache,
        rebuild=bool(config.getoption("tinyml_rebuild")),
        emulator=config.getoption("tinyml_emulator"),
        firmware_samples=config.getoption("tinyml_firmware_samples"),
        export_dir=Path(export) if export else None,
        progress=progress_writer(config),
        extra_loaders=dataset_loaders(config),
        load_model=lambda ref, spec: config.hook.pytest_tinyml_load_model(ref=ref, spec=spec),
        tflm_timeout=timeout,
        firmware_runtime=config.getoption("tinyml_firmware_runtime"),
        kernels=config.getoption("tinyml_kernels"),
        offline=bool(config.getoption("tinyml_offline") or config.getini("tinyml_offline")),
        tflm_sources=Path(sources).expanduser() if sources else None,
        tflm_mirror=config.getini("tinyml_tflm_mirror") or None,
        inputs_keep_bytes=keep,
        report_dir=Path(report_dir) if report_dir else None,
        baseline=Path(baseline) if baseline else None,
        emulator_timeout=emulator_seconds,
        download_deadline=deadline,
        user_cache=Path(user_cache).expanduser() if user_cache else None,
        user_cache_limit=limit,
    )


# --- the rootdir pytest chose ---------------------------------------------------------------------
def warn_if_rootdir_moved(config: pytest.Config) -> None:
    """A config-time warning when pytest took its rootdir from a ``--tinyml-model PATH`` value."""
    taken = rootdir_taken_from(config)
    if taken is None or hasattr(config, "workerinput"):
        return
    equals = ", ".join(t.replace(" ", "=", 1) for t in taken.split(", "))
    config.issue_config_time_warning(
        pytest.PytestConfigWarning(
            f"pytest took its rootdir {config.rootpath} from '{taken}' (it fixes the rootdir before plugin "
            f"options are known), so the ini file where you ran pytest is not used; write '{equals}' "
            "or pass --rootdir"
        ),
        stacklevel=3,
    )


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
