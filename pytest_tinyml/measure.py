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
        return tflm.allocate(self.tflite_bytes)

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

        stages = ("litert", "tflm") if self.mode == "int8" else ("litert",)
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
        if len(inputs) != 1:
            raise NotEvaluable(
                f"the firmware harness feeds one input tensor; this model has {len(inputs)}",
                "audit a single-input model",
            )
        tensor = inputs[0]
        if tensor.dtype != "int8":
            raise NotEvaluable(
                f"the firmware harness runs int8 models; the input is {tensor.dtype}",
                "quantize the model to int8 with int8 input and output",
            )
        shape = [d if d > 0 else 1 for d in tensor.shape]
        rng = np.random.default_rng(int(self.sha256[:8], 16))
        return [rng.integers(-128, 128, size=shape, dtype=np.int8) for _ in range(samples)]

    @cached_measurement
    def firmware(self) -> Any:
        from pytest_tinyml import emulate

        if not self.firmware_spec.enabled:
            raise NotEvaluable("firmware items are disabled in the spec", "set constraints.firmware.enabled: true")
        status = emulate.toolchain_status()
        if not status.ok:
            raise NotEvaluable(f"missing {', '.join(status.missing)}", status.hint)
        unsupported = emulate.unsupported_ops(self.model_info)
        if unsupported:
            raise NotEvaluable(
                f"the firmware runtime does not implement {', '.join(unsupported)}",
                "audit models that use only the ops listed in README (firmware runtime)",
            )
        return emulate.run_firmware(
            self.tflite_bytes,
            self.firmware_inputs,
            machine=self.firmware_machine,
            core=self.firmware_core,
            clock_hz=self.board.clock_hz,
            cache_dir=self.options.cache_dir / "firmware",
            emulator=self.options.emulator or self.firmware_spec.emulator,
        )

    @cached_measurement
    def tflm_outputs(self) -> list[Any]:
        from pytest_tinyml.analysis import tflm

        return list(tflm.invoke(self.tflite_bytes, self.firmware_inputs))

    def firmware_if_available(self) -> Any | None:
        """The firmware run if it happened here, else None (never raises: firmware items report why)."""
        try:
            return self.firmware
        except (NotEvaluable, TinyMLError):
            return None
