"""Measurements for one target, computed lazily and once: artifacts -> measurements.

A *target* is one model to judge: a ``.tflite`` given to ``--tinyml-model``, a spec whose model is a
``.tflite``, or one quantization mode of a spec that builds its model. Checks read what they need from a
:class:`Measurements`; each measurement is computed on first use and cached (errors too), so the items of
one target share one build, one TFLM allocation and one firmware run.

Nothing here imports pytest or TensorFlow at module level; building goes through
:mod:`pytest_tinyml.build`, which imports TensorFlow only when it really has to train or convert.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tinyml.boards import Board
from pytest_tinyml.errors import NotEvaluable, TinyMLError
from pytest_tinyml.spec.model import Constraints, FirmwareSpec, Spec

Progress = Callable[[str], None]


@dataclass
class RunOptions:
    """What the run was asked to do (from the command line and ini)."""

    cache_dir: Path
    rebuild: bool = False
    emulator: str | None = None  # overrides the spec's firmware.emulator
    firmware_samples: int | None = None  # overrides the spec's firmware.samples
    export_dir: Path | None = None
    progress: Progress | None = None
    extra_loaders: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    load_model: Callable[..., Any] | None = None
    tflm_timeout: float = 60.0  # seconds for one host-TFLM allocation in its child process
    firmware_runtime: str | None = None  # tinyml (the project's C runtime) or tflm (real TFLM, needs TFLM_ROOT)


class _Failed:
    """A cached failure: re-raised on every access so every item that needs it reports it."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def cached_measurement(fn: Callable[[Any], Any]) -> property:
    """Like ``functools.cached_property`` but also caches TinyMLError / NotEvaluable failures."""
    attr = f"_cache_{fn.__name__}"

    @functools.wraps(fn)
    def getter(self: Any) -> Any:
        value = self.__dict__.get(attr)
        if value is None:
            try:
                value = fn(self)
            except (TinyMLError, NotEvaluable) as exc:
                value = _Failed(exc)
            self.__dict__[attr] = value
        if isinstance(value, _Failed):
            raise value.exc
        return value

    return property(getter)


class SpecArtifacts:
    """The build of one spec, shared by the targets of its quantization modes."""

    def __init__(self, spec: Spec, options: RunOptions) -> None:
        self.spec = spec
        self.options = options

    @cached_measurement
    def build(self) -> Any:
        from pytest_tinyml.build import build_artifacts

        return build_artifacts(
            self.spec,
            cache_dir=self.options.cache_dir,
            rebuild=self.options.rebuild,
            progress=self.options.progress,
            extra_loaders=self.options.extra_loaders,
            load_model=self.options.load_model,
        )


class Measurements:
    """Lazily computed facts about one target, for the checks to judge."""

    def __init__(
        self,
        *,
        label: str,
        constraints: Constraints,
        board: Board,
        options: RunOptions,
        spec: Spec | None = None,
        mode: str | None = None,
        model_path: Path | None = None,
        artifacts: SpecArtifacts | None = None,
    ) -> None:
        self.label = label
        self.constraints = constraints
        self.board = board
        self.options = options
        self.spec = spec
        self.mode = mode
        self.model_path = model_path
        self.artifacts = artifacts

    # --- the model -------------------------------------------------------------------------------
    @cached_measurement
    def tflite_path(self) -> Path:
        if self.model_path is not None:
            return self.model_path
        if self.artifacts is None or self.mode is None:
            raise TinyMLError("no model to measure", where=self.label)
        build = self.artifacts.build
        try:
            return Path(build.tflite_path(self.mode))
        except KeyError:
            raise TinyMLError(f"the build produced no {self.mode} model", where=self.label) from None

    @cached_measurement
    def tflite_bytes(self) -> bytes:
        from pytest_tinyml.analysis.model import load_model_bytes

        return load_model_bytes(self.tflite_path)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.tflite_bytes).hexdigest()

    @cached_measurement
    def model_info(self) -> Any:
        from pytest_tinyml.analysis.model import parse_model

        return parse_model(self.tflite_bytes, str(self.tflite_path))

    # --- TFLM ------------------------------------------------------------------------------------
    @cached_measurement
    def tflm_allocation(self) -> Any:
        from pytest_tinyml.analysis import tflm

        self.model_info  # noqa: B018  (a malformed model fails here with its offset, before TFLM sees it)
        return tflm.allocate(self.tflite_bytes, timeout=self.options.tflm_timeout)

    @cached_measurement
    def tflm_ops(self) -> Any:
        from pytest_tinyml.analysis import tflm

        return tflm.tflm_op_report(self.model_info, self.tflm_allocation)

    @cached_measurement
    def arena(self) -> Any:
        from pytest_tinyml.analysis import tflm

        alloc = self.tflm_allocation
        if not alloc.ok:
            raise NotEvaluable(
                "TFLM cannot allocate this model, so it has no arena size (see the tflm_ops item)",
                "make the model TFLM-compatible (int8 ops, registered custom ops)",
            )
        return tflm.arena_32bit(self.model_info, alloc)

    @cached_measurement
    def flash(self) -> Any:
        from pytest_tinyml.analysis.flash import estimate_flash

        return estimate_flash(self.model_info)

    # --- accuracy --------------------------------------------------------------------------------
    @cached_measurement
    def accuracy(self) -> Any:
        if self.spec is None or self.spec.dataset is None or self.artifacts is None:
            raise NotEvaluable(
                "no dataset: accuracy needs the spec's dataset and a model built from it",
                "run with --tinyml-spec naming a spec with a 'dataset:' section and a builder or Keras model",
            )
        from pytest_tinyml.build import evaluate_accuracy

        stages = ("litert", "tflm")  # TFLM's own answers; a model TFLM refuses is reported as unavailable
        return evaluate_accuracy(
            self.spec,
            self.artifacts.build,
            self.mode or "int8",
            cache_dir=self.options.cache_dir,
            stages=stages,
            progress=self.options.progress,
        )

    # --- firmware --------------------------------------------------------------------------------
    @property
    def firmware_spec(self) -> FirmwareSpec:
        return self.constraints.firmware or FirmwareSpec()

    @property
    def firmware_machine(self) -> str:
        from pytest_tinyml.emulate.toolchain import MACHINES

        machine = self.firmware_spec.machine or self.board.qemu
        if machine is None:
            raise NotEvaluable(
                f"no emulator models board {self.board.name} ({self.board.core})",
                "set constraints.firmware.machine to a QEMU machine with a similar core, e.g. mps2-an386, "
                "to run the int8 model on an emulated Cortex-M as a proxy",
            )
        if machine not in MACHINES:
            raise NotEvaluable(
                f"the firmware harness has no board files for QEMU machine {machine!r}",
                f"set constraints.firmware.machine to one of {', '.join(sorted(MACHINES))}",
            )
        return machine

    @property
    def board_core_emulated(self) -> bool:
        """True when the board's own core is one the harness compiles for (its counts mean something)."""
        from pytest_tinyml.emulate.toolchain import CORES

        return any(c in CORES for c in (self.board.core, self.board.core.removesuffix("f")))

    @property
    def firmware_core(self) -> str:
        """The compiler's core for the board (``cortex-m4f`` -> ``cortex-m4``); the machine's core for
        boards that are not Cortex-M (their firmware items run on the emulated machine as a proxy)."""
        from pytest_tinyml.emulate.toolchain import CORES, MACHINES

        core = self.board.core
        for candidate in (core, core.removesuffix("f")):
            if candidate in CORES:
                return candidate
        return MACHINES[self.firmware_machine].cpu

    @cached_measurement
    def firmware_inputs(self) -> list[Any]:
        import numpy as np

        samples = self.options.firmware_samples or self.firmware_spec.samples
        if self.spec is not None and self.spec.dataset is not None and self.artifacts is not None:
            from pytest_tinyml.build import test_inputs_int8

            return list(test_inputs_int8(self.spec, self.artifacts.build, self.mode or "int8", samples))
        info = self.model_info
        inputs = info.inputs
        if not inputs:
            raise NotEvaluable("the model has no input tensor", "audit a model with an int8 input")
        for tensor in inputs:
            if tensor.dtype != "int8":
                raise NotEvaluable(
                    f"audits feed seeded random int8 inputs; input {tensor.name} is {tensor.dtype}",
                    "quantize the model to int8 with int8 input and output, or judge it with a spec and its dataset",
                )
        for tensor in inputs:  # hardening: fuzzed shapes must not reach numpy
            if any(d <= 0 for d in tensor.shape) or tensor.num_elements > self.board.ram_bytes:
                raise NotEvaluable(
                    f"input {tensor.name} has shape {tensor.shape}: a dimension <= 0 or more elements than "
                    f"{self.board.name} has RAM",
                    "audit a model whose input tensors have positive dimensions and fit the board",
                )
        rng = np.random.default_rng(int(self.sha256[:8], 16))
        if len(inputs) == 1:
            return [rng.integers(-128, 128, size=inputs[0].shape, dtype=np.int8) for _ in range(samples)]
        return [tuple(rng.integers(-128, 128, size=t.shape, dtype=np.int8) for t in inputs) for _ in range(samples)]

    @property
    def _inputs_digest(self) -> str:
        digest = hashlib.sha256()
        for sample in self.firmware_inputs:
            for arr in sample if isinstance(sample, (tuple, list)) else (sample,):
                digest.update(f"{arr.dtype}{arr.shape}".encode())
                digest.update(arr.tobytes())
        return digest.hexdigest()

    @cached_measurement
    def firmware(self) -> Any:
        from pytest_tinyml import emulate

        if not self.firmware_spec.enabled:
            raise NotEvaluable("firmware items are disabled in the spec", "set constraints.firmware.enabled: true")
        status = emulate.toolchain_status()
        if not status.ok:
            raise NotEvaluable(f"missing {', '.join(status.missing)}", status.hint)
        from pytest_tinyml.emulate.insn_plugin import plugin_digest
        from pytest_tinyml.emulate.run import resolve_runtime

        runtime = resolve_runtime(self.options.firmware_runtime)
        arena_bytes = 0
        if runtime == "tflm":
            emulate.tflm_tree()  # NotEvaluable naming what is missing (TFLM_ROOT, flatbuffers, ...)
            arena_bytes = self.arena.bytes + 1024  # the measured arena plus room for TFLM's temporaries
        else:
            unsupported = emulate.unsupported_ops(self.model_info)
            if unsupported:
                raise NotEvaluable(
                    f"the firmware runtime does not implement {', '.join(unsupported)}",
                    "audit models that use only the ops listed in README (firmware runtime), or build real TFLM: "
                    "--tinyml-firmware-runtime tflm with TFLM_ROOT set",
                )
        emulator = self.options.emulator or self.firmware_spec.emulator
        key = run_cache_key(
            "firmware",
            runtime,
            str(arena_bytes),
            self.sha256,
            self._inputs_digest,
            self.firmware_machine,
            self.firmware_core,
            emulator,
            firmware_sources_digest(),
            os.environ.get("TFLM_ROOT", "") if runtime == "tflm" else "",
            repr(self._flash_cache),
            plugin_digest(),
        )
        runs = RunCache(self.options.cache_dir / "runs")
        if not self.options.rebuild:
            hit = runs.load_firmware(key)
            if hit is not None:
                return hit
        result = emulate.run_firmware(
            self.tflite_bytes,
            self.firmware_inputs,
            machine=self.firmware_machine,
            core=self.firmware_core,
            clock_hz=self.board.clock_hz,
            cache_dir=self.options.cache_dir / "firmware",
            emulator=emulator,
            runtime=runtime,
            arena_bytes=arena_bytes,
            flash_cache=self._flash_cache,
        )
        runs.save_firmware(key, result)
        return result

    @property
    def _flash_cache(self) -> tuple[int, int, int]:
        """The board's flash read cache as the instruction-class plugin models it (emulate/cycles.py)."""
        from pytest_tinyml.emulate.cycles import memory_timing

        return memory_timing(self.board).plugin_cache

    @cached_measurement
    def tflm_outputs(self) -> list[Any]:
        from pytest_tinyml.analysis import tflm

        key = run_cache_key("tflm", self.sha256, self._inputs_digest, _version("tflite-micro"))
        runs = RunCache(self.options.cache_dir / "runs")
        if not self.options.rebuild:
            hit = runs.load_outputs(key)
            if hit is not None:
                return hit
        outputs = list(tflm.invoke(self.tflite_bytes, self.firmware_inputs, workers=2))
        runs.save_outputs(key, outputs)
        return outputs

    def firmware_if_available(self) -> Any | None:
        """The firmware run when the constraints ask for firmware items and it can happen here, else None
        (never raises: the firmware items report why)."""
        fw = self.constraints.firmware
        if fw is None or not fw.enabled:
            return None
        try:
            return self.firmware
        except (NotEvaluable, TinyMLError):
            return None


# --- a content-addressed cache of deterministic runs (firmware under QEMU, host TFLM outputs) ---------
def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "none"


def run_cache_key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def firmware_sources_digest() -> str:
    """Hash of the firmware C sources, linker scripts and the compiler: a new runtime invalidates runs."""
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


class RunCache:
    """``<cache>/runs/<key>/``: ``result.json`` (scalars) and ``outputs.npz`` (arrays), written atomically.

    Only deterministic runs are stored (QEMU with ``-icount``; host TFLM), keyed by a hash of everything
    they depend on. A damaged entry (unreadable JSON or arrays) is ignored and rewritten.
    """

    _SCALARS = (
        "arena_bytes",
        "stack_bytes",
        "static_ram_bytes",
        "text_bytes",
        "rodata_bytes",
        "flash_bytes",
        "instructions_per_inference",
        "machine",
        "core",
        "emulator",
        "samples",
        "activation_bytes",
        "persistent_bytes",
        "model_bytes",
        "instructions_min",
        "instructions_max",
        "calibration_instructions",
        "clock_hz",
        "emulate_seconds",
        "seconds",
    )

    def __init__(self, root: Path) -> None:
        self.root = root

    def _write(self, key: str, meta: dict[str, Any], outputs: list[Any]) -> None:
        import json
        import os
        import shutil
        import tempfile

        import numpy as np

        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / key
        tmp = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.root))
        try:
            np.savez(tmp / "outputs.npz", *[np.asarray(o) for o in outputs])
            (tmp / "result.json").write_text(json.dumps(meta, default=str))
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)

    def _read(self, key: str) -> tuple[dict[str, Any], list[Any]] | None:
        import json

        import numpy as np

        entry = self.root / key
        try:
            meta = json.loads((entry / "result.json").read_text())
            with np.load(entry / "outputs.npz", allow_pickle=False) as data:
                outputs = [data[f"arr_{i}"] for i in range(len(data.files))]
        except (OSError, ValueError, KeyError):
            return None
        if meta.get("count") != len(outputs):
            return None
        return meta, outputs

    def save_outputs(self, key: str, outputs: list[Any]) -> None:
        self._write(key, {"count": len(outputs)}, outputs)

    def load_outputs(self, key: str) -> list[Any] | None:
        hit = self._read(key)
        return None if hit is None else hit[1]

    def save_firmware(self, key: str, result: Any) -> None:
        meta = {name: getattr(result, name) for name in self._SCALARS}
        meta["elf_path"] = str(result.elf_path)
        meta["count"] = len(result.outputs)
        counts = getattr(result, "instruction_counts", None)
        meta["instruction_counts"] = counts.to_dict() if counts is not None else None
        meta["counts_note"] = getattr(result, "counts_note", "")
        self._write(key, meta, list(result.outputs))

    def load_firmware(self, key: str) -> Any | None:
        from pytest_tinyml.emulate.run import FirmwareResult

        hit = self._read(key)
        if hit is None:
            return None
        meta, outputs = hit
        try:
            fields = {name: meta[name] for name in self._SCALARS}
        except KeyError:
            return None
        log = [f"cached firmware run {meta.get('seconds', 0):.1f} s"]
        from pytest_tinyml.emulate.insn_plugin import ClassCounts

        counts = None
        note = str(meta.get("counts_note", ""))
        if isinstance(meta.get("instruction_counts"), dict):
            try:
                counts = ClassCounts.from_dict(meta["instruction_counts"])
            except (TypeError, ValueError):
                return None  # a damaged entry: run again
        return FirmwareResult(
            outputs=outputs,
            elf_path=Path(meta["elf_path"]),
            build_cached=True,
            log=log,
            instruction_counts=counts,
            counts_note=note,
            **fields,
        )
