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
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pytest_tinyml._util.toolcache import Entry, ToolCache
from pytest_tinyml.emulate.build import (
    BuildOutput,
    build_library,
    content_digest,
    link_command,
    publish_dir,
    run_tool,
)
from pytest_tinyml.emulate.errors import FirmwareError
from pytest_tinyml.emulate.tflm_pch import PCH_HEADER, build_resolver_pch, compile_with_pch
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


def library_key(tree: TflmTree, core: str) -> str:
    """One TFLM library per (TFLM tree, kernel set, core, flags, compiler): shared by every model and project."""
    return content_digest(
        TFLM_BUILD_FORMAT.encode(),
        _tree_key(tree),
        " ".join([*_cpu_flags(core), *CXXFLAGS, *CFLAGS, *tree.defines, CORE_OPT, KERNEL_OPT]).encode(),
        compiler_version().encode(),
        (firmware_dir() / "app" / "tflm_main.cc").read_bytes(),
        (firmware_dir() / "app" / "harness.h").read_bytes(),
    )


#: TFLM sources that only its tests use: not part of the library.
_TEST_ONLY = ("test_helper", "fake_", "mock_")


def library_sources(tree: TflmTree) -> list[Path]:
    """Everything the TFLM library holds: the framework, every kernel of the kernel set and (CMSIS-NN)
    the library functions, as TFLM's Makefile builds ``libtensorflow-microlite.a``."""
    core = [p for p in tree.core_sources if not p.name.startswith(_TEST_ONLY)]
    return [*core, *tree.kernel_sources, *tree.library_sources]


def _main_flags(tree: TflmTree, core: str, generated: Path) -> list[str]:
    """Flags of the app's own translation units (tflm_main.cc, the resolver): ``generated`` holds the
    files :func:`pytest_tinyml.emulate.export.export` writes."""
    fw = firmware_dir()
    incs = [f"-I{generated}", f"-I{fw / 'app'}", *[f"-I{p}" for p in tree.includes]]
    return [*_cpu_flags(core), CORE_OPT, *CXXFLAGS, *tree.defines, *incs]


def _arena_header(arena_bytes: int) -> str:
    return (
        "/* Generated by pytest-tinyml: tensor arena size. */\n"
        "#ifndef TINYML_ARENA_H\n#define TINYML_ARENA_H\n"
        f"#define TINYML_ARENA_SIZE {int(arena_bytes)}u\n"
        "#endif\n"
    )


def _compile_all(items: list[tuple[list[str], Path]], what: str, jobs: int | None, say: Progress) -> None:
    """Run every compile command (in parallel); a failure raises naming the first failing source."""
    done = [0]
    lock = threading.Lock()

    def compile_one(item: tuple[list[str], Path]) -> subprocess.CompletedProcess[str]:
        cmd, _src = item
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc = subprocess.CompletedProcess(cmd, 1, "", str(exc))
        with lock:
            done[0] += 1
            n = done[0]
        if n == len(items) or n % 20 == 0:
            say(f"tinyml: compiling {what}: {n}/{len(items)} files")
        return proc

    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        results = list(pool.map(compile_one, items))
    failures = [(item, proc) for item, proc in zip(items, results, strict=True) if proc.returncode != 0]
    if failures:
        (_cmd, src), proc = failures[0]
        lines = (proc.stdout + proc.stderr).splitlines()
        errors = [ln for ln in lines if "error" in ln] or lines
        raise FirmwareError(
            f"compiling TFLM source {src.name} failed ({len(failures)} of {len(items)} files): "
            f"{errors[0] if errors else ''}",
            stage="compile",
            output=lines[-20:],
            fix="check that TFLM_ROOT and its downloads (flatbuffers version) belong to the same TFLM revision",
        )


def _make_library(tree: TflmTree, core: str, folder: Path, *, jobs: int | None, progress: Progress | None) -> None:
    """Build one library entry into ``folder``: ``libtflm.a`` (every source of :func:`library_sources`),
    ``tflm_main.o`` for the whole-RAM arena, and the op resolver's precompiled header ``pch/``."""
    say = progress or (lambda _m: None)
    sources = library_sources(tree)
    objs = folder / "obj"
    objs.mkdir()
    kernels = set(tree.kernel_sources) | set(tree.library_sources)
    items = [(_compile_cmd(tree, src, objs / _object_name(tree, src), core, KERNEL_OPT if src in kernels else CORE_OPT),
              src) for src in sources]
    generated = folder / "gen"
    generated.mkdir()
    (generated / "tinyml_arena.h").write_text(_arena_header(0), encoding="ascii")
    flags = _main_flags(tree, core, generated)
    main_src = firmware_dir() / "app" / "tflm_main.cc"
    items.append(([GXX, *flags, "-c", str(main_src), "-o", str(folder / "tflm_main.o")], main_src))
    say(f"tinyml: building the TFLM library once per core and kernel set ({tree.kernels} kernels, {core}): "
        f"{len(items)} files; then every model is a link")
    pch = folder / "pch" / PCH_HEADER
    pch_job = threading.Thread(target=build_resolver_pch, args=(pch, flags), daemon=True)
    pch_job.start()
    try:
        _compile_all(items, f"TFLM ({tree.kernels} kernels, {core})", jobs, say)
    finally:
        pch_job.join()  # its compiler ends within its own timeout
    run_tool(["arm-none-eabi-ar", "rcs", str(folder / "libtflm.a"),
              *sorted(str(p) for p in objs.iterdir())], "archive")
    shutil.rmtree(objs)
    shutil.rmtree(generated)


def tflm_library(tree: TflmTree, core: str, tools: ToolCache, *, jobs: int | None = None,
                 progress: Progress | None = None) -> contextlib.AbstractContextManager[Entry]:
    """The TFLM library entry for ``tree`` on ``core`` in the user-level cache, built once (held while the
    block runs: never pruned under a link)."""
    def waiting() -> None:
        if progress is not None:
            progress("tinyml: another process is building this TFLM library; waiting for it")

    return tools.entry("tflm-lib", f"{core}-{tree.kernels}-{library_key(tree, core)}",
                       lambda folder: _make_library(tree, core, folder, jobs=jobs, progress=progress),
                       on_wait=waiting)


def _link(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FirmwareError(f"link failed: {exc}", stage="link") from exc
    if proc.returncode != 0:
        lines = (proc.stdout + proc.stderr).splitlines()
        raise FirmwareError(
            f"linking against TFLM failed: {next((ln for ln in lines if 'error' in ln.lower()), lines[-1:])}",
            stage="link",
            output=lines[-20:],
        )


def _compile_app_unit(src: Path, flags: list[str], obj: Path, pch: Path | None) -> None:
    """Compile one of the app's own translation units into ``obj`` (with the precompiled resolver header
    when there is one GCC accepts)."""
    part = obj.with_name(f".{obj.name}.{os.getpid()}.tmp.o")
    if pch is None or not compile_with_pch(pch, flags, src, part):
        run_tool([GXX, *flags, "-c", str(src), "-o", str(part)], "compile")
    os.replace(part, obj)


def build_tflm_app(
    model: bytes,
    machine: str,
    core: str,
    cache_dir: Path,
    *,
    tools: ToolCache,
    arena_bytes: int = 0,
    tree: TflmTree | None = None,
    progress: Progress | None = None,
    script: Path | None = None,
) -> BuildOutput:
    """Link ``tflm_main.cc`` + the op resolver export() generates for ``model`` against the TFLM library.

    The firmware reads the model from the input block (see firmware/app/harness.h), so the ELF depends on
    the model only through its set of operators: every model with the same operators (and arena size)
    shares one ELF, cached by content under ``cache_dir``.

    The TFLM library (:func:`tflm_library`: every kernel of the kernel set, compiled once per core) and the
    harness live in the user-level cache ``tools``; a model's own work is its resolver's translation unit
    (with the precompiled header) and the link, which takes only the library members the resolver's
    operators reach.

    ``script`` is the board's generated linker script (:func:`pytest_tinyml.emulate.build.board_script`);
    None links for the QEMU machine's own map. ``arena_bytes`` becomes ``TINYML_ARENA_SIZE``; 0 lets the
    harness use all free RAM of the board (the library's own tflm_main.o).
    """
    from pytest_tinyml.analysis.model import parse_model
    from pytest_tinyml.emulate.export import export, resolver_source

    tree = tree or tflm_tree()
    fw = firmware_dir()
    boards = fw / "boards"
    script = script or boards / MACHINES[machine].linker_script
    main_src = fw / "app" / "tflm_main.cc"
    resolver_src = fw / "app" / "tflm_resolver.cc"
    lib_key = library_key(tree, core)
    with contextlib.ExitStack() as held:
        harness = held.enter_context(build_library(core, tools))
        key = content_digest(
            TFLM_BUILD_FORMAT.encode(),
            lib_key.encode(),
            harness.path.name.encode(),
            resolver_source([op.name for op in parse_model(bytes(model), "<model>").ops]).encode(),
            str(int(arena_bytes)).encode(),
            resolver_src.read_bytes(),
            script.read_bytes(),
            (boards / "sections.ld").read_bytes(),
            machine.encode(),
        )
        final = cache_dir / f"tflm-app-{machine}-{core}-{tree.kernels}-{key}"
        if (final / "app.elf").is_file():
            return BuildOutput(final / "app.elf", True, True, final)
        library = held.enter_context(tflm_library(tree, core, tools, progress=progress))
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".tflm-app-", dir=cache_dir))
        try:
            exported = export(model, tmp, arena_bytes=int(arena_bytes))
            flags = _main_flags(tree, core, tmp)
            pch = library.path / "pch" / PCH_HEADER
            usable_pch = pch if pch.with_name(pch.name + ".gch").is_file() else None
            # the resolver depends on the model's set of operators; tflm_main.o on the arena size only (the
            # library holds the whole-RAM one): both cached per project under cache_dir/tflm-units
            units = cache_dir / f"tflm-units-{lib_key}"
            units.mkdir(parents=True, exist_ok=True)
            resolver_obj = units / f"resolver-{content_digest(resolver_src.read_bytes(), exported.resolver.read_bytes())}.o"
            if not resolver_obj.is_file():
                if progress is not None:
                    progress(f"tinyml: compiling the op resolver ({tree.kernels} kernels, {core})")
                _compile_app_unit(resolver_src, flags, resolver_obj, usable_pch)
            if int(arena_bytes) == 0:
                main_obj = library.path / "tflm_main.o"
            else:
                main_obj = units / f"main-{int(arena_bytes)}.o"
                if not main_obj.is_file():
                    _compile_app_unit(main_src, flags, main_obj, None)
            link_cmd = link_command(
                GXX, _cpu_flags(core), boards, script, tmp,
                [harness.path / "startup.o", harness.path / "harness.o", main_obj, resolver_obj,
                 library.path / "libtflm.a"],
            )
            _link(link_cmd)
            publish_dir(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return BuildOutput(final / "app.elf", False, harness.cached and library.cached, final)
