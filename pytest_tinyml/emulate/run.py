"""Run the firmware under QEMU (or Renode) and read back outputs, memory and instruction counts.

Guest-host protocol v1 (firmware/app/harness.h), the same for every emulator and with no semihosting:
the emulator writes an input block (model + samples, CRC-checked by the firmware) into the board's flash
after the firmware image; the firmware answers on the board's UART with CRC-framed ``TM:`` lines and ends
with ``TM:END``; the host reads the UART from a file, stops the emulator at the marker, and verifies every
line. Each emulator runs in an empty temporary directory, in its own process group (killed on every exit
path), under a wall-time limit and an address-space limit, and QEMU additionally under ``-sandbox on``
(seccomp, no spawning) where the QEMU build supports it.

Instruction counting: QEMU runs with ``-icount shift=0``, so its virtual clock advances exactly 1 ns per
executed instruction. The firmware reads SysTick (clocked by the emulated core clock, ``Machine.systick_hz``)
before and after each inference, so ``instructions = ticks * 1e9 / systick_hz``; the resolution is one
tick (40 instructions on the 25 MHz MPS2 boards, ~6 on the 168 MHz Netduino). Renode: see renode.py. At
start-up the firmware also times a loop of exactly 200,000 instructions and reports it
(``calibration_instructions``), which checks that the conversion holds on this emulator build. The
timer-read overhead is measured and subtracted.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import signal
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pytest_tinyml.emulate.blocks import use_block
from pytest_tinyml.emulate.build import board_script, build_app, elf_symbols, footprint
from pytest_tinyml.emulate.errors import FirmwareError
from pytest_tinyml.emulate.ops import unsupported_ops
from pytest_tinyml.emulate.toolchain import (
    CORES,
    MACHINES,
    QEMU,
    LatencyEstimate,
    MemoryMap,
    Uart,
    latency_estimate,
    machine_can_run,
    toolchain_status,
)
from pytest_tinyml.errors import NotEvaluable

_DTYPES = {"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32, "float32": np.float32}
_KV = re.compile(r"(\w+)=(\S+)")


@dataclass
class FirmwareResult:
    outputs: list[np.ndarray]  # first model output per sample, the tensor's dtype and shape
    arena_bytes: int  # activations + runtime bookkeeping, as planned by the firmware runtime
    stack_bytes: int  # stack high-water mark during inference (stack painting)
    static_ram_bytes: int  # .data + .bss
    text_bytes: int
    rodata_bytes: int  # includes the model flatbuffer
    flash_bytes: int  # text + rodata + data initialisers
    instructions_per_inference: float  # mean over the samples
    machine: str
    elf_path: Path
    build_cached: bool
    seconds: float  # wall time of the whole call
    core: str = "cortex-m4"
    emulator: str = "qemu"
    samples: int = 0
    activation_bytes: int = 0
    persistent_bytes: int = 0
    model_bytes: int = 0
    instructions_min: float = 0.0
    instructions_max: float = 0.0
    calibration_instructions: float = 0.0  # measured length of a 200,000-instruction loop
    clock_hz: int = 0
    latency: LatencyEstimate | None = None
    all_outputs: list[tuple[np.ndarray, ...]] = field(default_factory=list)  # every output per sample
    emulate_seconds: float = 0.0
    log: list[str] = field(default_factory=list)
    runtime: str = "tinyml"  # "tinyml" (this project's runtime) or "tflm" (real TFLM)
    kernels: str = ""  # TFLM kernel set ("cmsis_nn" or "reference"); "" for the tinyml runtime
    arena_min_bytes: int = 0  # TFLM: smallest arena AllocateTensors() accepted on the target (bisection, 16 B)
    arena_used_at: int = 0  # TFLM: the arena size arena_bytes (arena_used_bytes()) was taken with
    runtime_note: str = ""  # why this runtime ran (e.g. the reason real TFLM was unavailable)
    emulator_command: str = ""  # the exact command of the (first) emulator run, shell-quoted
    emulator_script: str = ""  # Renode: the .resc the command includes (QEMU: "")
    memory_map: str = ""  # the flash/RAM regions the firmware was linked for, and where they come from
    runs: int = 1  # emulator runs (samples are split when they do not fit the board's flash at once)
    executed_instructions: int = 0  # the emulator's own counter for the whole run (Renode), 0 if unknown
    # executed instructions by timing class from the QEMU plugin (emulate/insn_plugin.py), per inference and
    # per operator; None with ``counts_note`` saying why (no host compiler, Renode, plugin failure)
    instruction_counts: Any = None
    counts_note: str = ""
    input_block: str = ""  # the input block file the recorded command loads (<cache>/firmware/inputs/...)
    input_block_samples: int = 0  # the samples in it (the first emulator run's)


def _io_specs(info: Any) -> tuple[list[Any], list[Any]]:
    return list(info.inputs), list(info.outputs)


def _pack_inputs(inputs: list[Any], specs: list[Any]) -> bytes:
    chunks = []
    for n, sample in enumerate(inputs):
        arrays = list(sample) if isinstance(sample, (tuple, list)) else [sample]
        if len(arrays) != len(specs):
            raise ValueError(f"sample {n}: model has {len(specs)} inputs, got {len(arrays)} arrays")
        for spec, arr in zip(specs, arrays, strict=True):
            want = _DTYPES.get(spec.dtype)
            a = np.asarray(arr)
            if want is None:
                raise ValueError(f"input tensor type {spec.dtype} is not supported by the firmware harness")
            if a.dtype != want:
                raise ValueError(f"sample {n}: input dtype {a.dtype}, model input {spec.name!r} wants {spec.dtype}")
            if a.size != int(np.prod(spec.shape)):
                raise ValueError(f"sample {n}: input has {a.size} elements, model input {spec.name!r} has shape {spec.shape}")
            chunks.append(np.ascontiguousarray(a).tobytes())
    return b"".join(chunks)


# ------------------------------------------------------------------------------------ protocol v1
INPUT_MAGIC = 0x42494D54  # "TMIB"
INPUT_VERSION = 1
HEADER_BYTES = 64
_LINE = re.compile(rb"^(TM:[^\r\n]*) \*([0-9a-f]{8})$")
_HEXDATA = re.compile(r"^[0-9a-f]*$")


def input_block(model: bytes, samples: bytes, count: int, sample_bytes: int) -> bytes:
    """The input block the emulator writes into guest memory (layout: firmware/app/harness.h)."""
    model_off = HEADER_BYTES
    samples_off = model_off + ((len(model) + 15) & ~15)
    total = samples_off + len(samples)
    payload = model + bytes(samples_off - model_off - len(model)) + samples
    fields = [INPUT_MAGIC, INPUT_VERSION, HEADER_BYTES, total, model_off, len(model), samples_off, count,
              sample_bytes, zlib.crc32(payload), 0, 0, 0, 0, 0]
    head = b"".join(int(v).to_bytes(4, "little") for v in fields)
    return head + zlib.crc32(head).to_bytes(4, "little") + payload


@dataclass
class Protocol:
    tags: dict[str, dict[str, str]]
    data: bytes
    log: list[str]
    ended: bool


def parse_uart(raw: bytes, max_data: int) -> Protocol:
    """Decode the firmware's UART stream. Every ``TM:`` line must carry a valid CRC-32; output bytes are
    bounded by ``max_data``; free text (e.g. TFLM's log) is kept, at most 200 lines."""
    tags: dict[str, dict[str, str]] = {}
    data = bytearray()
    log: list[str] = []
    ended = False
    for n, line in enumerate(raw.split(b"\n")):
        line = line.rstrip(b"\r")
        if not line.startswith(b"TM:"):
            if line.strip():
                log.append(line[:300].decode("latin-1"))
                del log[:-200]
            continue
        m = _LINE.match(line)
        if m is None or zlib.crc32(m.group(1)) != int(m.group(2), 16):
            raise FirmwareError(
                f"UART line {n + 1} is garbled (no valid CRC-32): {line[:80].decode('latin-1')!r}",
                stage="protocol", output=log[-20:],
                fix="the firmware's output was corrupted; rerun, and report it if it repeats",
            )
        text = m.group(1)[3:].decode("latin-1")
        tag, _, rest = text.partition(" ")
        if tag == "D":
            if not _HEXDATA.match(rest) or len(rest) % 2:
                raise FirmwareError(f"UART line {n + 1}: bad output data", stage="protocol", output=log[-20:])
            if len(data) + len(rest) // 2 > max_data:
                raise FirmwareError(f"the firmware sent more than the expected {max_data} output bytes",
                                    stage="protocol", output=log[-20:])
            data += bytes.fromhex(rest)
            continue
        msg = ""
        if " msg=" in rest:
            rest, _, msg = rest.partition(" msg=")
        values = dict(_KV.findall(rest))
        if msg:
            values["msg"] = msg
        if tag == "FAULT":
            values["msg"] = rest
        log.append(text)
        del log[:-200]
        tags.setdefault(tag, values)  # the first of each tag counts
        if tag == "END":
            ended = True
            break
    if ended:
        end = tags["END"]
        if int(end.get("out_bytes", "-1")) != len(data) or int(end.get("out_crc", "0"), 16) != zlib.crc32(data):
            raise FirmwareError("the output bytes received do not match the firmware's count/CRC-32",
                                stage="protocol", output=log[-20:])
    return Protocol(tags, bytes(data), log, ended)


# ----------------------------------------------------------------------------- running an emulator
QEMU_MEMORY_LIMIT = 2 << 30  # address space of the QEMU process (RLIMIT_AS)


@functools.lru_cache(maxsize=1)
def qemu_sandbox_supported() -> bool:
    """True when this QEMU build has seccomp (``-sandbox on``); asked once per process."""
    try:
        proc = subprocess.run(
            [QEMU, "-M", "none", "-display", "none", "-nodefaults", "-sandbox", "on", "-kernel", "/nonexistent"],
            capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "sandbox" not in proc.stderr.lower()


def qemu_command(machine: str, elf: Path, block: Path, block_addr: int, serial: Path,
                 extra_args: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The one place that builds QEMU's command line. No semihosting, no monitor, no network, no default
    devices; the UART goes to ``serial``; the input block is written raw at ``block_addr``.
    ``extra_args`` are appended (e.g. ``-plugin`` options)."""
    cmd = [QEMU, "-M", machine, "-display", "none", "-nodefaults", "-no-user-config", "-monitor", "none",
           "-nic", "none", "-serial", f"file:{serial}"]
    if qemu_sandbox_supported():
        cmd += ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
    cmd += ["-icount", "shift=0", "-kernel", str(elf),
            "-device", f"loader,file={block},addr={block_addr:#x},force-raw=on", *extra_args]
    return cmd


def _limits(memory_limit: int) -> Any:
    def apply() -> None:  # runs in the child between fork and exec
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        try:  # Linux: the emulator dies with the process that started it, even if that one is SIGKILLed
            import ctypes

            ctypes.CDLL(None).prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    return apply


#: Free-text lines after which the firmware never reaches its end marker: TFLM's TFLITE_ABORT (built with
#: TF_LITE_MCU_DEBUG_LOG) prints "HALTED" and spins. The host stops the emulator there instead of waiting
#: for the timeout.
ABORT_LINES = (b"HALTED",)


@dataclass
class EmulatorRun:
    uart: bytes
    returncode: int | None  # None: stopped by the host after the end marker
    stderr: list[str]
    seconds: float


def run_emulator(cmd: list[str], cwd: Path, serial: Path, timeout: float, *, max_bytes: int,
                 memory_limit: int = QEMU_MEMORY_LIMIT, env: dict[str, str] | None = None,
                 marker: bytes = b"TM:END ",
                 on_end: Callable[[subprocess.Popen[bytes], Path], None] | None = None) -> EmulatorRun:
    """Start ``cmd`` in ``cwd`` (its own process group, limited), wait until ``serial`` holds a complete
    ``marker`` line, the process exits, ``max_bytes`` arrive, or ``timeout`` passes; always kill the group.
    ``on_end(proc, console_log)`` runs after the marker, before the kill (stdin is then a pipe to it)."""
    start = time.perf_counter()
    errlog = cwd.parent / (cwd.name + ".stderr")
    try:
        with open(errlog, "wb") as err:
            proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.PIPE if on_end else subprocess.DEVNULL, stdout=err,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    preexec_fn=_limits(memory_limit), env=env)
    except OSError as exc:
        raise FirmwareError(f"cannot start {cmd[0]}: {exc}", stage="emulate", output=[]) from exc
    data = b""
    rc: int | None = None
    try:
        while True:
            rc = proc.poll()
            if serial.exists():
                with open(serial, "rb") as fh:
                    data = fh.read(max_bytes + 1)
            pos = data.find(b"\n" + marker) if not data.startswith(marker) else 0
            if pos >= 0 and data.find(b"\n", pos + 1) >= 0:
                rc = None if proc.poll() is None else proc.returncode
                if on_end is not None and rc is None:
                    on_end(proc, errlog)
                break
            if any((b"\n" + line + b"\n") in b"\n" + data for line in ABORT_LINES):
                rc = None if proc.poll() is None else proc.returncode
                break
            if len(data) > max_bytes:
                raise FirmwareError(f"the firmware wrote more than {max_bytes} bytes to the UART", stage="protocol",
                                    output=[], fix="the model's outputs are larger than expected; report this")
            if rc is not None:
                break
            if time.perf_counter() - start > timeout:
                raise FirmwareError(
                    f"emulator did not finish within {timeout:g} s",
                    stage="timeout",
                    output=data.decode("latin-1").splitlines()[-20:],
                    fix="raise the timeout or run fewer samples",
                )
            time.sleep(0.005 if time.perf_counter() - start < 1 else 0.02)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        if proc.stdin is not None:
            proc.stdin.close()
    with open(errlog, "rb") as fh:
        stderr = fh.read(64 << 10).decode("latin-1").splitlines()[-40:]
    return EmulatorRun(data, rc, stderr, time.perf_counter() - start)


RUNTIME_ENV = "TINYML_FIRMWARE_RUNTIME"
RUNTIMES = ("tinyml", "tflm")


def resolve_runtime(runtime: str | None = None) -> str:
    """``runtime`` if given, else ``$TINYML_FIRMWARE_RUNTIME``, else ``"tinyml"``."""
    import os

    value = runtime or os.environ.get(RUNTIME_ENV, "") or "tinyml"
    if value not in RUNTIMES:
        raise ValueError(f"unknown firmware runtime {value!r}; known: {', '.join(RUNTIMES)}")
    return value


def _check_args(machine: str, core: str, emulator: str) -> None:
    if machine not in MACHINES:
        raise ValueError(f"unknown machine {machine!r}; known: {', '.join(sorted(MACHINES))}")
    if core not in CORES:
        raise ValueError(f"unknown core {core!r}; known: {', '.join(sorted(CORES))}")
    if emulator not in ("qemu", "renode"):
        raise ValueError(f"unknown emulator {emulator!r} (qemu or renode)")
    if not machine_can_run(machine, core):
        raise NotEvaluable(
            f"QEMU machine {machine} ({MACHINES[machine].cpu}) cannot execute code built for {core}",
            "pick a machine whose CPU implements the core's instruction set, e.g. mps2-an386 for cortex-m0plus..m4",
        )


@dataclass(frozen=True)
class Target:
    """Where the firmware runs: the emulator, its machine/platform, the memory map linked for, the UART."""

    emulator: str
    name: str  # QEMU machine or Renode platform (.repl)
    memory: MemoryMap
    uart: Uart
    per_tick: float  # instructions per SysTick tick
    note: str  # how the memory map was chosen


def resolve_target(machine: str, emulator: str, memory: MemoryMap | None, platform: str | None,
                   core: str = "cortex-m4") -> Target:
    """Pick the memory map and UART for a run. A board map (``memory``) is used when the emulated machine
    models all of it; otherwise the QEMU proxy machine's own map is used and the note says so."""
    from pytest_tinyml.emulate.toolchain import RENODE_FOR_MACHINE, RENODE_PLATFORMS

    if emulator == "renode":
        repl = platform or RENODE_FOR_MACHINE.get(machine)
        if repl is None or repl not in RENODE_PLATFORMS:
            raise NotEvaluable(
                f"no Renode platform is known for {platform or machine}",
                f"use one of {', '.join(sorted(RENODE_PLATFORMS))} (boards.yaml field 'renode'), or --tinyml-emulator qemu",
            )
        p = RENODE_PLATFORMS[repl]
        from pytest_tinyml.emulate.toolchain import platform_can_run

        if not platform_can_run(p, core):
            raise NotEvaluable(
                f"Renode's {repl} ({p.cpu}) does not run code built for {core} correctly",
                "run this board under QEMU (--tinyml-emulator qemu)",
            )
        mem = memory or MACHINES[machine].memory
        if mem is None or not (mem.flash.within(p.modelled) and mem.ram.within(p.modelled)):
            raise NotEvaluable(f"the memory map {mem.key() if mem else '?'} is not modelled by Renode's {repl}",
                               "give the board a Renode platform that models its memory")
        from pytest_tinyml.emulate.renode import instructions_per_tick

        return Target("renode", repl, mem, p.uart, instructions_per_tick(p), f"board map ({mem.source}) on Renode {repl}")
    m = MACHINES[machine]
    assert m.memory is not None and m.uart is not None
    per_tick = 1e9 / m.systick_hz
    if memory is not None and memory.flash.within(m.modelled) and memory.ram.within(m.modelled):
        return Target("qemu", machine, memory, m.uart, per_tick, f"board map ({memory.source}) on QEMU {machine}")
    note = f"QEMU {machine}'s own map ({m.memory.source})"
    if memory is not None:
        note += f"; the board's map ({memory.key()}) is not modelled by this QEMU machine"
    return Target("qemu", machine, m.memory, m.uart, per_tick, note)


def run_firmware(
    model: bytes,
    inputs: list[np.ndarray],
    *,
    machine: str = "mps2-an386",
    core: str = "cortex-m4",
    clock_hz: int | None = None,
    cache_dir: Path,
    timeout: float = 300.0,
    emulator: str = "qemu",
    runtime: str | None = None,
    arena_bytes: int = 0,
    tflm_tree: Any = None,
    progress: Any = None,
    memory: MemoryMap | None = None,
    platform: str | None = None,
    extra_args: tuple[str, ...] = (),
    count_classes: bool = True,
    flash_cache: tuple[int, int, int] = (16, 1, 0),
    inputs_keep: int | None = None,
) -> FirmwareResult:
    """Build (cached) and run the model on an emulated Cortex-M for every input sample.

    ``runtime`` picks the inference code linked into the firmware: ``"tinyml"`` (this project's int8
    runtime, the default) or ``"tflm"`` (real TensorFlow Lite Micro compiled from ``$TFLM_ROOT``, see
    :mod:`pytest_tinyml.emulate.tflm_build`); None reads ``$TINYML_FIRMWARE_RUNTIME``. ``arena_bytes``
    (TFLM only) is the tensor arena given to TFLM; 0 gives it all free RAM of the board. ``tflm_tree``
    (a :class:`~pytest_tinyml.emulate.tflm_build.TflmTree`: sources and kernel set) defaults to
    ``$TFLM_ROOT`` with reference kernels. ``memory`` is the board's flash/RAM map (boards.yaml);
    ``platform`` the Renode platform description for ``emulator="renode"``; ``extra_args`` go to the end of
    QEMU's command line. ``count_classes`` loads the instruction-class plugin (QEMU only; data reads from the
    flash region of the memory map are counted through ``flash_cache``, the board's flash read cache as
    (line bytes, lines, ways)). ``inputs_keep``: bytes of input blocks kept under ``cache_dir/inputs`` for
    rerunning the recorded command by hand (:mod:`pytest_tinyml.emulate.blocks`; None: 256 MiB).
    """
    start = time.perf_counter()
    _check_args(machine, core, emulator)
    runtime = resolve_runtime(runtime)
    status = toolchain_status(emulator)
    if not status.ok:
        raise NotEvaluable(f"firmware toolchain missing: {', '.join(status.missing)}", status.hint)
    from pytest_tinyml.analysis.model import parse_model

    data = bytes(model)
    info = parse_model(data, "<model>")
    tree = tflm_tree
    if runtime == "tflm" and tree is None:
        from pytest_tinyml.emulate.tflm_build import tflm_tree as locate

        tree = locate()  # NotEvaluable with the reason when TFLM_ROOT is unset or incomplete
    bad = unsupported_ops(info) if runtime == "tinyml" else []
    if bad:
        raise NotEvaluable(
            f"the firmware runtime does not implement {', '.join(bad)}",
            "use int8 builtin ops only (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, pools, SOFTMAX, ADD, MUL, "
            "MEAN, PAD, CONCATENATION, LOGISTIC, RESHAPE, TRANSPOSE, QUANTIZE, DEQUANTIZE), or run real TFLM: "
            "runtime=\"tflm\" with TFLM_ROOT set",
        )
    target = resolve_target(machine, emulator, memory, platform, core)
    in_specs, out_specs = _io_specs(info)
    payload = _pack_inputs(list(inputs), in_specs)
    count = len(inputs)
    sample_bytes = len(payload) // count if count else 0
    out_per_sample = sum(int(np.prod(s.shape)) * np.dtype(_DTYPES.get(s.dtype, np.int8)).itemsize for s in out_specs)
    cache_dir = Path(cache_dir).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if runtime == "tflm":
        from pytest_tinyml.emulate.tflm_build import build_tflm_app

        script = board_script(cache_dir, target.memory, target.uart, f"{target.note}, UART {target.uart.kind}")
        built = build_tflm_app(data, machine, core, cache_dir, arena_bytes=arena_bytes, tree=tree, progress=progress,
                               script=script)
    else:
        built = build_app(core, cache_dir, target.memory, target.uart, f"{target.note}, UART {target.uart.kind}")
    syms = elf_symbols(built.elf, ("__tm_input_start", "__tm_input_end"))
    if len(syms) != 2:
        raise FirmwareError("the firmware has no input block symbols (__tm_input_start/__tm_input_end)", stage="link")
    block_addr, capacity = syms["__tm_input_start"], syms["__tm_input_end"] - syms["__tm_input_start"]
    fp = footprint(built.elf)
    model_room = HEADER_BYTES + ((len(data) + 15) & ~15)
    if model_room + sample_bytes > capacity:
        need = model_room + sample_bytes - capacity
        raise FirmwareError(
            f"the model ({len(data):,} bytes) and one input sample ({sample_bytes:,} bytes) do not fit in the "
            f"flash left after the firmware ({capacity:,} bytes of {target.memory.flash.length:,}): "
            f"short by {need:,} bytes",
            stage="link",
            fix="pick a board with more flash or make the model smaller",
        )
    per_run = max(1, (capacity - model_room) // sample_bytes) if sample_bytes else max(1, count)
    plugin, counts_note = _plugin(count_classes, target.emulator, cache_dir)
    # the instruction-class plugin slows QEMU about 4x: it counts the first CLASS_SAMPLES inferences in a run
    # of their own, the other samples run without it (their outputs and SysTick counts are used as before)
    first = min(count, CLASS_SAMPLES, per_run) if plugin is not None else 0
    chunks = ([(0, first)] if first else []) + [
        (i, min(count, i + per_run)) for i in range(first, count, per_run)
    ] or [(0, 0)]
    raw = bytearray()
    tags_all: list[dict[str, dict[str, str]]] = []
    log: list[str] = []
    command = ""
    first_block, first_samples = "", 0
    script_text = ""
    emulate_seconds = 0.0
    executed = 0
    deadline = time.perf_counter() + timeout
    flash = (target.memory.flash.origin, target.memory.flash.origin + target.memory.flash.length)
    counts_runs: list[Any] = []
    with tempfile.TemporaryDirectory(prefix="run-", dir=cache_dir) as tmp:
        for lo, hi in chunks:
            io_dir = Path(tmp) / f"io-{lo}"
            cwd = Path(tmp) / f"cwd-{lo}"  # empty working directory of the emulator
            io_dir.mkdir()
            cwd.mkdir()
            block_bytes = input_block(data, payload[lo * sample_bytes : hi * sample_bytes], hi - lo, sample_bytes)
            # the block is not pruned while the emulator runs on it (blocks.use_block)
            with use_block(cache_dir / "inputs", block_bytes, inputs_keep) as block:
                serial = io_dir / "uart.txt"
                max_data = (hi - lo) * out_per_sample
                max_uart = 64 * 1024 + max_data * 3 + (hi - lo) * 64
                left = deadline - time.perf_counter()
                if left <= 0:
                    raise FirmwareError(f"emulator did not finish within {timeout:g} s", stage="timeout",
                                        fix="raise the timeout or run fewer samples")
                if target.emulator == "qemu":
                    counts_file = io_dir / "tm_classes.txt"
                    args = tuple(extra_args)
                    counting = plugin if lo == 0 else None  # only the first run carries the plugin
                    if counting is not None:
                        from pytest_tinyml.emulate.insn_plugin import plugin_args

                        line, lines, ways = flash_cache
                        args += tuple(plugin_args(counting, counts_file, flash=flash, line_bytes=line, lines=lines,
                                                  ways=ways))
                    cmd = qemu_command(machine, built.elf, block, block_addr, serial, args)
                    run = run_emulator(cmd, cwd, serial, left, max_bytes=max_uart,
                                       memory_limit=QEMU_MEMORY_LIMIT + MACHINES[machine].fixed_ram_bytes)
                    if counting is not None:
                        counts_runs.append(_read_counts(counts_file))
                else:
                    from pytest_tinyml.emulate.renode import renode_run

                    cmd, run, count_executed = renode_run(target.name, built.elf, block, block_addr, serial, cwd, left,
                                                          max_bytes=max_uart, vector_table=target.memory.flash.origin)
                    executed += count_executed
                    script_text = script_text or (io_dir / "tinyml.resc").read_text()
            if not command:  # the recorded command is the first run's: its block can be written again
                command, first_block, first_samples = shlex.join(cmd), str(block), hi - lo
            emulate_seconds += run.seconds
            proto = parse_uart(run.uart, max_data)
            log += proto.log
            _raise_reported(proto, run, log)
            raw += proto.data
            tags_all.append(proto.tags)
    counts, counts_note = _merge_counts(plugin, counts_runs, counts_note)
    systick = target.emulator != "qemu" or MACHINES[machine].systick_counts
    tags = tags_all[0]
    inf, cal, arena = tags.get("INFO", {}), tags.get("CAL", {}), tags.get("ARENA", {})
    results = [t["RESULT"] for t in tags_all]
    samples = sum(int(r["samples"]) for r in results)
    if samples != count:
        raise FirmwareError(f"firmware ran {samples} of {count} samples", stage="io", output=log[-20:])
    outputs_all = _split_outputs(bytes(raw), out_specs, samples, log)
    per_tick = target.per_tick
    ticks_total = sum(int(r["ticks_total"]) for r in results)
    ipi = ticks_total * per_tick / samples if samples else 0.0
    if not systick:
        # this machine's SysTick does not count (toolchain.Machine.systick_counts): the plugin's exact count of
        # the first inferences, or unknown (0) without it
        ipi = counts.instructions if counts is not None else 0.0
        per_tick = 0.0  # min / max / calibration are SysTick figures: not known here
        if counts is None:
            counts_note = (f"{counts_note}; QEMU {machine}'s SysTick does not count under the harness, so the "
                           "instructions per inference are unknown without the plugin")
    clock = clock_hz or MACHINES[machine].default_clock_hz
    model_flash = len(data)  # both firmwares read the model from the input block in flash
    return FirmwareResult(
        outputs=[o[0] for o in outputs_all],
        arena_bytes=int(inf.get("arena", 0)),
        stack_bytes=max(int(r["stack"]) for r in results),
        static_ram_bytes=fp.static_ram_bytes,
        text_bytes=fp.text_bytes,
        rodata_bytes=fp.rodata_bytes + model_flash,
        flash_bytes=fp.flash_bytes + model_flash,
        instructions_per_inference=ipi,
        machine=machine,
        elf_path=built.elf,
        build_cached=built.cached,
        seconds=time.perf_counter() - start,
        core=core,
        emulator=target.emulator,
        samples=samples,
        activation_bytes=int(inf.get("activations", 0)),
        persistent_bytes=int(inf.get("persistent", 0)),
        model_bytes=len(data),
        instructions_min=min(int(r["ticks_min"]) for r in results) * per_tick,
        instructions_max=max(int(r["ticks_max"]) for r in results) * per_tick,
        calibration_instructions=int(cal.get("ticks", 0)) * per_tick,
        clock_hz=clock,
        latency=latency_estimate(ipi, core, clock) if samples else None,
        all_outputs=outputs_all,
        emulate_seconds=emulate_seconds,
        log=log,
        runtime=runtime,
        kernels=getattr(tree, "kernels", "") if runtime == "tflm" else "",
        arena_min_bytes=int(arena.get("min", 0)),
        arena_used_at=int(arena.get("used_at", 0)),
        emulator_command=command,
        input_block=first_block,
        input_block_samples=first_samples,
        emulator_script=script_text,
        memory_map=f"{target.memory.key()}: {target.note}",
        runs=len(chunks),
        executed_instructions=executed,
        instruction_counts=counts,
        counts_note=counts_note,
    )


#: Inferences the instruction-class plugin counts (the first ones of a run; their mean is the profile).
CLASS_SAMPLES = 8


def _plugin(wanted: bool, emulator: str, cache_dir: Path) -> tuple[Path | None, str]:
    """The compiled instruction-class plugin, or None and the reason."""
    if not wanted:
        return None, "instruction-class counting not requested"
    if emulator != "qemu":
        return None, f"{emulator} has no instruction-class plugin: only the total instruction count is known"
    from pytest_tinyml.emulate.insn_plugin import PluginUnavailable, build_plugin

    try:
        return build_plugin(cache_dir / "qemu-plugins"), ""
    except PluginUnavailable as exc:
        return None, str(exc)


def _read_counts(path: Path) -> Any:
    """The plugin's counts for one emulator run, or the reason (str) they are unusable."""
    from pytest_tinyml.emulate.insn_plugin import parse_counts

    try:
        if path.stat().st_size > (4 << 20):
            return "the instruction-class plugin wrote an oversized counts file"
        return parse_counts(path.read_text(errors="replace"))
    except (OSError, ValueError) as exc:
        return f"the instruction-class plugin gave no usable counts: {exc}"


def _merge_counts(plugin: Path | None, runs: list[Any], note: str) -> tuple[Any, str]:
    """One per-inference counts record from the emulator runs (weighted by their inferences)."""
    if plugin is None:
        return None, note
    for r in runs:
        if isinstance(r, str):
            return None, r
    from pytest_tinyml.emulate.insn_plugin import merge_counts

    merged = merge_counts(runs)
    if merged is None or merged.inferences == 0:
        return None, "the firmware executed no inference markers (runtime built without firmware/runtime/tm_prof.h?)"
    return merged, ""


def restore_block(fw: FirmwareResult, model: bytes, inputs: list[np.ndarray], cache_dir: Path,
                  inputs_keep: int | None = None) -> bool:
    """For a cached run: the input block its recorded command loads (``fw.input_block``), written again if it
    was pruned and marked used either way, so the command stays runnable. The block is rebuilt from the model
    and the first ``fw.input_block_samples`` inputs and must hash to the recorded name. Never raises; False
    when the block could not be restored (the firmware items then say the command's block is missing)."""
    from pytest_tinyml.analysis.model import parse_model
    from pytest_tinyml.emulate.blocks import block_name
    from pytest_tinyml.errors import TinyMLError

    if not fw.input_block:
        return False
    folder = Path(cache_dir).resolve() / "inputs"
    recorded = Path(fw.input_block)
    n = fw.input_block_samples
    if recorded.parent != folder or not 0 <= n <= len(inputs):
        return False  # recorded under another cache directory
    try:
        data = bytes(model)
        in_specs, _ = _io_specs(parse_model(data, "<model>"))
        payload = _pack_inputs(list(inputs[:n]), in_specs)
        block = input_block(data, payload, n, len(payload) // n if n else 0)
        if block_name(block) != recorded.name:
            return False
        with use_block(folder, block, inputs_keep):
            pass
    except (OSError, ValueError, TinyMLError):
        return False
    return True


def _raise_reported(proto: Protocol, run: EmulatorRun, log: list[str]) -> None:
    tags = proto.tags
    if "ERROR" in tags:
        e = tags["ERROR"]
        stage = e.get("stage", "emulate")
        op = e.get("opname", "-")
        where = f"op {e.get('op')} ({op})" if op != "-" else None
        raise FirmwareError(e.get("msg", "firmware reported an error"), stage=stage, output=log[-20:], where=where)
    if "FAULT" in tags:
        raise FirmwareError(f"CPU fault: {tags['FAULT'].get('msg', '')}", stage="invoke", output=log[-20:])
    if not proto.ended and any(line.strip() in ("HALTED",) for line in proto.log):
        raise FirmwareError(
            "the firmware aborted (TFLM's TFLITE_ABORT printed HALTED) before its end marker", stage="invoke",
            output=log[-20:], fix="see the TFLM log lines above; report the model if TFLM should run it",
        )
    if not proto.ended:
        tail = (log + run.stderr)[-20:]
        raise FirmwareError(
            f"the emulator stopped (exit code {run.returncode}) before the firmware's end marker", stage="emulate",
            output=tail,
        )
    if "RESULT" not in tags:
        raise FirmwareError(f"the firmware ended (status {tags['END'].get('status')}) without a result",
                            stage="emulate", output=log[-20:])


def _split_outputs(raw: bytes, specs: list[Any], samples: int, lines: list[str]) -> list[tuple[np.ndarray, ...]]:
    dtypes = [np.dtype(_DTYPES.get(s.dtype, np.int8)) for s in specs]
    sizes = [int(np.prod(s.shape)) * d.itemsize for s, d in zip(specs, dtypes, strict=True)]
    per_sample = sum(sizes)
    if len(raw) != per_sample * samples:
        raise FirmwareError(
            f"output file has {len(raw)} bytes, expected {samples} x {per_sample}", stage="io", output=lines[-20:]
        )
    result = []
    pos = 0
    for _ in range(samples):
        outs = []
        for spec, dt, size in zip(specs, dtypes, sizes, strict=True):
            outs.append(np.frombuffer(raw[pos : pos + size], dtype=dt).reshape(tuple(spec.shape)).copy())
            pos += size
        result.append(tuple(outs))
    return result
