"""What one firmware run measured: :class:`FirmwareResult`, frozen, and serialised by itself.

``to_dict()`` gives a JSON-able mapping of every field (arrays as dtype, shape and base64 bytes, the
latency and the instruction-class counts as mappings); ``from_dict()`` reads it back, checking the type
of every field, so an edited or damaged mapping is refused (ValueError) rather than misread. The run cache
(:mod:`pytest_tinyml.emulate.runcache`) stores exactly ``to_dict()``: a cache hit is equal to the run.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pytest_tinyml.emulate.insn_plugin import ClassCounts
from pytest_tinyml.emulate.toolchain import LatencyEstimate


@dataclass(frozen=True, eq=False)
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
    instruction_counts: ClassCounts | None = None
    counts_note: str = ""
    input_block: str = ""  # the input block file the recorded command loads (<cache>/firmware/inputs/...)
    input_block_samples: int = 0  # the samples in it (the first emulator run's)

    # --- serialisation ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-able (see the module docstring)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "outputs":
                out[f.name] = [_array_dict(a) for a in value]
            elif f.name == "all_outputs":
                out[f.name] = [[_array_dict(a) for a in sample] for sample in value]
            elif f.name == "latency":
                out[f.name] = dataclasses.asdict(value) if value is not None else None
            elif f.name == "instruction_counts":
                out[f.name] = value.to_dict() if value is not None else None
            elif f.name == "elf_path":
                out[f.name] = str(value)
            elif f.name == "log":
                out[f.name] = list(value)
            else:
                out[f.name] = str(value) if isinstance(value, str) else value  # a str enum as its text
        return out

    @classmethod
    def from_dict(cls, data: Any) -> FirmwareResult:
        """The result ``to_dict()`` gave; ValueError when a field is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise ValueError("a firmware result is a mapping")
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name not in data:
                raise ValueError(f"missing field {f.name}")
            values[f.name] = _read_field(f.name, str(f.type), data[f.name])
        return cls(**values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FirmwareResult):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _array_dict(array: Any) -> dict[str, Any]:
    a = np.ascontiguousarray(np.asarray(array))
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def _array(value: Any) -> np.ndarray:
    if not isinstance(value, dict):
        raise ValueError("an array is a mapping")
    dtype, shape, data = value.get("dtype"), value.get("shape"), value.get("data")
    if not isinstance(dtype, str) or not isinstance(shape, list) or not isinstance(data, str):
        raise ValueError("an array needs dtype, shape and data")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ValueError("bad array shape")
    dt = np.dtype(dtype)
    if dt.hasobject:
        raise ValueError("object arrays are not results")
    raw = base64.b64decode(data.encode("ascii"), validate=True)
    return np.frombuffer(raw, dtype=dt).reshape(tuple(shape)).copy()


def _number(value: Any, kind: type) -> Any:
    try:
        finite = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise ValueError(f"not a finite number: {value!r:.40}")
    if kind is int and not isinstance(value, int):
        raise ValueError(f"not an integer: {value!r}")
    return kind(value)


def _read_field(name: str, kind: str, value: Any) -> Any:
    if name == "outputs":
        if not isinstance(value, list):
            raise ValueError("outputs is a list")
        return [_array(a) for a in value]
    if name == "all_outputs":
        if not isinstance(value, list) or not all(isinstance(s, list) for s in value):
            raise ValueError("all_outputs is a list of lists")
        return [tuple(_array(a) for a in sample) for sample in value]
    if name == "latency":
        if value is None:
            return None
        if not isinstance(value, dict) or not isinstance(value.get("method"), str):
            raise ValueError("bad latency")
        return LatencyEstimate(_number(value.get("seconds"), float), _number(value.get("cpi"), float), value["method"])
    if name == "instruction_counts":
        if value is None:
            return None
        if not isinstance(value, dict):
            raise ValueError("bad instruction counts")
        try:
            return ClassCounts.from_dict(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bad instruction counts: {exc}") from None
    if name == "elf_path":
        if not isinstance(value, str):
            raise ValueError("elf_path is a string")
        return Path(value)
    if name == "log":
        if not isinstance(value, list) or not all(isinstance(line, str) for line in value):
            raise ValueError("log is a list of strings")
        return list(value)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} is a boolean")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name} is a string")
        return value
    if kind in ("int", "float"):
        return _number(value, int if kind == "int" else float)
    raise ValueError(f"field {name} has no reader")  # a new field needs one here


__all__ = ["FirmwareResult"]
