"""Building the firmware harness against real TensorFlow Lite Micro, reference or CMSIS-NN kernels.

The project ships no TFLM code: :mod:`pytest_tinyml.emulate.tflm_sources` finds the sources (``TFLM_ROOT``,
the verified source cache, or a pinned download). This module compiles TFLM for a Cortex-M core with
``arm-none-eabi-g++``, object by object and only what the model's ops need, and links
``firmware/app/tflm_main.cc`` with the files
:func:`pytest_tinyml.emulate.export` generates (model array, op resolver, arena size). The ELF speaks the
same protocol as the tinyml-rt harness (input block + UART, firmware/app/harness.h), so :func:`pytest_tinyml.emulate.run_firmware` runs it
unchanged (``runtime="tflm"``).

Kernel sets (``kernels``): ``reference`` (TFLM's portable kernels) or ``cmsis_nn`` (TFLM built the way its
Makefile builds ``OPTIMIZED_KERNEL_DIR=cmsis_nn`` with ``targets/cortex_m_generic_makefile.inc``: every
``kernels/X.cc`` that has a ``kernels/cmsis_nn/X.cc`` is replaced by it, ``-DCMSIS_NN
-DARM_NN_ENABLE_F16=0 -DARM_NN_ENABLE_F32=0``, the CMSIS-NN, CMSIS Core and Cortex_DFP device include
directories, ``-DCPU_<core>=1 -DARMC<core>`` and the device header define; CMSIS-NN's ``Source/*.c``, minus
the f16/f32 files, are compiled on demand when the link needs a function they define). The default is
``cmsis_nn`` on cores with the DSP or MVE extension (Cortex-M4, M7, M33, M55), ``reference`` elsewhere.

Source selection follows TFLM's ``tools/make/sources.inc``: the ``.cc`` files of ``tensorflow/lite/micro``
(top level, ``arena_allocator``, ``memory_planner``, ``tflite_bridge``), the shared TFLite sources under
``tensorflow/`` outside ``lite/micro`` and ``lite/experimental`` (minus ``array.cc``), and the kernel list
``MICROLITE_CC_KERNEL_SRCS`` (signal kernels, which need kissfft, are left out). Flags are the Makefile's
defaults (``-Os`` core, ``-O2`` kernels, ``-DTF_LITE_STATIC_MEMORY``, no RTTI/exceptions).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pytest_tinyml.emulate.build import (
    BuildOutput,
    _digest,
    _publish,
    _run,
    build_library,
    link_command,
)
from pytest_tinyml.emulate.errors import FirmwareError
from pytest_tinyml.emulate.tflm_sources import (
    SourceSet,
    locate_sources,
    pins,
    projects_for,
    tree_files,
    tree_has,
)
from pytest_tinyml.emulate.toolchain import CORES, GCC, MACHINES, compiler_version, firmware_dir
from pytest_tinyml.errors import NotEvaluable
from pytest_tinyml.options import Environment

Progress = Callable[[str], None]

TFLM_ENV = "TFLM_ROOT"
GXX = "arm-none-eabi-g++"
DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")
TFLM_BUILD_FORMAT = "tflm-build-2"
SOURCES_ENV = "TINYML_TFLM_SOURCES"  # source cache directory (the ini tinyml_tflm_sources for the plugin)
OFFLINE_ENV = "TINYML_OFFLINE"  # non-empty and not "0": never download TFLM sources
SETUP_HINT = (
    "let pytest-tinyml download the pinned TFLM sources (drop --tinyml-offline / TINYML_OFFLINE), point the "
    f"source cache (ini tinyml_tflm_sources, ${SOURCES_ENV}) at a filled one, or set TFLM_ROOT to a tflite-micro "
    "checkout after `make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads`"
)


def offline_from_env() -> bool:
    return os.environ.get(OFFLINE_ENV, "") not in ("", "0")
KERNEL_SETS = ("cmsis_nn", "reference")
DSP_CORES = ("cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")  # DSP or MVE extension
_CORE_TOKEN = {"cortex-m0plus": "M0plus", "cortex-m3": "M3", "cortex-m4": "M4", "cortex-m7": "M7",
               "cortex-m33": "M33", "cortex-m55": "M55"}

_COMMON = (
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-ffunction-sections",
    "-fdata-sections",
    "-fmessage-length=0",
    "-fomit-frame-pointer",
    "-funsigned-char",
    "-DTF_LITE_STATIC_MEMORY",
    "-DTF_LITE_DISABLE_X86_NEON",
    # Not TFLM's -DTF_LITE_MCU_DEBUG_LOG: with it, a failed TFLITE_ASSERT spins forever ("HALTED"), which
    # under an emulator is a hang until the timeout; without it abort() ends the run with an error.
    "-Wno-unused-parameter",
)
CXXFLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", *_COMMON)
CFLAGS = ("-std=c17", *_COMMON)
CORE_OPT = "-Os"
KERNEL_OPT = "-O2"

_SUBDIRS = ("tensorflow/lite/micro", "tensorflow/lite/micro/arena_allocator",
            "tensorflow/lite/micro/memory_planner", "tensorflow/lite/micro/tflite_bridge")
_KERNEL_RE = re.compile(r"\$\(TENSORFLOW_ROOT\)(tensorflow/lite/micro/kernels/[\w/]+\.(?:cc|c))")


def default_kernels(core: str) -> str:
    """``cmsis_nn`` on cores with the DSP or MVE extension, ``reference`` elsewhere."""
    return "cmsis_nn" if core in DSP_CORES else "reference"


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


def tflm_root(root: str | os.PathLike[str] | None = None) -> Path | None:
    """``root`` if given, else ``$TFLM_ROOT``, else None."""
    value = os.fspath(root) if root is not None else os.environ.get(TFLM_ENV, "")
    return Path(value).expanduser().resolve() if value else None


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
    if kernels == "cmsis_nn":  # TFLM's Makefile: an optimized kernels/<dir>/X.cc replaces kernels/X.cc
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
    if kernels == "cmsis_nn":
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
) -> TflmTree:
    """Locate TFLM sources (``root``/``$TFLM_ROOT``, the source cache ``cache_dir``, or a download) for a
    ``kernels`` build; raises NotEvaluable saying exactly what is missing."""
    if shutil.which(GXX) is None:
        raise NotEvaluable(f"{GXX} not found", "apt-get install -y g++-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    if cache_dir is None and os.environ.get(SOURCES_ENV):
        cache_dir = Path(os.environ[SOURCES_ENV]).expanduser()
    if root is None and not os.environ.get(TFLM_ENV) and cache_dir is None:
        raise NotEvaluable(f"{TFLM_ENV} is not set and no TFLM source cache was given (${SOURCES_ENV})", SETUP_HINT)
    src = locate_sources(
        Path(cache_dir) if cache_dir is not None else Path("."),
        kernels=kernels,
        offline=offline_from_env() if offline is None else offline,
        mirror=mirror or Environment.read().tflm_mirror,
        progress=progress,
        tflm_root=root if root is not None else Environment.read().tflm_root,
    )
    return tree_from_sources(src, kernels, core)


def _tree_key(tree: TflmTree) -> bytes:
    """Identity of the tree: the pins and kernel set for pinned sources (their digests were verified);
    for a user's ``TFLM_ROOT``, path, size and mtime of every source and header that can be included."""
    h = hashlib.sha256(f"{tree.kernels}|{' '.join(tree.defines)}".encode())
    if tree.sources is not None and tree.sources.commit:
        for name in projects_for(tree.kernels):
            pin = pins()[name]
            h.update(f"{name}:{pin.commit}:{pin.cache_sha256}\n".encode())
        return h.digest()
    h.update(str(tree.root).encode())
    roots = [tree.root / "tensorflow", tree.root / "signal"] + [
        tree.root / DOWNLOADS / d for d in ("flatbuffers/include", "gemmlowp/fixedpoint", "ruy/ruy/profiler")
    ]
    if tree.kernels == "cmsis_nn":
        roots += [tree.root / DOWNLOADS / d for d in ("cmsis_nn/Include", "cmsis_nn/Source", "cmsis/CMSIS/Core")]
    for top in roots:
        if not top.is_dir():
            continue
        for path in sorted(top.rglob("*")):
            if path.suffix in (".h", ".cc", ".c", ".inc") and path.is_file():
                st = path.stat()
                h.update(f"{path.relative_to(tree.root)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.digest()


def _cpu_flags(core: str) -> list[str]:
    return list(CORES[core].cflags)


def _compile_cmd(tree: TflmTree, src: Path, obj: Path, core: str, opt: str) -> list[str]:
    incs = [f"-I{p}" for p in tree.includes]
    if src.suffix == ".c":
        return [GCC, *_cpu_flags(core), opt, *CFLAGS, *tree.defines, *incs, "-c", str(src), "-o", str(obj)]
    return [GXX, *_cpu_flags(core), opt, *CXXFLAGS, *tree.defines, *incs, "-c", str(src), "-o", str(obj)]


_OPTIONAL_CORE = ("test_helper", "fake_", "mock_", "recording_", "hexdump")
_GENERIC_HELPERS = ("kernel_util.cc", "micro_tensor_utils.cc")
_DEF_RE = re.compile(r"\bRegister_(\w+)\s*\(\s*\)\s*\{")
_C_DEF_RE = re.compile(r"^(?!static\b)[A-Za-z_][\w \t\*]*?\b(arm_\w+)\s*\(", re.M)


def _method_registrations(tree: TflmTree, methods: list[str]) -> set[str] | None:
    """``Register_*`` functions the resolver's ``Add<method>()`` calls use (None if the header is unreadable)."""
    header = tree.root / "tensorflow/lite/micro/micro_mutable_op_resolver.h"
    try:
        text = header.read_text(errors="replace")
    except OSError:
        return None
    found: set[str] = set()
    for method in methods:
        m = re.search(rf"TfLiteStatus\s+Add{method}\s*\(", text)
        if m is None:
            return None
        end = text.find("\n  }", m.end())
        found.update(re.findall(r"Register_(\w+)\s*\(", text[m.start() : end if end > 0 else len(text)]))
    return found


def _definition_index(sources: Iterable[Path], pattern: re.Pattern[str]) -> dict[str, Path]:
    """Name -> the first of ``sources`` whose text defines it (``pattern`` finds the defined names)."""
    index: dict[str, Path] = {}
    for src in sources:
        for name in pattern.findall(src.read_text(errors="replace")):
            index.setdefault(name, src)
    return index


def _kernel_index(tree: TflmTree) -> dict[str, Path]:
    """``Register_X`` name -> kernel source defining it."""
    return _definition_index(tree.kernel_sources, _DEF_RE)


def _library_index(tree: TflmTree) -> dict[str, Path]:
    """Function name -> CMSIS-NN source defining it (non-static definitions at the start of a line)."""
    return _definition_index(tree.library_sources, _C_DEF_RE)


_ARM_CALL_RE = re.compile(r"\b(arm_\w+)\s*\(")


def _library_closure(tree: TflmTree, chosen: list[Path]) -> list[Path]:
    """The CMSIS-NN sources defining the ``arm_*`` functions ``chosen`` calls, and what those call in turn
    (saves link rounds; the link loop still adds anything this misses)."""
    index = _library_index(tree)
    if not index:
        return []
    found: list[Path] = []
    seen: set[Path] = set()
    queue = list(chosen)
    while queue:
        src = queue.pop()
        for name in _ARM_CALL_RE.findall(src.read_text(errors="replace")):
            lib = index.get(name)
            if lib is not None and lib not in seen:
                seen.add(lib)
                found.append(lib)
                queue.append(lib)
    return sorted(found)


def select_sources(tree: TflmTree, methods: list[str]) -> list[Path] | None:
    """The TFLM sources an app registering ``methods`` (``Conv2D``, ``Softmax``...) needs, or None when
    the selection cannot be derived (then every library source is compiled)."""
    regs = _method_registrations(tree, methods)
    if regs is None:
        return None
    index = _kernel_index(tree)
    if any(r not in index for r in regs):
        return None
    op_files = {index[r] for r in regs}
    defining = set(index.values())
    chosen: list[Path] = [p for p in tree.core_sources if not p.name.startswith(_OPTIONAL_CORE)]
    stems = {p.stem for p in op_files}
    for src in tree.kernel_sources:
        if src in op_files or src.name in _GENERIC_HELPERS:
            chosen.append(src)
        elif src not in defining and any(src.stem.startswith(s + "_") for s in stems):
            chosen.append(src)  # conv_common.cc for conv.cc, pooling_common.cc for pooling.cc, ...
    return chosen + _library_closure(tree, [p for p in chosen if p in set(tree.kernel_sources)])


def _object_name(tree: TflmTree, src: Path) -> str:
    if src.is_relative_to(tree.root):
        rel = str(src.relative_to(tree.root).with_suffix(""))
    else:  # a third-party library source (CMSIS-NN)
        rel = "lib/" + str(src.with_suffix("")).lstrip("/")[-120:]
    return rel.replace("/", "__") + ".o"


def object_dir(tree: TflmTree, core: str, cache_dir: Path) -> Path:
    """One object directory per (TFLM tree, kernel set, core, flags, compiler): shared by every model."""
    key = _digest(
        TFLM_BUILD_FORMAT.encode(),
        _tree_key(tree),
        " ".join([*_cpu_flags(core), *CXXFLAGS, *CFLAGS, *tree.defines, CORE_OPT, KERNEL_OPT]).encode(),
        compiler_version().encode(),
    )
    return cache_dir / f"tflm-obj-{core}-{tree.kernels}-{key}"


def tflm_objects(
    tree: TflmTree, core: str, cache_dir: Path, sources: list[Path] | tuple[Path, ...] | None = None,
    jobs: int | None = None, progress: Progress | None = None,
) -> tuple[list[Path], bool]:
    """Object files of ``sources`` (default: the whole library) for ``core``, compiled on demand and cached
    one by one under ``cache_dir`` (keyed by the TFLM tree, kernel set, flags and compiler). Returns
    (objects, all_cached)."""
    obj_dir = object_dir(tree, core, cache_dir)
    obj_dir.mkdir(parents=True, exist_ok=True)
    kernels = set(tree.kernel_sources) | set(tree.library_sources)
    wanted = list(sources) if sources is not None else [*tree.core_sources, *tree.kernel_sources]
    objects: list[Path] = []
    todo: list[tuple[list[str], Path, Path]] = []
    for src in wanted:
        obj = obj_dir / _object_name(tree, src)
        objects.append(obj)
        if not obj.is_file():
            tmp = obj_dir / f".{obj.name}.{os.getpid()}.tmp.o"
            todo.append((_compile_cmd(tree, src, tmp, core, KERNEL_OPT if src in kernels else CORE_OPT), tmp, obj))

    done = [0]
    lock = threading.Lock()
    say = progress or (lambda _m: None)

    def compile_one(item: tuple[list[str], Path, Path]) -> subprocess.CompletedProcess[str]:
        cmd, tmp, obj = item
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode == 0:
            os.replace(tmp, obj)
        with lock:
            done[0] += 1
            n = done[0]
        if n == len(todo) or n % 10 == 0:
            say(f"tinyml: compiling TFLM ({tree.kernels} kernels, {core}): {n}/{len(todo)} files")
        return proc

    if todo:
        say(f"tinyml: compiling {len(todo)} TFLM files ({tree.kernels} kernels, {core}); "
            f"{len(objects) - len(todo)} already cached")
        with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
            results = list(pool.map(compile_one, todo))
        failures = [(item, proc) for item, proc in zip(todo, results, strict=True) if proc.returncode != 0]
        if failures:
            (cmd, tmp, _), proc = failures[0]
            lines = (proc.stdout + proc.stderr).splitlines()
            errors = [ln for ln in lines if "error" in ln] or lines
            for (_, t, _), _ in failures:
                t.unlink(missing_ok=True)
            raise FirmwareError(
                f"compiling TFLM source {Path(cmd[-3]).name} failed ({len(failures)} of {len(todo)} files): "
                f"{errors[0] if errors else ''}",
                stage="compile",
                output=lines[-20:],
                fix="check that TFLM_ROOT and its downloads (flatbuffers version) belong to the same TFLM revision",
            )
    return objects, not todo


_UNDEFINED_RE = re.compile(r"undefined reference to [`']([^']+)'")


def _link(cmd: list[str]) -> list[str] | None:
    """Run the link; None on success, else every line the linker printed."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirmwareError(f"link failed: {exc}", stage="link") from exc
    return None if proc.returncode == 0 else (proc.stdout + proc.stderr).splitlines()


def _undefined_symbols(lines: list[str]) -> set[str]:
    """Unqualified names of the symbols the linker could not find (``tflite::kConvInputTensor`` ->
    ``kConvInputTensor``, ``tflite::Foo(int)`` -> ``Foo``)."""
    names = set()
    for match in _UNDEFINED_RE.finditer("\n".join(lines)):
        symbol = match.group(1).split("(")[0].replace("vtable for ", "").strip()
        names.add(symbol.split("::")[-1])
    return {n for n in names if re.fullmatch(r"\w+", n)}


def _sources_mentioning(names: set[str], candidates: list[Path]) -> list[Path]:
    """Candidate sources whose text names one of ``names`` (a superset of the files defining them)."""
    pattern = re.compile(r"\b(" + "|".join(sorted(map(re.escape, names))) + r")\b")
    return [p for p in candidates if pattern.search(p.read_text(errors="replace"))]


# The op resolver's translation unit is compiled once per set of operators, and almost all of its cost is
# TFLM's headers (micro_mutable_op_resolver.h includes every kernel header): parsed once into a GCC
# precompiled header per object directory (TFLM tree, kernel set, core, flags, compiler), each further
# resolver compiles in about a third of the time. The text below names only fixed TFLM headers.
_PCH_HEADER = "tinyml_resolver_pch.h"
_PCH_TEXT = (
    "// Generated by pytest-tinyml: the op resolver's heavy includes, precompiled (.gch) once per TFLM build.\n"
    "#include <new>\n"
    '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n'
)


def _resolver_pch(objs: Path, flags: list[str]) -> Path:
    """Where the precompiled resolver header for ``flags`` lives under ``objs`` (``X.h``, ``X.h.gch`` beside it)."""
    # Include directories are not part of the key: the per-build temporary one differs every time, and the
    # TFLM ones are fixed by the object directory. Everything else must match for GCC to use the .gch.
    key = _digest(_PCH_TEXT.encode(), " ".join(f for f in flags if not f.startswith("-I")).encode())
    return objs / f"pch-{key}" / _PCH_HEADER


def _build_resolver_pch(header: Path, flags: list[str]) -> None:
    """Precompile ``header`` (written here from the fixed text) to ``header.gch``. Runs in a thread, so it
    never raises: a failure leaves no .gch but a ``failed`` note (not retried for this TFLM build), and
    resolvers keep being compiled from the headers."""
    gch = header.with_name(header.name + ".gch")
    part = header.with_name(f".{gch.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        header.parent.mkdir(parents=True, exist_ok=True)
        if not header.is_file():
            part_h = header.with_name(f".{header.name}.{os.getpid()}.{threading.get_ident()}.tmp")
            part_h.write_text(_PCH_TEXT, encoding="ascii")
            os.replace(part_h, header)
        proc = subprocess.run([GXX, *flags, "-x", "c++-header", str(header), "-o", str(part)],
                              capture_output=True, text=True, timeout=600, check=False)
        if proc.returncode == 0:
            os.replace(part, gch)
            return
        part.unlink(missing_ok=True)
        header.with_name("failed").write_text(proc.stderr[-2000:], errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        try:
            part.unlink(missing_ok=True)
            header.with_name("failed").touch()
        except OSError:
            pass


def _compile_with_pch(header: Path, flags: list[str], src: Path, obj: Path) -> bool:
    """Compile ``src`` with the precompiled ``header`` force-included; False (nothing written) when GCC
    would not use the .gch (``-Werror=invalid-pch``: a stale or foreign file is removed) or the compile
    failed, so the caller compiles without it and reports any real error."""
    cmd = [GXX, *flags, "-Winvalid-pch", "-Werror=invalid-pch", "-include", str(header), "-c", str(src),
           "-o", str(obj)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        obj.unlink(missing_ok=True)
        return False
    if proc.returncode != 0:
        obj.unlink(missing_ok=True)
        if "invalid-pch" in proc.stderr:
            with contextlib.suppress(OSError):
                header.with_name(header.name + ".gch").unlink(missing_ok=True)
        return False
    return True


def build_tflm_app(
    model: bytes,
    machine: str,
    core: str,
    cache_dir: Path,
    *,
    arena_bytes: int = 0,
    tree: TflmTree | None = None,
    progress: Progress | None = None,
    script: Path | None = None,
) -> BuildOutput:
    """Link ``tflm_main.cc`` + the op resolver export() generates for ``model`` against TFLM.

    The firmware reads the model from the input block (see firmware/app/harness.h), so the ELF depends on
    the model only through its set of operators: every model with the same operators (and arena size)
    shares one ELF, cached by content.

    ``script`` is the board's generated linker script (:func:`pytest_tinyml.emulate.build.board_script`);
    None links for the QEMU machine's own map.

    ``arena_bytes`` becomes ``TINYML_ARENA_SIZE``; 0 lets the harness use all free RAM of the board.
    Only the TFLM kernels the model's ops register are compiled (objects are cached one by one); when the
    link misses symbols, the TFLM sources naming them are added and the link retried (as a last resort
    the whole library).
    """
    from pytest_tinyml.analysis.model import parse_model
    from pytest_tinyml.emulate.export import export, resolver_source, tflm_method

    tree = tree or tflm_tree()
    fw = firmware_dir()
    harness_dir, harness_cached = build_library(core, cache_dir)
    boards = fw / "boards"
    script = script or boards / MACHINES[machine].linker_script
    main_src = fw / "app" / "tflm_main.cc"
    key = _digest(
        TFLM_BUILD_FORMAT.encode(),
        _tree_key(tree),
        harness_dir.name.encode(),
        resolver_source([op.name for op in parse_model(bytes(model), "<model>").ops]).encode(),
        str(int(arena_bytes)).encode(),
        main_src.read_bytes(),
        (fw / "app" / "tflm_resolver.cc").read_bytes(),
        (fw / "app" / "harness.h").read_bytes(),
        script.read_bytes(),
        (boards / "sections.ld").read_bytes(),
        machine.encode(),
        " ".join([*_cpu_flags(core), *CXXFLAGS, *tree.defines, CORE_OPT]).encode(),
        compiler_version().encode(),
    )
    final = cache_dir / f"tflm-app-{machine}-{core}-{tree.kernels}-{key}"
    if (final / "app.elf").is_file():
        return BuildOutput(final / "app.elf", True, harness_cached, final)
    tmp = Path(tempfile.mkdtemp(prefix=".tflm-app-", dir=cache_dir))
    pch_job: threading.Thread | None = None
    try:
        exported = export(model, tmp, arena_bytes=int(arena_bytes))
        methods = sorted({m for m in (tflm_method(op) for op in exported.ops) if m})
        cpu = _cpu_flags(core)
        incs = [f"-I{tmp}", f"-I{fw / 'app'}", *[f"-I{p}" for p in tree.includes]]
        # tflm_main.o depends on no model (only the arena size): compiled once per TFLM build. The resolver
        # TU depends on the model's set of operators: compiled once per set. Both cached with the objects.
        objs = object_dir(tree, core, cache_dir)
        resolver_src = fw / "app" / "tflm_resolver.cc"
        for src, name, parts in (
            (main_src, "tflm_main.o", (main_src.read_bytes(), (fw / "app" / "harness.h").read_bytes(),
                                       str(int(arena_bytes)).encode())),
            (resolver_src, "tflm_resolver.o", (resolver_src.read_bytes(), exported.resolver.read_bytes())),
        ):
            cached_obj = objs / f"app-{Path(name).stem}-{_digest(*parts)}.o"
            if not cached_obj.is_file():
                objs.mkdir(parents=True, exist_ok=True)
                part = cached_obj.with_name(f".{cached_obj.name}.{os.getpid()}.tmp.o")
                if progress is not None:
                    progress(f"tinyml: compiling {src.name} ({tree.kernels} kernels, {core})")
                flags = [*cpu, CORE_OPT, *CXXFLAGS, *tree.defines, *incs]
                pch = _resolver_pch(objs, flags)
                if src != resolver_src or not (pch.with_name(pch.name + ".gch").is_file()
                                               and _compile_with_pch(pch, flags, src, part)):
                    if src == resolver_src and pch_job is None and not pch.with_name("failed").exists():
                        # No precompiled header yet (the first set of operators of this TFLM build): make
                        # one alongside the rest of this build, for the next sets.
                        if progress is not None:
                            progress("tinyml: precompiling the op resolver's TFLM headers (once per TFLM build)")
                        pch_job = threading.Thread(target=_build_resolver_pch, args=(pch, flags), daemon=True)
                        pch_job.start()
                    _run([GXX, *flags, "-c", str(src), "-o", str(part)], "compile")
                os.replace(part, cached_obj)
            shutil.copyfile(cached_obj, tmp / name)
        link_cmd = link_command(
            GXX,
            cpu,
            boards,
            script,
            tmp,
            [harness_dir / "startup.o", harness_dir / "harness.o", tmp / "tflm_main.o", tmp / "tflm_resolver.o",
             tmp / "libtflm.a"],
        )
        lib_cached = True
        selection = select_sources(tree, methods)
        everything = [*tree.core_sources, *tree.kernel_sources]
        library = _library_index(tree)
        for _round in range(64):
            objects, cached = tflm_objects(tree, core, cache_dir, selection, progress=progress)
            lib_cached = lib_cached and cached
            (tmp / "libtflm.a").unlink(missing_ok=True)
            _run(["arm-none-eabi-ar", "rcs", str(tmp / "libtflm.a"), *map(str, objects)], "archive")
            lines = _link(link_cmd)
            if lines is None:
                break
            missing = _undefined_symbols(lines)
            if selection is None or not missing:
                raise FirmwareError(
                    f"linking against TFLM failed: {next((ln for ln in lines if 'error' in ln.lower()), lines[-1:])}",
                    stage="link",
                    output=lines[-20:],
                )
            extra = sorted({library[n] for n in missing if n in library} - set(selection))
            if not extra:
                extra = _sources_mentioning(missing, [p for p in everything if p not in selection])
            selection = [*selection, *extra] if extra else None  # nothing found: compile the whole library
        else:
            raise FirmwareError("linking against TFLM did not converge", stage="link", output=[])
        (tmp / "libtflm.a").unlink(missing_ok=True)
        _publish(tmp, final)
    finally:
        if pch_job is not None:
            pch_job.join()  # its compiler ends within its own timeout; no process outlives the build
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return BuildOutput(final / "app.elf", False, harness_cached and lib_cached, final)


@dataclass(frozen=True)
class RuntimeChoice:
    """Which firmware runtime a run uses, with the TFLM tree for ``tflm`` and, for a fallback, why."""

    runtime: str  # "tflm" or "tinyml"
    tree: TflmTree | None
    kernels: str  # the TFLM kernel set asked for (also recorded when falling back)
    note: str  # "" when the requested/default runtime runs; else the reason for the fallback


_UNAVAILABLE: dict[tuple[str, ...], NotEvaluable] = {}  # one failed source lookup per process and setting


def choose_runtime(
    requested: str | None,
    *,
    core: str,
    kernels: str | None,
    sources_dir: Path,
    offline: bool = False,
    mirror: str | None = None,
    progress: Progress | None = None,
) -> RuntimeChoice:
    """``tflm`` when TFLM sources and ``arm-none-eabi-g++`` are available, else ``tinyml`` with the reason.

    ``requested="tflm"`` raises NotEvaluable instead of falling back; ``"tinyml"`` never looks for TFLM.
    A failed lookup (no network, digest mismatch...) is remembered for the rest of the process, so one
    session tries a download once."""
    kset = resolve_kernels(kernels, core)
    if requested == "tinyml":
        return RuntimeChoice("tinyml", None, kset, "")
    memo = (str(sources_dir), kset, core, str(offline), mirror or "", os.environ.get(TFLM_ENV, ""))
    exc = _UNAVAILABLE.get(memo)
    if exc is None:
        try:
            tree = tflm_tree(None, kernels=kset, core=core, cache_dir=sources_dir, offline=offline, mirror=mirror,
                             progress=progress)
            return RuntimeChoice("tflm", tree, kset, "")
        except NotEvaluable as err:
            exc = _UNAVAILABLE[memo] = err
    if requested == "tflm":
        raise exc
    return RuntimeChoice("tinyml", None, kset, f"real TFLM unavailable ({exc.reason}); fix: {exc.enable}")
