"""What is measured on one target, each computed lazily, once, and shared by the target's items.

:class:`Measurements` holds a :class:`~pytest_tinyml.target.TargetDescription` and one typed
:class:`~pytest_tinyml.target.measurement` per fact (the model, TFLM's allocation and op report, the
arena, flash, accuracy, the firmware inputs and run, host TFLM's outputs). A failure (TinyMLError /
NotEvaluable) is cached and re-raised too, so every item that needs it reports the same failure. Tests
give values (or exceptions) through the constructor instead of computing them; ``Measurements.arena.peek(m)``
says what was already computed without computing it (the records need that).

The firmware values (machine, core, emulator, runtime, inputs) are decided here and handed to
:mod:`pytest_tinyml.emulate.firmware` as explicit values in a :class:`FirmwareRequest`; emulate never calls
back. Nothing here imports pytest or TensorFlow at module level.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml.errors import NotEvaluable, TinyMLError
from pytest_tinyml.kinds import Emulator
from pytest_tinyml.target import SpecArtifacts, TargetDescription, measurement

if TYPE_CHECKING:
    from pytest_tinyml.analysis.flash import FlashEstimate
    from pytest_tinyml.analysis.model import ModelInfo
    from pytest_tinyml.analysis.tflm import Arena32, OpSupport, TflmAllocation
    from pytest_tinyml.analysis.vela import VelaResult
    from pytest_tinyml.boards import Board
    from pytest_tinyml.emulate.policy import RuntimeChoice
    from pytest_tinyml.emulate.request import FirmwareRequest
    from pytest_tinyml.emulate.result import FirmwareResult
    from pytest_tinyml.options import RunOptions
    from pytest_tinyml.pipeline.evaluate import AccuracyReport
    from pytest_tinyml.spec.model import Constraints, FirmwareSpec, Spec

_UNSET: Any = object()


class Measurements:
    """The lazily computed facts of one target. ``firmware_selected``: a ``firmware`` item of this target
    will run, so the ``arena`` and ``flash`` items measure on the target too (:meth:`select_firmware`; they
    never build firmware otherwise). Keyword arguments provide measurements (a value, or a TinyMLError /
    NotEvaluable to fail with) instead of computing them."""

    def __init__(
        self,
        target: TargetDescription,
        *,
        firmware_selected: bool = False,
        tflite_path: Path | BaseException = _UNSET,
        tflite_bytes: bytes | BaseException = _UNSET,
        model_info: ModelInfo | BaseException = _UNSET,
        tflm_allocation: TflmAllocation | BaseException = _UNSET,
        tflm_ops: list[OpSupport] | BaseException = _UNSET,
        arena: Arena32 | BaseException = _UNSET,
        flash: FlashEstimate | BaseException = _UNSET,
        accuracy: AccuracyReport | BaseException = _UNSET,
        firmware_inputs: list[Any] | BaseException = _UNSET,
        firmware_runtime_choice: RuntimeChoice | BaseException = _UNSET,
        firmware: FirmwareResult | BaseException = _UNSET,
        tflm_outputs: list[Any] | BaseException = _UNSET,
    ) -> None:
        self.target = target
        self.firmware_selected = firmware_selected
        given: list[tuple[measurement[Any], Any]] = [
            (Measurements.tflite_path, tflite_path), (Measurements.tflite_bytes, tflite_bytes),
            (Measurements.model_info, model_info), (Measurements.tflm_allocation, tflm_allocation),
            (Measurements.tflm_ops, tflm_ops), (Measurements.arena, arena), (Measurements.flash, flash),
            (Measurements.accuracy, accuracy), (Measurements.firmware_inputs, firmware_inputs),
            (Measurements.firmware_runtime_choice, firmware_runtime_choice), (Measurements.firmware, firmware),
            (Measurements.tflm_outputs, tflm_outputs),
        ]
        for field, value in given:
            if value is not _UNSET:
                field.provide(self, value)

    def select_firmware(self) -> None:
        """A firmware item of this target was selected to run (the session says so after deselection)."""
        self.firmware_selected = True

    # --- the description ---------------------------------------------------------------------------------
    @property
    def label(self) -> str:
        return self.target.label

    @property
    def source(self) -> str:
        return self.target.source

    @property
    def path(self) -> Path | None:
        return self.target.path

    @property
    def constraints(self) -> Constraints:
        return self.target.constraints

    @property
    def board(self) -> Board:
        return self.target.board

    @property
    def options(self) -> RunOptions:
        return self.target.options

    @property
    def spec(self) -> Spec | None:
        return self.target.spec

    @property
    def mode(self) -> str | None:
        return self.target.mode

    @property
    def model_path(self) -> Path | None:
        return self.target.model_path

    @property
    def artifacts(self) -> SpecArtifacts | None:
        return self.target.artifacts

    @property
    def firmware_spec(self) -> FirmwareSpec:
        return self.target.firmware_spec

    # --- the model ---------------------------------------------------------------------------------------
    @measurement
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

    @measurement
    def tflite_bytes(self) -> bytes:
        from pytest_tinyml.analysis.model import load_model_bytes

        return load_model_bytes(self.tflite_path)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.tflite_bytes).hexdigest()

    @measurement
    def model_info(self) -> ModelInfo:
        from pytest_tinyml.analysis.model import parse_model

        return parse_model(self.tflite_bytes, str(self.tflite_path))

    # --- TFLM --------------------------------------------------------------------------------------------
    @measurement
    def tflm_allocation(self) -> TflmAllocation:
        from pytest_tinyml.analysis import tflm

        self.model_info  # noqa: B018  (a malformed model fails here with its offset, before TFLM sees it)
        return tflm.allocate(self.tflite_bytes, timeout=self.options.tflm_timeout)

    @measurement
    def tflm_ops(self) -> list[OpSupport]:
        from pytest_tinyml.analysis import tflm

        return tflm.tflm_op_report(self.model_info, self.tflm_allocation)

    @measurement
    def arena(self) -> Arena32:
        from pytest_tinyml.analysis import tflm

        alloc = self.tflm_allocation
        if not alloc.ok:
            raise NotEvaluable(
                "TFLM cannot allocate this model, so it has no arena size (see the tflm_ops item)",
                "make the model TFLM-compatible (int8 ops, registered custom ops)",
            )
        return tflm.arena_32bit(self.model_info, alloc, kernels=self.tflm_kernels)

    @property
    def tflm_kernels(self) -> str:
        """The TFLM kernel set this target's firmware uses (``--tinyml-kernels``, the spec's, else by core):
        the host arena estimate is made for it too."""
        from pytest_tinyml.emulate.tflm_tree import default_kernels

        chosen = self.options.kernels or self.firmware_spec.kernels
        if chosen:
            return chosen
        return default_kernels(self.board.core.removesuffix("f"))

    @measurement
    def flash(self) -> FlashEstimate:
        from pytest_tinyml.analysis.flash import estimate_flash

        return estimate_flash(self.model_info)

    # --- the Ethos-U NPU (Arm's Vela compiler) ----------------------------------------------------------
    @measurement
    def vela(self) -> VelaResult:
        """Vela's compilation of the model for the board's NPU (NotEvaluable without an NPU or without Vela); a
        model Vela already compiled is read as it is (its ``ethos-u`` operators' scratch and flash tensors)."""
        from pytest_tinyml.analysis import vela

        npu = self.board.npu
        if npu is None:
            raise NotEvaluable(f"board {self.board.name} has no Ethos-U NPU", "pick a board with an npu: section")
        if vela.ETHOS_U_OP in self.model_info.op_names:  # compiled by Vela already: judged from the file
            return vela.compiled_model_facts(self.model_info, len(self.tflite_bytes), accelerator=npu.accelerator,
                                             system_config=npu.system_config, memory_mode=npu.memory_mode)
        vela.require_vela()
        return vela.compile_for_npu(self.tflite_bytes, accelerator=npu.accelerator, system_config=npu.system_config,
                                    memory_mode=npu.memory_mode, config=npu.config, clock_hz=npu.clock_hz)

    # --- accuracy ----------------------------------------------------------------------------------------
    @measurement
    def accuracy(self) -> AccuracyReport:
        if self.spec is None or self.spec.dataset is None or self.artifacts is None:
            raise NotEvaluable(
                "no dataset: accuracy needs the spec's dataset and a model built from it",
                "run with --tinyml-spec naming a spec with a 'dataset:' section and a builder or Keras model",
            )
        from pytest_tinyml.pipeline import evaluate_accuracy

        stages = ("litert", "tflm")  # TFLM's own answers; a model TFLM refuses is reported as unavailable
        return evaluate_accuracy(
            self.spec,
            self.artifacts.build,
            self.mode or "int8",
            cache_dir=self.options.cache_dir,
            stages=stages,
            progress=self.options.progress,
            extra_loaders=self.options.extra_loaders,
            tflm_timeout=self.options.tflm_timeout,
        )

    # --- firmware: the values decided here, the run in pytest_tinyml.emulate.firmware ----------------------
    def require_model_fits_flash(self) -> None:
        """NotEvaluable when the model file alone is larger than the board's flash (before any firmware work)."""
        from pytest_tinyml.emulate import firmware

        firmware.require_model_fits_flash(self.model_info.size_bytes, self.board)

    @property
    def firmware_machine(self) -> str:
        from pytest_tinyml.emulate import firmware

        return firmware.machine(self.firmware_spec, self.board)

    @property
    def board_core_emulated(self) -> bool:
        from pytest_tinyml.emulate import firmware

        return firmware.board_core_emulated(self.board)

    @property
    def firmware_core(self) -> str:
        from pytest_tinyml.emulate import firmware

        return firmware.core(self.board, self.firmware_machine)

    @property
    def firmware_emulator(self) -> str:
        from pytest_tinyml.emulate import firmware

        return firmware.emulator(self.options.emulator, self.firmware_spec, self.board)

    @measurement
    def firmware_inputs(self) -> list[Any]:
        """The inputs the firmware and host TFLM both run: the spec's test images, else seeded random int8."""
        import numpy as np

        samples = self.options.firmware_samples or self.firmware_spec.samples
        spec = self.spec
        if spec is not None and spec.dataset is not None and self.artifacts is not None:
            from pytest_tinyml.pipeline import test_inputs_int8

            return list(test_inputs_int8(spec, self.artifacts.build, self.mode or "int8", samples,
                                         extra_loaders=self.options.extra_loaders))
        tensors = self.model_info.inputs
        if not tensors:
            raise NotEvaluable("the model has no input tensor", "audit a model with an int8 input")
        for tensor in tensors:
            if tensor.dtype != "int8":
                raise NotEvaluable(
                    f"audits feed seeded random int8 inputs; input {tensor.name} is {tensor.dtype}",
                    "quantize the model to int8 with int8 input and output, or judge it with a spec and its dataset",
                )
        for tensor in tensors:  # hardening: fuzzed shapes must not reach numpy
            if any(d <= 0 for d in tensor.shape) or tensor.num_elements > self.board.ram_bytes:
                raise NotEvaluable(
                    f"input {tensor.name} has shape {tensor.shape}: a dimension <= 0 or more elements than "
                    f"{self.board.name} has RAM",
                    "audit a model whose input tensors have positive dimensions and fit the board",
                )
        rng = np.random.default_rng(int(self.sha256[:8], 16))
        if len(tensors) == 1:
            return [rng.integers(-128, 128, size=tensors[0].shape, dtype=np.int8) for _ in range(samples)]
        return [tuple(rng.integers(-128, 128, size=t.shape, dtype=np.int8) for t in tensors) for _ in range(samples)]

    @measurement
    def firmware_runtime_choice(self) -> RuntimeChoice:
        """Real TFLM (with the kernel set for this core) when its sources can be had, else the project's
        runtime with the reason (never silently: the firmware items print it)."""
        from pytest_tinyml.emulate.policy import choose_runtime

        options = self.options
        return choose_runtime(
            options.firmware_runtime or options.environment.firmware_runtime,
            core=self.firmware_core,
            kernels=options.kernels or self.firmware_spec.kernels,
            sources_dir=options.sources_dir,
            offline=options.offline,
            mirror=options.tflm_mirror or options.environment.tflm_mirror,
            progress=options.progress,
            tflm_root=options.tflm_root or options.environment.tflm_root,
            deadline=options.download_deadline,
        )

    def firmware_request(self) -> FirmwareRequest:
        """The firmware run this target asks for (raises NotEvaluable when it cannot have one)."""
        from pytest_tinyml.emulate import firmware
        from pytest_tinyml.emulate.request import FirmwareRequest
        from pytest_tinyml.kinds import KernelSet

        if not self.firmware_spec.enabled:
            raise NotEvaluable("firmware items are disabled in the spec", "set constraints.firmware.enabled: true")
        self.require_model_fits_flash()  # issue 13: never compile a model the board cannot hold
        chosen_emulator = self.firmware_emulator
        firmware.require_toolchain(chosen_emulator)
        choice = self.firmware_runtime_choice
        firmware.require_runtime_supports(self.model_info, choice)
        samples = self.firmware_inputs
        board = self.board
        return FirmwareRequest(
            model=self.tflite_bytes,
            inputs=tuple(samples),
            machine=self.firmware_machine,
            core=self.firmware_core,
            emulator=Emulator(chosen_emulator),
            runtime=choice.runtime,
            kernels=KernelSet(choice.tree.kernels) if choice.tree is not None else None,
            tree=choice.tree,
            memory=board.memory,
            platform=board.renode,
            clock_hz=board.clock_hz,
            flash_cache=firmware.flash_cache(board),
            arena_bytes=0,  # real TFLM: all free RAM; the firmware bisects the smallest arena that allocates
            runtime_note=choice.note,
            timeout=self.options.emulator_timeout,
        )

    @measurement
    def firmware(self) -> FirmwareResult:
        """The int8 model built into firmware and run on the emulated machine (cached by content)."""
        from pytest_tinyml.emulate import firmware

        return firmware.run(self.firmware_request(), self.options)

    @measurement
    def tflm_outputs(self) -> list[Any]:
        """Host TFLM's outputs for the firmware inputs (the bit-exact reference), cached by content."""
        from pytest_tinyml.emulate import firmware

        return firmware.host_outputs(self.tflite_bytes, self.firmware_inputs, self.options)

    def firmware_for_memory(self) -> FirmwareResult | None:
        """The firmware run for the memory items: computed when this target's firmware items are selected,
        reused when it already ran, else None (never raises: the firmware items report failures)."""
        value = Measurements.firmware.peek(self)
        if value is None and self.firmware_selected:
            try:
                value = self.firmware
            except (NotEvaluable, TinyMLError):
                return None
        return None if value is None or isinstance(value, BaseException) else value

    def firmware_divergence(self, sample: int) -> str:
        from pytest_tinyml.emulate import firmware

        return firmware.divergence(self.firmware_request(), sample, self.options)


__all__ = ["Measurements"]
