"""What one firmware run is asked to do: :class:`FirmwareRequest` (frozen). It carries explicit values
only (model bytes, inputs, the emulated machine and core, emulator, runtime, memory map...): the caller
decided them (:mod:`pytest_tinyml.measurements` for the plugin); :mod:`pytest_tinyml.emulate.firmware`
runs it, cached, and returns a :class:`~pytest_tinyml.emulate.result.FirmwareResult`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pytest_tinyml.kinds import Emulator, KernelSet, Runtime

if TYPE_CHECKING:
    from pytest_tinyml.boards import MemoryMap
    from pytest_tinyml.emulate.tflm_tree import TflmTree


@dataclass(frozen=True, eq=False)
class FirmwareRequest:
    model: bytes  # the .tflite flatbuffer
    inputs: tuple[Any, ...]  # one array (or a tuple of arrays, one per model input) per sample
    machine: str  # the QEMU machine (also the Renode platform's proxy name)
    core: str  # the compiler's core (cortex-m4, ...)
    emulator: Emulator = Emulator.QEMU
    runtime: Runtime = Runtime.TINYML
    kernels: KernelSet | None = None  # the TFLM kernel set asked for (the tree's; None for tinyml)
    tree: TflmTree | None = None  # the located TFLM sources (runtime tflm)
    memory: MemoryMap | None = None  # the board's flash/RAM map (None: the machine's own)
    platform: str | None = None  # the Renode platform description (boards.yaml ``renode``)
    clock_hz: int | None = None  # the board's core clock (None: the machine's)
    flash_cache: tuple[int, int, int] = (16, 1, 0)  # the board's flash read cache: line bytes, lines, ways
    arena_bytes: int = 0  # TFLM's tensor arena; 0: all free RAM (the firmware bisects the smallest)
    runtime_note: str = ""  # why this runtime runs (a fallback's reason), copied into the result
    count_classes: bool = True  # load the instruction-class plugin (QEMU)
    timeout: float = 300.0
    extra_args: tuple[str, ...] = field(default=())  # appended to QEMU's command line

    @property
    def model_sha256(self) -> str:
        return hashlib.sha256(self.model).hexdigest()


__all__ = ["FirmwareRequest"]
