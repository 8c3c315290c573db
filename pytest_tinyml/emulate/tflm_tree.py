"""Where real TFLM comes from and what of it is compiled: the located tree (:class:`TflmTree`: sources,
include directories, defines for a kernel set and core), the kernel-set default per core, and the source
lists TFLM's ``tools/make/sources.inc`` names (see :mod:`pytest_tinyml.emulate.tflm_build` for the build).
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from pytest_tinyml.emulate.tflm_fetch import DOWNLOAD_DEADLINE
from pytest_tinyml.emulate.tflm_sources import SourceSet, locate_sources, tree_files, tree_has
from pytest_tinyml.errors import NotEvaluable
from pytest_tinyml.kinds import KernelSet
from pytest_tinyml.options import Environment, Progress

TFLM_ENV = "TFLM_ROOT"
GXX = "arm-none-eabi-g++"
DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")
SOURCES_ENV = "TINYML_TFLM_SOURCES"  # source cache directory (the ini tinyml_tflm_sources for the plugin)
OFFLINE_ENV = "TINYML_OFFLINE"  # non-empty and not "0": never download TFLM sources
SETUP_HINT = (
    "let pytest-tinyml download the pinned TFLM sources (drop --tinyml-offline / TINYML_OFFLINE), point the "
    f"source cache (ini tinyml_tflm_sources, ${SOURCES_ENV}) at a filled one, or set TFLM_ROOT to a tflite-micro "
    "checkout after `make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads`"
)

KERNEL_SETS = KernelSet.values()
DSP_CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")  # DSP or MVE extension

_CORE_TOKEN = {"cortex-m0plus": "M0plus", "cortex-m3": "M3", "cortex-m4": "M4", "cortex-m7": "M7",
               "cortex-m33": "M33", "cortex-m55": "M55"}

_SUBDIRS = ("tensorflow/lite/micro", "tensorflow/lite/micro/arena_allocator",
            "tensorflow/lite/micro/memory_planner", "tensorflow/lite/micro/tflite_bridge")
_KERNEL_RE = re.compile(r"\$\(TENSORFLOW_ROOT\)(tensorflow/lite/micro/kernels/[\w/]+\.(?:cc|c))")



def default_kernels(core: str) -> str:
    """``cmsis_nn`` on cores with the DSP or MVE extension, ``reference`` elsewhere."""
    return str(KernelSet.CMSIS_NN if core in DSP_CORES else KernelSet.REFERENCE)


def resolve_kernels(kernels: str | None, core: str) -> str:
    value = kernels or default_kernels(core)
    if value not in KERNEL_SETS:
        raise ValueError(f"unknown kernel set {value!r}; known: {', '.join(KERNEL_SETS)}")
    return value


@dataclass(frozen=True)
class TflmTree:
    root: Path
    includes: tuple[Path, ...]
    core_sources: tuple[Path, ...]
    kernel_sources: tuple[Path, ...]
    kernels: str = "reference"
    sources: SourceSet | None = None
    library_sources: tuple[Path, ...] = ()  # CMSIS-NN Source/*.c, compiled when the link needs them
    defines: tuple[str, ...] = ()

    def describe(self) -> str:
        where = self.sources.describe() if self.sources else f"TFLM from {self.root}"
        return f"{where}, {self.kernels} kernels"


def _is_test(path: Path) -> bool:
    return path.stem.endswith("_test") or "benchmark" in path.stem


def _kernel_sources(src: SourceSet, kernels: str) -> list[Path]:
    root = src.tflm
    sources_inc = root / "tensorflow/lite/micro/tools/make/sources.inc"
    found: list[Path] = []
    if sources_inc.is_file():
        text = sources_inc.read_text(errors="replace")
        start = text.find("MICROLITE_CC_KERNEL_SRCS :=")
        if start >= 0:
            block = text[start : text.find("\n\n", start) if "\n\n" in text[start:] else len(text)]
            found = [root / rel for rel in _KERNEL_RE.findall(block)]
    if not found:  # older/newer layout: every non-test kernel file
        found = [p for p in tree_files(src, root / "tensorflow/lite/micro/kernels", (".cc",), recursive=False)
                 if not _is_test(p)]
    if kernels == KernelSet.CMSIS_NN:  # TFLM's Makefile: an optimized kernels/<dir>/X.cc replaces kernels/X.cc
        opt = root / "tensorflow/lite/micro/kernels/cmsis_nn"
        found = [opt / p.name if tree_has(src, opt / p.name) else p for p in found]
    return [p for p in found if tree_has(src, p)]


def _core_sources(src: SourceSet) -> list[Path]:
    root = src.tflm
    out: list[Path] = []
    for sub in _SUBDIRS:
        out += [p for p in tree_files(src, root / sub, (".cc",), recursive=False) if not _is_test(p)]
    tf = root / "tensorflow"
    skip = (tf / "lite/micro", tf / "lite/experimental")
    for path in tree_files(src, tf, (".cc", ".c"), recursive=True):
        if any(path.is_relative_to(s) for s in skip):
            continue
        if path == tf / "lite/array.cc" or _is_test(path):
            continue
        out.append(path)
    return out


def _cmsis_nn_sources(src: SourceSet, cmsis_nn: Path) -> list[Path]:
    """CMSIS-NN ``Source/**/*.c`` as TFLM's cmsis_nn.inc selects them with F16/F32 off."""
    out = []
    for path in tree_files(src, cmsis_nn / "Source", (".c",), recursive=True):
        if path.name.endswith(("_f16.c", "_f32.c")) or path.name == "arm_nntables_flt.c":
            continue
        out.append(path)
    return out


def tree_from_sources(src: SourceSet, kernels: str, core: str) -> TflmTree:
    """The compile plan (sources, include directories, defines) for ``kernels`` on ``core``."""
    includes = [src.tflm, src.gemmlowp, src.flatbuffers / "include", src.ruy]
    defines: list[str] = []
    library: list[Path] = []
    if kernels == KernelSet.CMSIS_NN:
        if src.cmsis_nn is None or src.cmsis is None:
            raise NotEvaluable("CMSIS-NN kernels need the CMSIS-NN and CMSIS sources", SETUP_HINT)
        token = _CORE_TOKEN.get(core, "M4")
        includes += [src.cmsis, src.cmsis_nn, src.cmsis / "CMSIS/Core/Include", src.cmsis_nn / "Include"]
        if src.cortex_dfp is not None:
            includes.append(src.cortex_dfp / f"Device/ARMC{token}/Include")
        defines += ["-DCMSIS_NN", "-DARM_NN_ENABLE_F16=0", "-DARM_NN_ENABLE_F32=0", f"-DCPU_{token}=1",
                    f"-DARMC{token}", f'-DCMSIS_DEVICE_ARM_CORTEX_M_XX_HEADER_FILE="ARMC{token}.h"']
        library = _cmsis_nn_sources(src, src.cmsis_nn)
    return TflmTree(
        src.tflm, tuple(includes), tuple(_core_sources(src)), tuple(_kernel_sources(src, kernels)),
        kernels, src, tuple(library), tuple(defines),
    )


def tflm_tree(
    root: str | os.PathLike[str] | None = None,
    *,
    kernels: str = "reference",
    core: str = "cortex-m4",
    cache_dir: Path | None = None,
    offline: bool | None = None,
    mirror: str | None = None,
    progress: Progress | None = None,
    environment: Environment | None = None,
    deadline: float = DOWNLOAD_DEADLINE,
) -> TflmTree:
    """Locate TFLM sources (``root``, the source cache ``cache_dir``, or a download) for a ``kernels`` build;
    raises NotEvaluable saying exactly what is missing. What is not given comes from ``environment``
    (``$TFLM_ROOT``, ``$TINYML_TFLM_SOURCES``, ``$TINYML_OFFLINE``, ``$TINYML_TFLM_MIRROR``; read now when
    not given); ``deadline``: seconds each archive's download may take in total."""
    env = environment if environment is not None else Environment.read()
    if shutil.which(GXX) is None:
        raise NotEvaluable(f"{GXX} not found", "apt-get install -y g++-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    if cache_dir is None and env.tflm_sources is not None:
        cache_dir = env.tflm_sources
    if root is None and env.tflm_root is not None:
        root = env.tflm_root
    if root is None and cache_dir is None:
        raise NotEvaluable(f"{TFLM_ENV} is not set and no TFLM source cache was given (${SOURCES_ENV})", SETUP_HINT)
    src = locate_sources(
        Path(cache_dir) if cache_dir is not None else Path("."),
        kernels=kernels,
        offline=env.offline if offline is None else offline,
        mirror=mirror or env.tflm_mirror,
        progress=progress,
        tflm_root=root if root is not None else "",
        deadline=deadline,
    )
    return tree_from_sources(src, kernels, core)
