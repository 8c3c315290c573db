"""Everything the run was asked to do, read once.

:class:`Environment` is the only reader of environment variables in the package (``grep os.environ``
finds them here and nowhere else). :class:`RunOptions` joins it with the command line and the ini file;
the plugin builds one in ``pytest_configure`` and every layer below receives it (or the values it needs)
as an argument. Nothing here imports pytest, TensorFlow or another module of the project.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The environment variables the plugin reads, and what each means.
TFLM_ROOT_ENV = "TFLM_ROOT"  # a tflite-micro checkout with its third-party downloads (overrides the pins)
SOURCES_ENV = "TINYML_TFLM_SOURCES"  # the TFLM source cache (ini tinyml_tflm_sources wins)
MIRROR_ENV = "TINYML_TFLM_MIRROR"  # where the pinned TFLM archives are downloaded from
OFFLINE_ENV = "TINYML_OFFLINE"  # non-empty and not "0": never download
RUNTIME_ENV = "TINYML_FIRMWARE_RUNTIME"  # tflm or tinyml (--tinyml-firmware-runtime wins)
FAULT_ENV = "PYTEST_TINYML_FAKE_CHILD_FAULT"  # tests only: a named fake fault in the host-TFLM child
CC_ENV = "CC"  # the host C compiler for the QEMU instruction-class plugin
USER_CACHE_ENV = "TINYML_USER_CACHE"  # the user-level tool cache (ini tinyml_user_cache wins)
XDG_CACHE_ENV = "XDG_CACHE_HOME"  # its default parent (else ~/.cache)
#: The user-level cache's folder name under $XDG_CACHE_HOME or ~/.cache.
USER_CACHE_NAME = "pytest-tinyml"

Progress = Callable[[str], None]


def _flag(value: str) -> bool:
    return value not in ("", "0")


def _path(value: str) -> Path | None:
    return Path(value).expanduser() if value else None


@dataclass(frozen=True)
class Environment:
    """The environment variables that matter, as read once (:meth:`read`)."""

    tflm_root: Path | None = None
    tflm_sources: Path | None = None
    tflm_mirror: str | None = None
    offline: bool = False
    firmware_runtime: str | None = None
    host_cc: str | None = None
    fake_child_fault: str = ""
    user_cache: Path | None = None
    xdg_cache_home: Path | None = None

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> Environment:
        env = os.environ if environ is None else environ
        root = env.get(TFLM_ROOT_ENV, "")
        sources = env.get(SOURCES_ENV, "")
        return cls(
            tflm_root=Path(root).expanduser() if root else None,
            tflm_sources=Path(sources).expanduser() if sources else None,
            tflm_mirror=env.get(MIRROR_ENV, "") or None,
            offline=_flag(env.get(OFFLINE_ENV, "")),
            firmware_runtime=env.get(RUNTIME_ENV, "") or None,
            host_cc=env.get(CC_ENV, "") or None,
            fake_child_fault=env.get(FAULT_ENV, ""),
            user_cache=_path(env.get(USER_CACHE_ENV, "")),
            xdg_cache_home=_path(env.get(XDG_CACHE_ENV, "")),
        )

    def default_user_cache(self) -> Path:
        """``$TINYML_USER_CACHE``, else ``$XDG_CACHE_HOME/pytest-tinyml`` (an absolute one, as the XDG
        specification says), else ``~/.cache/pytest-tinyml``."""
        if self.user_cache is not None:
            return self.user_cache
        if self.xdg_cache_home is not None and self.xdg_cache_home.is_absolute():
            return self.xdg_cache_home / USER_CACHE_NAME
        return Path.home() / ".cache" / USER_CACHE_NAME


def child_environment(**overrides: str) -> dict[str, str]:
    """The environment for a child process (the host-TFLM child, Renode): this process's, plus
    ``overrides``."""
    env = dict(os.environ)
    env.update(overrides)
    return env


def quiet_tensorflow() -> None:
    """Ask TensorFlow's C++ logging for warnings and errors only (before it is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@dataclass(frozen=True)
class RunOptions:
    """What the run was asked to do: command line, ini and environment, resolved once.

    Explicit settings win over the environment: ``offline`` is already the union of
    ``--tinyml-offline``, ini ``tinyml_offline`` and ``$TINYML_OFFLINE``; ``tflm_sources`` is the ini's,
    else ``$TINYML_TFLM_SOURCES``; ``firmware_runtime`` the option's, else ``$TINYML_FIRMWARE_RUNTIME``.
    """

    cache_dir: Path
    rebuild: bool = False
    emulator: str | None = None  # overrides the spec's firmware.emulator
    firmware_samples: int | None = None  # overrides the spec's firmware.samples
    export_dir: Path | None = None
    progress: Progress | None = None
    extra_loaders: Mapping[str, Callable[..., Any]] | None = None  # the datasets hook's (None: built-ins)
    load_model: Callable[..., Any] | None = None
    tflm_timeout: float = 60.0  # seconds for one host-TFLM child (allocation or invocation period)
    firmware_runtime: str | None = None  # tflm, tinyml; None: real TFLM when its sources can be had
    kernels: str | None = None  # TFLM kernel set; None: the spec's, else by core
    offline: bool = False  # never download TFLM sources
    tflm_sources: Path | None = None  # source cache (default cache_dir / "tflm-sources")
    tflm_mirror: str | None = None
    tflm_root: Path | None = None  # $TFLM_ROOT: a checkout used instead of the pinned sources
    inputs_keep_bytes: int | None = None  # input blocks kept in the cache (ini tinyml_input_blocks_keep)
    report_dir: Path | None = None  # --tinyml-report: write report.json, report.md and report.html here
    baseline: Path | None = None  # --tinyml-baseline: an earlier report.json to compare with
    environment: Environment = field(default_factory=Environment)
    emulator_timeout: float = 300.0  # seconds one emulator run may take (ini tinyml_emulator_timeout)
    download_deadline: float = 1800.0  # seconds one TFLM source archive may take to download (ini)
    user_cache: Path | None = None  # the user-level tool cache (None: cache_dir / "tools", e.g. in tests)
    user_cache_limit: int = 4 << 30  # its size bound in bytes (ini tinyml_user_cache_size)

    @classmethod
    def resolve(cls, environment: Environment, **settings: Any) -> RunOptions:
        """The options from explicit ``settings`` (command line and ini, already parsed) and
        ``environment``: an explicit setting wins, the environment fills what was not set (``offline`` is
        either's, ``tflm_sources``/``firmware_runtime``/``user_cache`` the setting's else the
        environment's, ``tflm_root`` only the environment's)."""
        settings["offline"] = bool(settings.get("offline")) or environment.offline
        settings["tflm_sources"] = settings.get("tflm_sources") or environment.tflm_sources
        settings["firmware_runtime"] = settings.get("firmware_runtime") or environment.firmware_runtime
        settings["user_cache"] = settings.get("user_cache") or environment.default_user_cache()
        return cls(**settings, tflm_root=environment.tflm_root, environment=environment)

    @property
    def tools_dir(self) -> Path:
        """The user-level tool cache: TFLM libraries, the runtime, the QEMU plugin, source trees."""
        return self.user_cache or self.cache_dir / "tools"

    @property
    def sources_dir(self) -> Path:
        """Where verified TFLM source trees are kept (ini/env, else in the user-level cache)."""
        return self.tflm_sources or self.tools_dir / "tflm-sources"

    @property
    def firmware_dir(self) -> Path:
        return self.cache_dir / "firmware"

    @property
    def runs_dir(self) -> Path:
        return self.cache_dir / "runs"


__all__ = ["Environment", "Progress", "RunOptions", "child_environment", "quiet_tensorflow"]
