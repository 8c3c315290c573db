"""Build and run one firmware request on an emulator and read back outputs, memory and instruction counts.

:func:`execute` takes a :class:`~pytest_tinyml.emulate.request.FirmwareRequest`: it builds the firmware
(the project's runtime, or real TFLM through :mod:`pytest_tinyml.emulate.tflm_build`), splits the samples
into emulator runs that fit the board's flash, runs each (the adapters :mod:`~pytest_tinyml.emulate.qemu`
and :mod:`~pytest_tinyml.emulate.renode` build the command; :mod:`~pytest_tinyml.emulate.runner` runs it on
the process supervisor), decodes the UART (:mod:`~pytest_tinyml.emulate.protocol`) and returns the frozen
:class:`~pytest_tinyml.emulate.result.FirmwareResult`. :func:`run_firmware` is the same call with keyword
arguments (the library API). Each emulator runs in an empty temporary directory, in its own process
group, under a wall-time and an address-space limit, and QEMU additionally under ``-sandbox on`` where
the QEMU build supports it.

At start-up the firmware times a loop of exactly 200,000 instructions and reports it
(``calibration_instructions``), which checks that the SysTick-to-instructions conversion holds on this
emulator build (the resolution is one tick: 40 instructions on the 25 MHz MPS2 boards, ~6 on the 168 MHz
Netduino; Renode: see renode.py). The timer-read overhead is measured and subtracted.
"""

from __future__ import annotations

import contextlib
import shlex
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from pytest_tinyml._util.toolcache import ToolCache
from pytest_tinyml.emulate.blocks import use_block
from pytest_tinyml.emulate.build import board_script, build_app, elf_symbols, footprint
from pytest_tinyml.emulate.errors import FirmwareError, emulator_timeout
from pytest_tinyml.emulate.ops import unsupported_ops
from pytest_tinyml.emulate.placement import check_args, resolve_target
from pytest_tinyml.emulate.policy import resolve_runtime
from pytest_tinyml.emulate.protocol import (
    DTYPES,
    HEADER_BYTES,
    input_block,
    io_specs,
    pack_inputs,
    parse_uart,
    raise_reported,
    split_outputs,
)
from pytest_tinyml.emulate.qemu import (
    CLASS_SAMPLES,
    QEMU_MEMORY_LIMIT,
    counting_plugin,
    merge_run_counts,
    qemu_command,
    read_counts,
)
from pytest_tinyml.emulate.request import FirmwareRequest
from pytest_tinyml.emulate.result import FirmwareResult
from pytest_tinyml.emulate.runner import run_emulator
from pytest_tinyml.emulate.toolchain import MACHINES, MemoryMap, latency_estimate, toolchain_status
from pytest_tinyml.errors import NotEvaluable
from pytest_tinyml.kinds import Emulator, Runtime


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
    tools: ToolCache | None = None,
) -> FirmwareResult:
    """Build (cached) and run the model on an emulated Cortex-M for every input sample.

    ``runtime`` picks the inference code linked into the firmware: ``"tinyml"`` (this project's int8
    runtime, the default) or ``"tflm"`` (real TensorFlow Lite Micro compiled from ``$TFLM_ROOT``, see
    :mod:`pytest_tinyml.emulate.tflm_build`); None reads ``$TINYML_FIRMWARE_RUNTIME``. ``arena_bytes``
    (TFLM only) is the tensor arena given to TFLM; 0 gives it all free RAM of the board. ``tflm_tree``
    (a :class:`~pytest_tinyml.emulate.tflm_tree.TflmTree`: sources and kernel set) defaults to
    ``$TFLM_ROOT`` with reference kernels. ``memory`` is the board's flash/RAM map (boards.yaml);
    ``platform`` the Renode platform description for ``emulator="renode"``; ``extra_args`` go to the end of
    QEMU's command line. ``count_classes`` loads the instruction-class plugin (QEMU only; data reads from the
    flash region of the memory map are counted through ``flash_cache``, the board's flash read cache as
    (line bytes, lines, ways)). ``inputs_keep``: bytes of input blocks kept under ``cache_dir/inputs`` for
    rerunning the recorded command by hand (:mod:`pytest_tinyml.emulate.blocks`; None: 256 MiB).
    ``tools``: the user-level cache for the TFLM library, the runtime and the QEMU plugin (None: a
    ``tools`` folder under ``cache_dir``).
    """
    check_args(machine, core, emulator)
    chosen = resolve_runtime(runtime)
    request = FirmwareRequest(
        model=bytes(model), inputs=tuple(inputs), machine=machine, core=core, emulator=Emulator(emulator),
        runtime=chosen, tree=tflm_tree, memory=memory, platform=platform, clock_hz=clock_hz,
        flash_cache=flash_cache, arena_bytes=arena_bytes, count_classes=count_classes, timeout=timeout,
        extra_args=tuple(extra_args),
    )
    return execute(request, cache_dir=cache_dir, progress=progress, inputs_keep=inputs_keep, tools=tools)


def execute(request: FirmwareRequest, *, cache_dir: Path, progress: Any = None,
            inputs_keep: int | None = None, tools: ToolCache | None = None) -> FirmwareResult:
    """Build (cached) and run ``request`` on its emulator for every input sample (not the run cache: see
    :func:`pytest_tinyml.emulate.firmware.run`)."""
    start = time.perf_counter()
    machine, core, emulator, runtime = request.machine, request.core, request.emulator, request.runtime
    inputs, memory, platform = list(request.inputs), request.memory, request.platform
    timeout, extra_args, flash_cache = request.timeout, request.extra_args, request.flash_cache
    arena_bytes, clock_hz = request.arena_bytes, request.clock_hz
    check_args(machine, core, emulator)
    status = toolchain_status(emulator)
    if not status.ok:
        raise NotEvaluable(f"firmware toolchain missing: {', '.join(status.missing)}", status.hint)
    from pytest_tinyml.analysis.model import parse_model

    data = request.model
    info = parse_model(data, "<model>")
    tree = request.tree
    if runtime == Runtime.TFLM and tree is None:
        from pytest_tinyml.emulate.tflm_tree import tflm_tree as locate

        tree = locate()  # NotEvaluable with the reason when TFLM_ROOT is unset or incomplete
    bad = unsupported_ops(info) if runtime == Runtime.TINYML else []
    if bad:
        raise NotEvaluable(
            f"the firmware runtime does not implement {', '.join(bad)}",
            "use int8 builtin ops only (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, pools, SOFTMAX, ADD, MUL, "
            "MEAN, PAD, CONCATENATION, LOGISTIC, RESHAPE, TRANSPOSE, QUANTIZE, DEQUANTIZE), or run real TFLM: "
            "runtime=\"tflm\" with TFLM_ROOT set",
        )
    target = resolve_target(machine, emulator, memory, platform, core)
    in_specs, out_specs = io_specs(info)
    payload = pack_inputs(list(inputs), in_specs)
    count = len(inputs)
    sample_bytes = len(payload) // count if count else 0
    out_per_sample = sum(int(np.prod(s.shape)) * np.dtype(DTYPES.get(s.dtype, np.int8)).itemsize for s in out_specs)
    cache_dir = Path(cache_dir).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    tools = tools if tools is not None else ToolCache(cache_dir / "tools")
    if runtime == Runtime.TFLM:
        from pytest_tinyml.emulate.tflm_build import build_tflm_app

        script = board_script(cache_dir, target.memory, target.uart, f"{target.note}, UART {target.uart.kind}")
        built = build_tflm_app(data, machine, core, cache_dir, tools=tools, arena_bytes=arena_bytes, tree=tree,
                               progress=progress, script=script)
    else:
        built = build_app(core, cache_dir, target.memory, target.uart, f"{target.note}, UART {target.uart.kind}",
                          tools=tools)
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
    held = contextlib.ExitStack()  # the plugin's user-cache entry stays while the emulator runs
    plugin, counts_note = counting_plugin(request.count_classes, target.emulator, tools, held)
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
    with held, tempfile.TemporaryDirectory(prefix="run-", dir=cache_dir) as tmp:
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
                    raise emulator_timeout(timeout)
                if target.emulator == Emulator.QEMU:
                    counts_file = io_dir / "tm_classes.txt"
                    args = tuple(extra_args)
                    counting = plugin if lo == 0 else None  # only the first run carries the plugin
                    if counting is not None:
                        from pytest_tinyml.emulate.insn_plugin import plugin_args

                        line, lines, ways = flash_cache
                        args += tuple(plugin_args(counting, counts_file, flash=flash, line_bytes=line, lines=lines,
                                                  ways=ways))
                    cmd = qemu_command(machine, built.elf, block, block_addr, serial, args)
                    try:
                        run = run_emulator(cmd, cwd, serial, left, max_bytes=max_uart,
                                           memory_limit=QEMU_MEMORY_LIMIT + MACHINES[machine].fixed_ram_bytes)
                    except FirmwareError as exc:  # the message names the whole run's limit, not what was left
                        if exc.stage != "timeout":
                            raise
                        raise emulator_timeout(timeout, exc.output) from None
                    if counting is not None:
                        counts_runs.append(read_counts(counts_file))
                else:
                    from pytest_tinyml.emulate.renode import renode_run

                    try:
                        cmd, run, count_executed = renode_run(target.name, built.elf, block, block_addr, serial, cwd,
                                                              left, max_bytes=max_uart,
                                                              vector_table=target.memory.flash.origin)
                    except FirmwareError as exc:
                        if exc.stage != "timeout":
                            raise
                        raise emulator_timeout(timeout, exc.output) from None
                    executed += count_executed
                    script_text = script_text or (io_dir / "tinyml.resc").read_text()
            if not command:  # the recorded command is the first run's: its block can be written again
                command, first_block, first_samples = shlex.join(cmd), str(block), hi - lo
            emulate_seconds += run.seconds
            proto = parse_uart(run.uart, max_data)
            log += proto.log
            raise_reported(proto, run, log)
            raw += proto.data
            tags_all.append(proto.tags)
    counts, counts_note = merge_run_counts(plugin, counts_runs, counts_note)
    systick = target.emulator != Emulator.QEMU or MACHINES[machine].systick_counts
    tags = tags_all[0]
    inf, cal, arena = tags.get("INFO", {}), tags.get("CAL", {}), tags.get("ARENA", {})
    results = [t["RESULT"] for t in tags_all]
    samples = sum(int(r["samples"]) for r in results)
    if samples != count:
        raise FirmwareError(f"firmware ran {samples} of {count} samples", stage="io", output=log[-20:])
    outputs_all = split_outputs(bytes(raw), out_specs, samples, log)
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
        runtime=str(runtime),
        kernels=getattr(tree, "kernels", "") if runtime == Runtime.TFLM else "",
        runtime_note=request.runtime_note,
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


