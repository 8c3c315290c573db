"""Firmware policy for one target: which machine and core, which inputs, and the cached emulated run.

:class:`pytest_tinyml.target.Target` delegates its ``firmware*`` and ``tflm_outputs`` measurements here;
the build and the emulator run themselves are :func:`pytest_tinyml.emulate.run_firmware`'s. Results of
deterministic runs (QEMU with ``-icount``, Renode; host TFLM) are kept in the run cache
(:class:`pytest_tinyml.pipeline.cache.RunCache`), keyed by everything they depend on.
"""

from __future__ import annotations

import functools
import hashlib
import os
from typing import TYPE_CHECKING, Any

from pytest_tinyml.errors import NotEvaluable

if TYPE_CHECKING:
    from pytest_tinyml.target import Target


def require_model_fits_flash(m: Target) -> None:
    """Raise :class:`NotEvaluable` when the model file alone is larger than the board's flash.

    Checked first by :func:`run` and by the firmware items: such a model cannot link for the board, and compiling a
    multi-MB model into a firmware image costs minutes and gigabytes. The ``size``/``flash`` items
    report the failure itself.
    """
    size = m.model_info.size_bytes
    if size > m.board.flash_bytes:
        raise NotEvaluable(
            f"the model ({size:,} B) is larger than {m.board.name}'s {m.board.flash_bytes:,} B "
            "flash, so no firmware was built (see the flash and size items)",
            "shrink the model (quantize to int8, fewer parameters) or pick a board with more flash (--tinyml-board)",
        )



def machine(target: Target) -> str:
    """The emulated machine the target's firmware runs on (the spec's ``firmware.machine`` or the board's)."""
    from pytest_tinyml.emulate.toolchain import MACHINES

    name = target.firmware_spec.machine or target.board.qemu
    if name is None:
        raise NotEvaluable(
            f"no emulator models board {target.board.name} ({target.board.core})",
            "set constraints.firmware.machine to a QEMU machine with a similar core, e.g. mps2-an386, "
            "to run the int8 model on an emulated Cortex-M as a proxy",
        )
    if name not in MACHINES:
        raise NotEvaluable(
            f"the firmware harness has no board files for QEMU machine {name!r}",
            f"set constraints.firmware.machine to one of {', '.join(sorted(MACHINES))}",
        )
    return name


def emulator(target: Target) -> str:
    """--tinyml-emulator, else the spec's firmware.emulator, else QEMU where the board has a QEMU machine
    and Renode where only Renode models the board and ``renode`` is on PATH."""
    import shutil

    chosen = target.options.emulator or target.firmware_spec.emulator
    if chosen:
        return str(chosen)
    if target.board.qemu is None and target.board.renode is not None and shutil.which("renode"):
        return "renode"
    return "qemu"


def board_core_emulated(target: Target) -> bool:
    """True when the board's own core is one the harness compiles for (its counts mean something)."""
    from pytest_tinyml.emulate.toolchain import CORES

    return any(c in CORES for c in (target.board.core, target.board.core.removesuffix("f")))


def core(target: Target) -> str:
    """The compiler's core for the board (``cortex-m4f`` -> ``cortex-m4``); the machine's core for boards
    that are not Cortex-M (their firmware items run on the emulated machine as a proxy)."""
    from pytest_tinyml.emulate.toolchain import CORES, MACHINES

    for candidate in (target.board.core, target.board.core.removesuffix("f")):
        if candidate in CORES:
            return candidate
    return MACHINES[machine(target)].cpu


def inputs(target: Target) -> list[Any]:
    """The inputs the firmware and host TFLM both run: the spec's test images, else seeded random int8."""
    import numpy as np

    samples = target.options.firmware_samples or target.firmware_spec.samples
    spec = target.spec
    if spec is not None and spec.dataset is not None and target.artifacts is not None:
        from pytest_tinyml.pipeline import test_inputs_int8

        return list(test_inputs_int8(spec, target.artifacts.build, target.mode or "int8", samples,
                                     extra_loaders=target.options.extra_loaders))
    info = target.model_info
    tensors = info.inputs
    if not tensors:
        raise NotEvaluable("the model has no input tensor", "audit a model with an int8 input")
    for tensor in tensors:
        if tensor.dtype != "int8":
            raise NotEvaluable(
                f"audits feed seeded random int8 inputs; input {tensor.name} is {tensor.dtype}",
                "quantize the model to int8 with int8 input and output, or judge it with a spec and its dataset",
            )
    for tensor in tensors:  # hardening: fuzzed shapes must not reach numpy
        if any(d <= 0 for d in tensor.shape) or tensor.num_elements > target.board.ram_bytes:
            raise NotEvaluable(
                f"input {tensor.name} has shape {tensor.shape}: a dimension <= 0 or more elements than "
                f"{target.board.name} has RAM",
                "audit a model whose input tensors have positive dimensions and fit the board",
            )
    rng = np.random.default_rng(int(target.sha256[:8], 16))
    if len(tensors) == 1:
        return [rng.integers(-128, 128, size=tensors[0].shape, dtype=np.int8) for _ in range(samples)]
    return [tuple(rng.integers(-128, 128, size=t.shape, dtype=np.int8) for t in tensors) for _ in range(samples)]


def inputs_digest(samples: list[Any]) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        for arr in sample if isinstance(sample, (tuple, list)) else (sample,):
            digest.update(f"{arr.dtype}{arr.shape}".encode())
            digest.update(arr.tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def sources_digest() -> str:
    """Hash of the firmware C sources, linker scripts and the tools: a new runtime invalidates runs."""
    import shutil

    from pytest_tinyml.emulate.toolchain import firmware_dir

    digest = hashlib.sha256()
    root = firmware_dir()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    digest.update(str(shutil.which("arm-none-eabi-gcc")).encode())
    digest.update(str(shutil.which("qemu-system-arm")).encode())
    return digest.hexdigest()


def flash_cache(target: Target) -> tuple[int, int, int]:
    """The board's flash read cache as the instruction-class plugin models it (emulate/cycles.py)."""
    from pytest_tinyml.emulate.cycles import memory_timing

    return memory_timing(target.board).plugin_cache


def run(target: Target) -> Any:
    """The target's int8 model built into firmware and run on the emulated machine (cached by content)."""
    from pytest_tinyml import emulate
    from pytest_tinyml.emulate.insn_plugin import plugin_digest
    from pytest_tinyml.pipeline.cache import RunCache, run_cache_key

    if not target.firmware_spec.enabled:
        raise NotEvaluable("firmware items are disabled in the spec", "set constraints.firmware.enabled: true")
    require_model_fits_flash(target)  # issue 13: never compile a model the board cannot hold
    chosen_emulator = emulator(target)
    status = emulate.toolchain_status(chosen_emulator)
    if not status.ok:
        raise NotEvaluable(f"missing {', '.join(status.missing)}", status.hint)
    choice = target.firmware_runtime_choice
    runtime = choice.runtime
    arena_bytes = 0  # real TFLM: all free RAM; the firmware bisects the smallest arena that allocates
    if runtime == "tinyml":
        unsupported = emulate.unsupported_ops(target.model_info)
        if unsupported:
            why = f" ({choice.note})" if choice.note else ""
            raise NotEvaluable(
                f"the project's firmware runtime does not implement {', '.join(unsupported)}{why}",
                "audit models that use only the ops listed in README (firmware runtime), or let real TFLM "
                "build: drop --tinyml-offline / --tinyml-firmware-runtime tinyml, or set TFLM_ROOT",
            )
    samples = target.firmware_inputs
    key = run_cache_key(
        "firmware",
        runtime,
        str(arena_bytes),
        target.sha256,
        inputs_digest(samples),
        machine(target),
        core(target),
        chosen_emulator,
        target.board.memory.key() if target.board.memory else "",
        target.board.renode or "",
        sources_digest(),
        os.environ.get("TFLM_ROOT", "") if runtime == "tflm" else "",
        choice.tree.describe() if choice.tree is not None else "",
        repr(flash_cache(target)),
        plugin_digest(),
    )
    runs = RunCache(target.options.cache_dir / "runs")
    if not target.options.rebuild:
        hit = runs.load_firmware(key)
        if hit is not None:
            from pytest_tinyml.emulate.run import restore_block

            hit.runtime_note = choice.note
            # the recorded command stays runnable: its input block is written again if it was pruned
            restore_block(hit, target.tflite_bytes, samples, target.options.cache_dir / "firmware",
                          inputs_keep=target.options.inputs_keep_bytes)
            return hit
    result = emulate.run_firmware(
        target.tflite_bytes,
        samples,
        machine=machine(target),
        core=core(target),
        clock_hz=target.board.clock_hz,
        cache_dir=target.options.cache_dir / "firmware",
        emulator=chosen_emulator,
        runtime=runtime,
        arena_bytes=arena_bytes,
        tflm_tree=choice.tree,
        progress=target.options.progress,
        memory=target.board.memory,
        platform=target.board.renode,
        flash_cache=flash_cache(target),
        inputs_keep=target.options.inputs_keep_bytes,
    )
    result.runtime_note = choice.note
    runs.save_firmware(key, result)
    return result


def runtime_choice(target: Target) -> Any:
    """Real TFLM (with the kernel set for this core) when its sources can be had, else the project's
    runtime with the reason (never silently: the firmware items print it)."""
    from pytest_tinyml.emulate.tflm_build import choose_runtime

    requested = target.options.firmware_runtime or os.environ.get("TINYML_FIRMWARE_RUNTIME") or None
    return choose_runtime(
        requested,
        core=core(target),
        kernels=target.options.kernels or target.firmware_spec.kernels,
        sources_dir=target.options.tflm_sources or target.options.cache_dir / "tflm-sources",
        offline=target.options.offline,
        mirror=target.options.tflm_mirror,
        progress=target.options.progress,
    )


def divergence(target: Target, sample: int) -> str:
    """The first operator whose output differs between the firmware and host TFLM on ``sample`` (layer by
    layer: both run a copy of the model whose intermediate tensors are outputs). Never raises: a failure
    to localize is described instead."""
    from pytest_tinyml import emulate
    from pytest_tinyml.analysis import tflm
    from pytest_tinyml.emulate.localize import first_divergence
    from pytest_tinyml.errors import TinyMLError

    choice = target.firmware_runtime_choice
    x = target.firmware_inputs[sample]

    def on_target(model: bytes, s: Any) -> tuple[Any, ...]:
        res = emulate.run_firmware(
            model, [s], machine=machine(target), core=core(target),
            cache_dir=target.options.cache_dir / "firmware", runtime=choice.runtime, tflm_tree=choice.tree,
            emulator=emulator(target), memory=target.board.memory, platform=target.board.renode,
            inputs_keep=target.options.inputs_keep_bytes,
        )
        return tuple(res.all_outputs[0])

    def on_host(model: bytes, s: Any, n: int) -> tuple[Any, ...]:
        return tuple(tflm.invoke(model, [s], num_outputs=n)[0])

    try:
        return first_divergence(target.tflite_bytes, x, on_target, on_host).describe()
    except (TinyMLError, NotEvaluable, ValueError, RuntimeError, OSError) as exc:
        return f"could not compare layer by layer: {exc}"


def export_arena_bytes(arena: Any, fw: Any | None) -> int:
    """Arena size for ``--tinyml-export``: the smallest that allocated on the target with real TFLM (a
    multiple of TFLM's 16-byte alignment) when ``fw`` is such a run, else the host estimate of it rounded
    up to 16 bytes. Pure: the caller passes what was already measured."""
    if fw is not None and fw.runtime == "tflm" and fw.arena_min_bytes:
        return int(fw.arena_min_bytes)
    need = getattr(arena, "required_bytes", None) or arena.bytes
    return (int(need) + 15) // 16 * 16


def tflm_outputs(target: Target) -> list[Any]:
    """Host TFLM's outputs for the firmware inputs (the bit-exact reference), cached by content."""
    from pytest_tinyml.analysis import tflm
    from pytest_tinyml.pipeline.cache import RunCache, package_version, run_cache_key

    samples = target.firmware_inputs
    key = run_cache_key("tflm", target.sha256, inputs_digest(samples), package_version("tflite-micro"))
    runs = RunCache(target.options.cache_dir / "runs")
    if not target.options.rebuild:
        hit = runs.load_outputs(key)
        if hit is not None:
            return hit
    outputs = list(tflm.invoke(target.tflite_bytes, samples, workers=2))
    runs.save_outputs(key, outputs)
    return outputs
