"""The firmware runtime policy, with its one default: real TFLM (with the kernel set for the core) when its
sources can be had, else the project's own runtime with the reason, printed by the firmware items.

``--tinyml-firmware-runtime`` / ``$TINYML_FIRMWARE_RUNTIME`` ask for one runtime explicitly: ``tflm``
raises NotEvaluable when TFLM cannot be had, ``tinyml`` never looks for TFLM.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytest_tinyml.emulate.tflm_fetch import DOWNLOAD_DEADLINE
from pytest_tinyml.emulate.tflm_tree import TflmTree, resolve_kernels, tflm_tree
from pytest_tinyml.errors import NotEvaluable
from pytest_tinyml.kinds import Runtime
from pytest_tinyml.options import RUNTIME_ENV, Environment, Progress

__all__ = ["RUNTIMES", "RUNTIME_ENV", "UNCHOSEN", "RuntimeChoice", "choose_runtime", "resolve_runtime"]

RUNTIMES = Runtime.values()
#: The runtime a direct library call builds, and the one a record names when no firmware item chose one:
#: the project's own (a library call never downloads TFLM by itself). The plugin's choice,
#: :func:`choose_runtime`, prefers real TFLM and falls back to this one with the reason.
UNCHOSEN = Runtime.TINYML


def resolve_runtime(runtime: str | None = None, environment: Environment | None = None) -> Runtime:
    """The runtime a direct :func:`~pytest_tinyml.emulate.run_firmware` call builds: ``runtime`` if given,
    else ``$TINYML_FIRMWARE_RUNTIME`` (``environment``, read now when not given), else ``tinyml`` (a
    library call never downloads TFLM on its own; the plugin decides with :func:`choose_runtime`)."""
    env = environment if environment is not None else Environment.read()
    value = runtime or env.firmware_runtime or UNCHOSEN
    if value not in RUNTIMES:
        raise ValueError(f"unknown firmware runtime {value!r}; known: {', '.join(RUNTIMES)}")
    return Runtime(value)


@dataclass(frozen=True)
class RuntimeChoice:
    """Which firmware runtime a run uses, with the TFLM tree for ``tflm`` and, for a fallback, why."""

    runtime: Runtime
    tree: TflmTree | None
    kernels: str  # the TFLM kernel set asked for (also recorded when falling back)
    note: str  # "" when the requested/default runtime runs; else the reason for the fallback


#: One failed source lookup per process and explicit setting (sources, kernels, core, offline, mirror, root),
#: so one session tries a download once.
_UNAVAILABLE: dict[tuple[str, ...], NotEvaluable] = {}


def choose_runtime(
    requested: str | None,
    *,
    core: str,
    kernels: str | None,
    sources_dir: Path,
    offline: bool = False,
    mirror: str | None = None,
    progress: Progress | None = None,
    tflm_root: Path | None = None,
    deadline: float = DOWNLOAD_DEADLINE,
) -> RuntimeChoice:
    """``tflm`` when TFLM sources and ``arm-none-eabi-g++`` are available, else ``tinyml`` with the reason.

    ``requested="tflm"`` raises NotEvaluable instead of falling back; ``"tinyml"`` never looks for TFLM.
    ``tflm_root``: a tflite-micro checkout used instead of the pinned sources ($TFLM_ROOT)."""
    kset = resolve_kernels(kernels, core)
    if requested == Runtime.TINYML:
        return RuntimeChoice(Runtime.TINYML, None, kset, "")
    memo = (str(sources_dir), kset, core, str(offline), mirror or "", str(tflm_root or ""))
    exc = _UNAVAILABLE.get(memo)
    if exc is None:
        try:
            tree = tflm_tree(tflm_root, kernels=kset, core=core, cache_dir=sources_dir, offline=offline,
                             mirror=mirror, progress=progress, environment=Environment(),
                             deadline=deadline)
            return RuntimeChoice(Runtime.TFLM, tree, kset, "")
        except NotEvaluable as err:
            exc = _UNAVAILABLE[memo] = err
    if requested == Runtime.TFLM:
        raise exc
    return RuntimeChoice(Runtime.TINYML, None, kset, f"real TFLM unavailable ({exc.reason}); fix: {exc.enable}")
