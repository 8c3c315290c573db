"""Building the firmware harness against real TensorFlow Lite Micro (opt-in, ``TFLM_ROOT``).

The project ships no TFLM code. When the environment variable ``TFLM_ROOT`` names a tflite-micro source
checkout whose third-party headers were fetched the way TFLM's own Makefile does (``make -f
tensorflow/lite/micro/tools/make/Makefile third_party_downloads`` puts flatbuffers, gemmlowp and ruy under
``tensorflow/lite/micro/tools/make/downloads``), this module compiles TFLM's reference kernels for a
Cortex-M core with ``arm-none-eabi-g++`` and links ``firmware/app/tflm_main.cc`` with the files
:func:`pytest_tinyml.emulate.export` generates (model array, op resolver, arena size). The ELF speaks the
same semihosting protocol as the tinyml-rt harness, so :func:`pytest_tinyml.emulate.run_firmware` runs it
unchanged (``runtime="tflm"``).

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from pytest_tinyml.emulate.build import (
    BuildOutput,
    _digest,
    _publish,
    _run,
    build_library,
    core_cflags,
    link_command,
)
from pytest_tinyml.emulate.errors import FirmwareError
from pytest_tinyml.emulate.toolchain import CORES, GCC, MACHINES, compiler_version, firmware_dir
from pytest_tinyml.errors import NotEvaluable

TFLM_ENV = "TFLM_ROOT"
GXX = "arm-none-eabi-g++"
DOWNLOADS = Path("tensorflow/lite/micro/tools/make/downloads")
TFLM_BUILD_FORMAT = "tflm-build-1"
SETUP_HINT = (
    "set TFLM_ROOT to a tflite-micro checkout (github.com/tensorflow/tflite-micro) in which "
    "`make -f tensorflow/lite/micro/tools/make/Makefile third_party_downloads` has been run"
)

_COMMON = (
    "-fno-unwind-tables",
    "-fno-asynchronous-unwind-tables",
    "-ffunction-sections",
    "-fdata-sections",
    "-fmessage-length=0",
    "-DTF_LITE_STATIC_MEMORY",
    "-DTF_LITE_DISABLE_X86_NEON",
    "-Wno-unused-parameter",
)
CXXFLAGS = ("-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics", *_COMMON)
CFLAGS = ("-std=c17", *_COMMON)
CORE_OPT = "-Os"
KERNEL_OPT = "-O2"

_SUBDIRS = ("tensorflow/lite/micro", "tensorflow/lite/micro/arena_allocator",
            "tensorflow/lite/micro/memory_planner", "tensorflow/lite/micro/tflite_bridge")
_KERNEL_RE = re.compile(r"\$\(TENSORFLOW_ROOT\)(tensorflow/lite/micro/kernels/[\w/]+\.(?:cc|c))")


@dataclass(frozen=True)
class TflmTree:
    root: Path
    includes: tuple[Path, ...]
    core_sources: tuple[Path, ...]
    kernel_sources: tuple[Path, ...]


def tflm_root(root: str | os.PathLike[str] | None = None) -> Path | None:
    """``root`` if given, else ``$TFLM_ROOT``, else None."""
    value = os.fspath(root) if root is not None else os.environ.get(TFLM_ENV, "")
    return Path(value).expanduser().resolve() if value else None


def _is_test(path: Path) -> bool:
    return path.stem.endswith("_test") or "benchmark" in path.stem


def _kernel_sources(root: Path) -> list[Path]:
    sources_inc = root / "tensorflow/lite/micro/tools/make/sources.inc"
    found: list[Path] = []
    if sources_inc.is_file():
        text = sources_inc.read_text(errors="replace")
        start = text.find("MICROLITE_CC_KERNEL_SRCS :=")
        if start >= 0:
            block = text[start : text.find("\n\n", start) if "\n\n" in text[start:] else len(text)]
            found = [root / rel for rel in _KERNEL_RE.findall(block)]
    if not found:  # older/newer layout: every non-test kernel file
        found = [p for p in sorted((root / "tensorflow/lite/micro/kernels").glob("*.cc")) if not _is_test(p)]
    return [p for p in found if p.is_file()]


def _core_sources(root: Path) -> list[Path]:
    out: list[Path] = []
    for sub in _SUBDIRS:
        out += [p for p in sorted((root / sub).glob("*.cc")) if not _is_test(p)]
    tf = root / "tensorflow"
    skip = (tf / "lite/micro", tf / "lite/experimental")
    for path in sorted(tf.rglob("*")):
        if path.suffix not in (".cc", ".c") or any(path.is_relative_to(s) for s in skip):
            continue
        if path == tf / "lite/array.cc" or _is_test(path):
            continue
        out.append(path)
    return out


def tflm_tree(root: str | os.PathLike[str] | None = None) -> TflmTree:
    """Locate TFLM sources and third-party headers; raises NotEvaluable saying exactly what is missing."""
    base = tflm_root(root)
    if base is None:
        raise NotEvaluable(f"{TFLM_ENV} is not set: real TFLM firmware builds need a tflite-micro checkout", SETUP_HINT)
    if not (base / "tensorflow/lite/micro/micro_interpreter.h").is_file():
        raise NotEvaluable(
            f"{TFLM_ENV}={base} is not a tflite-micro checkout (tensorflow/lite/micro/micro_interpreter.h missing)",
            SETUP_HINT,
        )
    dl = base / DOWNLOADS
    needed = {
        "flatbuffers": dl / "flatbuffers/include/flatbuffers/flatbuffers.h",
        "gemmlowp": dl / "gemmlowp/fixedpoint/fixedpoint.h",
        "ruy": dl / "ruy/ruy/profiler/instrumentation.h",
    }
    missing = [name for name, path in needed.items() if not path.is_file()]
    if missing:
        raise NotEvaluable(
            f"TFLM third-party headers missing under {dl}: {', '.join(missing)}",
            SETUP_HINT,
        )
    if shutil.which(GXX) is None:
        raise NotEvaluable(f"{GXX} not found", "apt-get install -y g++-arm-none-eabi libstdc++-arm-none-eabi-newlib")
    includes = (base, dl, dl / "gemmlowp", dl / "flatbuffers/include", dl / "ruy")
    return TflmTree(base, includes, tuple(_core_sources(base)), tuple(_kernel_sources(base)))


def _tree_key(tree: TflmTree) -> bytes:
    """Cheap identity of the tree: path, size and mtime of every source and header that can be included."""
    h = hashlib.sha256(str(tree.root).encode())
    roots = [tree.root / "tensorflow", tree.root / "signal"] + [
        tree.root / DOWNLOADS / d for d in ("flatbuffers/include", "gemmlowp/fixedpoint", "ruy/ruy/profiler")
    ]
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
        return [GCC, *_cpu_flags(core), opt, *CFLAGS, *incs, "-c", str(src), "-o", str(obj)]
    return [GXX, *_cpu_flags(core), opt, *CXXFLAGS, *incs, "-c", str(src), "-o", str(obj)]


_OPTIONAL_CORE = ("test_helper", "fake_", "mock_", "recording_", "hexdump")
_GENERIC_HELPERS = ("kernel_util.cc", "micro_tensor_utils.cc")
_DEF_RE = re.compile(r"\bRegister_(\w+)\s*\(\s*\)\s*\{")


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


def _kernel_index(tree: TflmTree) -> dict[str, Path]:
    """``Register_X`` name -> kernel source defining it."""
    index: dict[str, Path] = {}
    for src in tree.kernel_sources:
        for name in _DEF_RE.findall(src.read_text(errors="replace")):
            index.setdefault(name, src)
    return index


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
    return chosen


def tflm_objects(
    tree: TflmTree, core: str, cache_dir: Path, sources: list[Path] | tuple[Path, ...] | None = None,
    jobs: int | None = None,
) -> tuple[list[Path], bool]:
    """Object files of ``sources`` (default: the whole library) for ``core``, compiled on demand and cached
    one by one under ``cache_dir`` (keyed by the TFLM tree, flags and compiler). Returns (objects, all_cached)."""
    key = _digest(
        TFLM_BUILD_FORMAT.encode(),
        _tree_key(tree),
        " ".join([*_cpu_flags(core), *CXXFLAGS, *CFLAGS, CORE_OPT, KERNEL_OPT]).encode(),
        compiler_version().encode(),
    )
    obj_dir = cache_dir / f"tflm-obj-{core}-{key}"
    obj_dir.mkdir(parents=True, exist_ok=True)
    kernels = set(tree.kernel_sources)
    wanted = list(sources) if sources is not None else [*tree.core_sources, *tree.kernel_sources]
    objects: list[Path] = []
    todo: list[tuple[list[str], Path, Path]] = []
    for src in wanted:
        rel = src.relative_to(tree.root)
        obj = obj_dir / (str(rel.with_suffix("")).replace("/", "__") + ".o")
        objects.append(obj)
        if not obj.is_file():
            tmp = obj_dir / f".{obj.name}.{os.getpid()}.tmp.o"
            todo.append((_compile_cmd(tree, src, tmp, core, KERNEL_OPT if src in kernels else CORE_OPT), tmp, obj))

    def compile_one(item: tuple[list[str], Path, Path]) -> subprocess.CompletedProcess[str]:
        cmd, tmp, obj = item
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
        if proc.returncode == 0:
            os.replace(tmp, obj)
        return proc

    if todo:
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


def build_tflm_app(
    model: bytes,
    machine: str,
    core: str,
    cache_dir: Path,
    *,
    arena_bytes: int = 0,
    tree: TflmTree | None = None,
) -> BuildOutput:
    """Link ``tflm_main.cc`` + the export() files for ``model`` against TFLM (cached by content).

    ``arena_bytes`` becomes ``TINYML_ARENA_SIZE``; 0 lets the harness use all free RAM of the board.
    Only the TFLM kernels the model's ops register are compiled (objects are cached one by one); when the
    link misses symbols, the TFLM sources naming them are added and the link retried (as a last resort
    the whole library).
    """
    from pytest_tinyml.emulate.export import export, tflm_method

    tree = tree or tflm_tree()
    fw = firmware_dir()
    harness_dir, harness_cached = build_library(core, cache_dir)
    boards = fw / "boards"
    script = boards / MACHINES[machine].linker_script
    main_src = fw / "app" / "tflm_main.cc"
    key = _digest(
        TFLM_BUILD_FORMAT.encode(),
        _tree_key(tree),
        harness_dir.name.encode(),
        model,
        str(int(arena_bytes)).encode(),
        main_src.read_bytes(),
        (fw / "app" / "harness.h").read_bytes(),
        script.read_bytes(),
        (boards / "sections.ld").read_bytes(),
        machine.encode(),
        " ".join([*_cpu_flags(core), *CXXFLAGS, CORE_OPT]).encode(),
        compiler_version().encode(),
    )
    final = cache_dir / f"tflm-app-{machine}-{core}-{key}"
    if (final / "app.elf").is_file():
        return BuildOutput(final / "app.elf", True, harness_cached, final)
    tmp = Path(tempfile.mkdtemp(prefix=".tflm-app-", dir=cache_dir))
    try:
        exported = export(model, tmp, arena_bytes=int(arena_bytes))
        methods = sorted({m for m in (tflm_method(op) for op in exported.ops) if m})
        cpu = _cpu_flags(core)
        incs = [f"-I{tmp}", f"-I{fw / 'app'}", *[f"-I{p}" for p in tree.includes]]
        _run([GCC, *core_cflags(core), "-c", str(tmp / "model_data.c"), "-o", str(tmp / "model_data.o")], "compile")
        _run([GXX, *cpu, CORE_OPT, *CXXFLAGS, *incs, "-c", str(main_src), "-o", str(tmp / "tflm_main.o")], "compile")
        link_cmd = link_command(
            GXX,
            cpu,
            boards,
            script,
            tmp,
            [harness_dir / "startup.o", harness_dir / "harness.o", tmp / "tflm_main.o", tmp / "model_data.o",
             tmp / "libtflm.a"],
        )
        lib_cached = True
        selection = select_sources(tree, methods)
        everything = [*tree.core_sources, *tree.kernel_sources]
        while True:
            objects, cached = tflm_objects(tree, core, cache_dir, selection)
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
            extra = _sources_mentioning(missing, [p for p in everything if p not in selection])
            selection = [*selection, *extra] if extra else None  # nothing found: compile the whole library
        (tmp / "libtflm.a").unlink(missing_ok=True)
        _publish(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return BuildOutput(final / "app.elf", False, harness_cached and lib_cached, final)
