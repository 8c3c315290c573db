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

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pytest_tinyml.emulate.build import (
    BuildOutput,
    build_library,
    content_digest,
    link_command,
    publish_dir,
    run_tool,
)
from pytest_tinyml.emulate.errors import FirmwareError
from pytest_tinyml.emulate.tflm_pch import build_resolver_pch, compile_with_pch, resolver_pch
from pytest_tinyml.emulate.tflm_select import library_index, select_sources
from pytest_tinyml.emulate.tflm_sources import pins, projects_for
from pytest_tinyml.emulate.tflm_tree import DOWNLOADS, GXX, TflmTree, tflm_tree
from pytest_tinyml.emulate.toolchain import CORES, GCC, MACHINES, compiler_version, firmware_dir
from pytest_tinyml.kinds import KernelSet

Progress = Callable[[str], None]

TFLM_BUILD_FORMAT = "tflm-build-2"

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
    if tree.kernels == KernelSet.CMSIS_NN:
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


def _object_name(tree: TflmTree, src: Path) -> str:
    if src.is_relative_to(tree.root):
        rel = str(src.relative_to(tree.root).with_suffix(""))
    else:  # a third-party library source (CMSIS-NN)
        rel = "lib/" + str(src.with_suffix("")).lstrip("/")[-120:]
    return rel.replace("/", "__") + ".o"


def object_dir(tree: TflmTree, core: str, cache_dir: Path) -> Path:
    """One object directory per (TFLM tree, kernel set, core, flags, compiler): shared by every model."""
    key = content_digest(
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
    key = content_digest(
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
            cached_obj = objs / f"app-{Path(name).stem}-{content_digest(*parts)}.o"
            if not cached_obj.is_file():
                objs.mkdir(parents=True, exist_ok=True)
                part = cached_obj.with_name(f".{cached_obj.name}.{os.getpid()}.tmp.o")
                if progress is not None:
                    progress(f"tinyml: compiling {src.name} ({tree.kernels} kernels, {core})")
                flags = [*cpu, CORE_OPT, *CXXFLAGS, *tree.defines, *incs]
                pch = resolver_pch(objs, flags)
                if src != resolver_src or not (pch.with_name(pch.name + ".gch").is_file()
                                               and compile_with_pch(pch, flags, src, part)):
                    if src == resolver_src and pch_job is None and not pch.with_name("failed").exists():
                        # No precompiled header yet (the first set of operators of this TFLM build): make
                        # one alongside the rest of this build, for the next sets.
                        if progress is not None:
                            progress("tinyml: precompiling the op resolver's TFLM headers (once per TFLM build)")
                        pch_job = threading.Thread(target=build_resolver_pch, args=(pch, flags), daemon=True)
                        pch_job.start()
                    run_tool([GXX, *flags, "-c", str(src), "-o", str(part)], "compile")
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
        library = library_index(tree)
        for _round in range(64):
            objects, cached = tflm_objects(tree, core, cache_dir, selection, progress=progress)
            lib_cached = lib_cached and cached
            (tmp / "libtflm.a").unlink(missing_ok=True)
            run_tool(["arm-none-eabi-ar", "rcs", str(tmp / "libtflm.a"), *map(str, objects)], "archive")
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
        publish_dir(tmp, final)
    finally:
        if pch_job is not None:
            pch_job.join()  # its compiler ends within its own timeout; no process outlives the build
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return BuildOutput(final / "app.elf", False, harness_cached and lib_cached, final)


