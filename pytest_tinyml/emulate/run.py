"""Run the firmware under QEMU (or Renode) and read back outputs, memory and instruction counts.

Instruction counting: QEMU runs with ``-icount shift=0``, so its virtual clock advances exactly 1 ns per
executed instruction. The firmware reads SysTick (clocked by the emulated core clock, ``Machine.systick_hz``)
before and after each inference, so ``instructions = ticks * 1e9 / systick_hz``; the resolution is one
tick (40 instructions on the 25 MHz MPS2 boards, ~6 on the 168 MHz Netduino). At start-up the firmware also
times a loop of exactly 200,000 instructions and reports it (``calibration_instructions``), which checks
that the conversion holds on this QEMU build. The timer-read overhead is measured and subtracted.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pytest_tinyml.emulate.build import build_app, footprint
from pytest_tinyml.emulate.errors import FirmwareError
from pytest_tinyml.emulate.ops import unsupported_ops
from pytest_tinyml.emulate.toolchain import (
    CORES,
    MACHINES,
    QEMU,
    LatencyEstimate,
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
    # executed instructions by timing class from the QEMU plugin (emulate/insn_plugin.py), per inference and
    # per operator; None with ``counts_note`` saying why (no host compiler, Renode, plugin failure)
    instruction_counts: Any = None
    counts_note: str = ""


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


def _parse(lines: list[str]) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for line in lines:
        if not line.startswith("TM:"):
            continue
        tag, _, rest = line[3:].partition(" ")
        msg = ""
        if " msg=" in rest:
            rest, _, msg = rest.partition(" msg=")
        values = dict(_KV.findall(rest))
        if msg:
            values["msg"] = msg
        if tag == "FAULT":
            values["msg"] = rest
        found[tag] = values
    return found


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


def qemu_command(machine: str, elf: Path, extra: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The QEMU command line; ``extra`` is appended (e.g. the ``-plugin`` arguments)."""
    return [
        QEMU,
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "null",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        "shift=0",
        "-kernel",
        str(elf),
        *extra,
    ]


def _emulate(cmd: list[str], cwd: Path, timeout: float) -> tuple[int, list[str]]:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        raise FirmwareError(
            f"emulator did not finish within {timeout:g} s",
            stage="timeout",
            output=out.splitlines()[-20:],
            fix="raise the timeout or run fewer samples",
        ) from exc
    except OSError as exc:
        raise FirmwareError(f"cannot start {cmd[0]}: {exc}", stage="emulate", output=[]) from exc
    return proc.returncode, (proc.stdout + proc.stderr).splitlines()


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
    count_classes: bool = True,
    flash_cache: tuple[int, int, int] = (16, 1, 0),
    tflm_tree: Any = None,
    progress: Any = None,
) -> FirmwareResult:
    """Build (cached) and run the model on an emulated Cortex-M for every input sample in one run.

    ``runtime`` picks the inference code linked into the firmware: ``"tinyml"`` (this project's int8
    runtime, the default) or ``"tflm"`` (real TensorFlow Lite Micro compiled from ``$TFLM_ROOT``, see
    :mod:`pytest_tinyml.emulate.tflm_build`); None reads ``$TINYML_FIRMWARE_RUNTIME``. ``arena_bytes``
    (TFLM only) is the tensor arena given to TFLM; 0 gives it all free RAM of the board. ``tflm_tree``
    (a :class:`~pytest_tinyml.emulate.tflm_build.TflmTree`: sources and kernel set) defaults to
    ``$TFLM_ROOT`` with reference kernels.
    ``count_classes`` loads the instruction-class plugin (QEMU only); ``flash_cache`` is the board's flash
    read cache (line bytes, lines, ways) the plugin models for flash wait states.
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
    in_specs, out_specs = _io_specs(info)
    payload = _pack_inputs(list(inputs), in_specs)
    cache_dir = Path(cache_dir).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    if runtime == "tflm":
        from pytest_tinyml.emulate.tflm_build import build_tflm_app

        built = build_tflm_app(data, machine, core, cache_dir, arena_bytes=arena_bytes, tree=tree, progress=progress)
    else:
        built = build_app(data, machine, core, cache_dir)
    m = MACHINES[machine]
    with tempfile.TemporaryDirectory(prefix="run-", dir=cache_dir) as tmp:
        run_dir = Path(tmp)
        (run_dir / "tm_input.bin").write_bytes(payload)
        t0 = time.perf_counter()
        counts_file = run_dir / "tm_classes.txt"
        extra, counts_note = _plugin_args(count_classes, emulator, cache_dir, built.elf, counts_file, flash_cache)
        if emulator == "qemu":
            rc, lines = _emulate(qemu_command(machine, built.elf, extra), run_dir, timeout)
        else:
            from pytest_tinyml.emulate.renode import run_renode

            rc, lines = run_renode(built.elf, machine, run_dir, timeout)
        emulate_seconds = time.perf_counter() - t0
        tags = _parse(lines)
        if "ERROR" in tags:
            e = tags["ERROR"]
            stage = e.get("stage", "emulate")
            op = e.get("opname", "-")
            where = f"op {e.get('op')} ({op})" if op != "-" else None
            raise FirmwareError(e.get("msg", "firmware reported an error"), stage=stage, output=lines[-20:], where=where)
        if "FAULT" in tags:
            raise FirmwareError(f"CPU fault: {tags['FAULT'].get('msg', '')}", stage="invoke", output=lines[-20:])
        if rc != 0 or "RESULT" not in tags:
            raise FirmwareError(f"emulator exited with code {rc} without a result", stage="emulate", output=lines[-20:])
        raw = (run_dir / "tm_output.bin").read_bytes()
        counts, counts_note = _read_counts(extra, counts_file, counts_note)
    res, inf, cal, arena = tags["RESULT"], tags.get("INFO", {}), tags.get("CAL", {}), tags.get("ARENA", {})
    samples = int(res["samples"])
    if samples != len(inputs):
        raise FirmwareError(f"firmware ran {samples} of {len(inputs)} samples", stage="io", output=lines[-20:])
    outputs_all = _split_outputs(raw, out_specs, samples, lines)
    per_tick = 1e9 / m.systick_hz  # instructions per SysTick tick under -icount shift=0
    ipi = int(res["ticks_total"]) * per_tick / samples if samples else 0.0
    fp = footprint(built.elf)
    clock = clock_hz or m.default_clock_hz
    return FirmwareResult(
        outputs=[o[0] for o in outputs_all],
        arena_bytes=int(inf.get("arena", 0)),
        stack_bytes=int(res["stack"]),
        static_ram_bytes=fp.static_ram_bytes,
        text_bytes=fp.text_bytes,
        rodata_bytes=fp.rodata_bytes,
        flash_bytes=fp.flash_bytes,
        instructions_per_inference=ipi,
        machine=machine,
        elf_path=built.elf,
        build_cached=built.cached,
        seconds=time.perf_counter() - start,
        core=core,
        emulator=emulator,
        samples=samples,
        activation_bytes=int(inf.get("activations", 0)),
        persistent_bytes=int(inf.get("persistent", 0)),
        model_bytes=len(data),
        instructions_min=int(res["ticks_min"]) * per_tick,
        instructions_max=int(res["ticks_max"]) * per_tick,
        calibration_instructions=int(cal.get("ticks", 0)) * per_tick,
        clock_hz=clock,
        latency=latency_estimate(ipi, core, clock) if samples else None,
        all_outputs=outputs_all,
        emulate_seconds=emulate_seconds,
        log=lines,
        runtime=runtime,
        instruction_counts=counts,
        counts_note=counts_note,
        kernels=getattr(tree, "kernels", "") if runtime == "tflm" else "",
        arena_min_bytes=int(arena.get("min", 0)),
        arena_used_at=int(arena.get("used_at", 0)),
    )


def _plugin_args(
    wanted: bool, emulator: str, cache_dir: Path, elf: Path, out: Path, flash_cache: tuple[int, int, int]
) -> tuple[list[str], str]:
    """The ``-plugin`` arguments, or none and the reason."""
    if not wanted:
        return [], "instruction-class counting not requested"
    if emulator != "qemu":
        return [], f"{emulator} has no instruction-class plugin: only the total instruction count is known"
    from pytest_tinyml.emulate.insn_plugin import PluginUnavailable, build_plugin, flash_range, plugin_args

    try:
        plugin = build_plugin(cache_dir / "qemu-plugins")
    except PluginUnavailable as exc:
        return [], str(exc)
    line, lines, ways = flash_cache
    return plugin_args(plugin, out, flash=flash_range(elf), line_bytes=line, lines=lines, ways=ways), ""


def _read_counts(extra: list[str], path: Path, note: str) -> tuple[Any, str]:
    if not extra:
        return None, note
    from pytest_tinyml.emulate.insn_plugin import parse_counts

    try:
        text = path.read_text(errors="replace") if path.stat().st_size <= (4 << 20) else ""
        counts = parse_counts(text)
    except (OSError, ValueError) as exc:
        return None, f"the instruction-class plugin gave no usable counts: {exc}"
    if counts.inferences == 0:
        return None, "the firmware executed no inference markers (runtime built without firmware/runtime/tm_prof.h?)"
    return counts, ""


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
