"""Firmware policy from explicit values (the board, the spec's ``firmware:`` section, the run's options),
and the one cached entry point :func:`run` (:class:`FirmwareRequest` -> :class:`FirmwareResult`).

Nothing here knows targets: :mod:`pytest_tinyml.measurements` decides the values and asks. Results of
deterministic runs (QEMU with ``-icount``, Renode; host TFLM) are kept in the run cache
(:class:`pytest_tinyml.emulate.runcache.RunCache`), keyed by everything they depend on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml._util.toolcache import ToolCache
from pytest_tinyml.emulate.request import FirmwareRequest
from pytest_tinyml.emulate.result import FirmwareResult
from pytest_tinyml.emulate.runcache import RunCache, package_version, run_cache_key
from pytest_tinyml.errors import NotEvaluable
from pytest_tinyml.kinds import Emulator, Runtime

if TYPE_CHECKING:
    from pytest_tinyml.analysis.model import ModelInfo
    from pytest_tinyml.boards import Board
    from pytest_tinyml.emulate.policy import RuntimeChoice
    from pytest_tinyml.options import RunOptions
    from pytest_tinyml.spec.model import FirmwareSpec


def require_model_fits_flash(model_bytes: int, board: Board) -> None:
    """Raise :class:`NotEvaluable` when the model file alone (``model_bytes``) is larger than the board's flash.

    Checked before any firmware work: such a model cannot link for the board, and compiling a multi-MB
    model into a firmware image costs minutes and gigabytes. The ``size``/``flash`` items report the
    failure itself.
    """
    if model_bytes > board.flash_bytes:
        raise NotEvaluable(
            f"the model ({model_bytes:,} B) is larger than {board.name}'s {board.flash_bytes:,} B "
            "flash, so no firmware was built (see the flash and size items)",
            "shrink the model (quantize to int8, fewer parameters) or pick a board with more flash (--tinyml-board)",
        )


def machine(firmware: FirmwareSpec, board: Board) -> str:
    """The emulated machine the firmware runs on (the spec's ``firmware.machine`` or the board's)."""
    from pytest_tinyml.emulate.toolchain import MACHINES

    name = firmware.machine or board.qemu
    if name is None:
        raise NotEvaluable(
            f"no emulator models board {board.name} ({board.core})",
            "set constraints.firmware.machine to a QEMU machine with a similar core, e.g. mps2-an386, "
            "to run the int8 model on an emulated Cortex-M as a proxy",
        )
    if name not in MACHINES:
        raise NotEvaluable(
            f"the firmware harness has no board files for QEMU machine {name!r}",
            f"set constraints.firmware.machine to one of {', '.join(sorted(MACHINES))}",
        )
    return name


def emulator(requested: str | None, firmware: FirmwareSpec, board: Board) -> str:
    """``requested`` (--tinyml-emulator), else the spec's firmware.emulator, else QEMU where the board has a
    QEMU machine and Renode where only Renode models the board and ``renode`` is on PATH."""
    chosen = requested or firmware.emulator
    if chosen:
        return str(chosen)
    if board.qemu is None and board.renode is not None and shutil.which("renode"):
        return Emulator.RENODE
    return Emulator.QEMU


def board_core_emulated(board: Board) -> bool:
    """True when the board's own core is one the harness compiles for (its counts mean something)."""
    from pytest_tinyml.emulate.toolchain import CORES

    return any(c in CORES for c in (board.core, board.core.removesuffix("f")))


def core(board: Board, machine_name: str) -> str:
    """The compiler's core for the board (``cortex-m4f`` -> ``cortex-m4``); the machine's core for boards
    that are not Cortex-M (their firmware items run on the emulated machine as a proxy)."""
    from pytest_tinyml.emulate.toolchain import CORES, MACHINES

    for candidate in (board.core, board.core.removesuffix("f")):
        if candidate in CORES:
            return candidate
    return MACHINES[machine_name].cpu


def flash_cache(board: Board) -> tuple[int, int, int]:
    """The board's flash read cache as the instruction-class plugin models it (emulate/cycles.py)."""
    from pytest_tinyml.emulate.cycles import memory_timing

    return memory_timing(board).plugin_cache


def require_toolchain(chosen_emulator: str) -> None:
    from pytest_tinyml import emulate

    status = emulate.toolchain_status(chosen_emulator)
    if not status.ok:
        raise NotEvaluable(f"missing {', '.join(status.missing)}", status.hint)


def require_runtime_supports(info: ModelInfo, choice: RuntimeChoice) -> None:
    """The project's runtime implements a fixed set of ops: NotEvaluable naming the others (and why real
    TFLM did not run)."""
    from pytest_tinyml.emulate.ops import unsupported_ops

    if choice.runtime != Runtime.TINYML:
        return
    unsupported = unsupported_ops(info)
    if unsupported:
        why = f" ({choice.note})" if choice.note else ""
        raise NotEvaluable(
            f"the project's firmware runtime does not implement {', '.join(unsupported)}{why}",
            "audit models that use only the ops listed in README (firmware runtime), or let real TFLM "
            "build: drop --tinyml-offline / --tinyml-firmware-runtime tinyml, or set TFLM_ROOT",
        )


def inputs_digest(samples: Sequence[Any]) -> str:
    digest = hashlib.sha256()
    for sample in samples:
        for arr in sample if isinstance(sample, (tuple, list)) else (sample,):
            digest.update(f"{arr.dtype}{arr.shape}".encode())
            digest.update(arr.tobytes())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def sources_digest() -> str:
    """Hash of the firmware C sources, linker scripts and the tools: a new runtime invalidates runs."""
    from pytest_tinyml.emulate.toolchain import firmware_dir

    digest = hashlib.sha256()
    root = firmware_dir()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    digest.update(str(shutil.which("arm-none-eabi-gcc")).encode())
    digest.update(str(shutil.which("qemu-system-arm")).encode())
    return digest.hexdigest()


def run_key(request: FirmwareRequest, tflm_root: object = None) -> str:
    """The run cache key of ``request``: everything its result depends on."""
    from pytest_tinyml.emulate.insn_plugin import plugin_digest

    return run_cache_key(
        "firmware",
        request.runtime,
        str(request.arena_bytes),
        request.model_sha256,
        inputs_digest(request.inputs),
        request.machine,
        request.core,
        request.emulator,
        request.memory.key() if request.memory else "",
        request.platform or "",
        sources_digest(),
        str(tflm_root or "") if request.runtime == Runtime.TFLM else "",
        request.tree.describe() if request.tree is not None else "",
        repr(request.flash_cache),
        plugin_digest(),
    )


@functools.lru_cache(maxsize=8)
def _tool_cache(root: str, limit: int) -> ToolCache:
    return ToolCache(Path(root), limit)


def tool_cache(options: RunOptions) -> ToolCache:
    """The user-level cache of ``options`` (one object per folder and bound: entries it verified once in
    this process are not hashed again unless they changed)."""
    return _tool_cache(str(options.tools_dir), options.user_cache_limit)


def run(request: FirmwareRequest, options: RunOptions) -> FirmwareResult:
    """``request`` built into firmware and run on its emulator, cached by content in the run cache.

    A cache hit is the stored result (every field) marked as cached (``build_cached``, a log line), with
    this request's ``runtime_note``; its recorded command's input block is written again if it was pruned.
    """
    from pytest_tinyml.emulate.blocks import restore_block
    from pytest_tinyml.emulate.run import execute

    key = run_key(request, options.tflm_root)
    runs = RunCache(options.runs_dir)
    if not options.rebuild:
        hit = runs.load_firmware(key)
        if hit is not None:
            hit = dataclasses.replace(hit, build_cached=True, log=[f"cached firmware run {hit.seconds:.1f} s"],
                                      runtime_note=request.runtime_note)
            # the recorded command stays runnable: its input block is written again if it was pruned
            restore_block(hit, request.model, list(request.inputs), options.firmware_dir,
                          inputs_keep=options.inputs_keep_bytes)
            return hit
    result = execute(request, cache_dir=options.firmware_dir, progress=options.progress,
                     inputs_keep=options.inputs_keep_bytes, tools=tool_cache(options))
    runs.save_firmware(key, result)
    return result


def divergence(request: FirmwareRequest, sample: int, options: RunOptions) -> str:
    """The first operator whose output differs between the firmware and host TFLM on ``sample`` (layer by
    layer: both run a copy of the model whose intermediate tensors are outputs). Never raises: a failure
    to localize is described instead."""
    from pytest_tinyml.analysis import tflm
    from pytest_tinyml.emulate.localize import first_divergence
    from pytest_tinyml.emulate.run import execute
    from pytest_tinyml.errors import TinyMLError

    x = request.inputs[sample]

    def on_target(model: bytes, s: Any) -> tuple[Any, ...]:
        one = dataclasses.replace(request, model=model, inputs=(s,), clock_hz=None, flash_cache=(16, 1, 0),
                                  arena_bytes=0, runtime_note="")
        res = execute(one, cache_dir=options.firmware_dir, inputs_keep=options.inputs_keep_bytes,
                      tools=tool_cache(options))
        return tuple(res.all_outputs[0])

    def on_host(model: bytes, s: Any, n: int) -> tuple[Any, ...]:
        return tuple(tflm.invoke(model, [s], num_outputs=n, period=options.tflm_timeout)[0])

    try:
        return first_divergence(request.model, x, on_target, on_host).describe()
    except (TinyMLError, NotEvaluable, ValueError, RuntimeError, OSError) as exc:
        return f"could not compare layer by layer: {exc}"


def export_arena_bytes(arena: Any, fw: FirmwareResult | None) -> int:
    """Arena size for ``--tinyml-export``: the smallest that allocated on the target with real TFLM (a
    multiple of TFLM's 16-byte alignment) when ``fw`` is such a run, else the host estimate of it rounded
    up to 16 bytes. Pure: the caller passes what was already measured."""
    if fw is not None and fw.runtime == Runtime.TFLM and fw.arena_min_bytes:
        return int(fw.arena_min_bytes)
    need = getattr(arena, "required_bytes", None) or arena.bytes
    return (int(need) + 15) // 16 * 16


def host_outputs(model: bytes, samples: Sequence[Any], options: RunOptions) -> list[Any]:
    """Host TFLM's outputs for ``samples`` (the bit-exact reference), cached by content."""
    from pytest_tinyml.analysis import tflm

    sha = hashlib.sha256(model).hexdigest()
    key = run_cache_key("tflm", sha, inputs_digest(samples), package_version("tflite-micro"))
    runs = RunCache(options.runs_dir)
    if not options.rebuild:
        hit = runs.load_outputs(key)
        if hit is not None:
            return hit
    outputs = list(tflm.invoke(model, list(samples), workers=2, period=options.tflm_timeout))
    runs.save_outputs(key, outputs)
    return outputs
