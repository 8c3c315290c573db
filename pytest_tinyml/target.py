"""A target: one model to judge on one board, with its measurements computed lazily and once.

A target is a ``.tflite`` given to ``--tinyml-model``, a spec whose model is a ``.tflite``, or one
quantization mode of a spec that builds its model. :func:`spec_targets` and :func:`model_target` are
the only places targets are made (labels, constraints per mode). Checks read what they need from a
:class:`Target`; each measurement is computed on first use and cached (errors too), so the items of one
target share one build, one TFLM allocation and one firmware run.

Nothing here imports pytest or TensorFlow at module level; building goes through
:mod:`pytest_tinyml.pipeline`, which imports TensorFlow only when it really has to train or convert;
firmware policy lives in :mod:`pytest_tinyml.emulate.firmware`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml._util.text import has_unsafe, printable
from pytest_tinyml.boards import Board
from pytest_tinyml.errors import NotEvaluable, TinyMLError
from pytest_tinyml.spec.model import AUDIT_DEFAULTS, Constraints, FirmwareSpec, Spec

if TYPE_CHECKING:
    from pytest_tinyml.options import RunOptions
    from pytest_tinyml.records import TargetRecord

#: Quantization modes that are deployed; other modes of a multi-mode spec are compared, not deployed.
DEPLOYED_MODES = ("int8", "qat")


class _Failed:
    """A cached failure: re-raised on every access so every item that needs it reports it."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


_MEMO = "_cache_"


def cached_measurement(fn: Callable[[Any], Any]) -> property:
    """Like ``functools.cached_property`` but also caches TinyMLError / NotEvaluable failures."""
    attr = f"{_MEMO}{fn.__name__}"

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
        from pytest_tinyml.pipeline import build_artifacts

        return build_artifacts(
            self.spec,
            cache_dir=self.options.cache_dir,
            rebuild=self.options.rebuild,
            progress=self.options.progress,
            extra_loaders=self.options.extra_loaders,
            load_model=self.options.load_model,
        )


class Target:
    """One model on one board under one set of constraints; its facts are computed lazily, once."""

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
        path: Path | None = None,
        source: str | None = None,
    ) -> None:
        self.label = label
        #: the spec or model file as displayed (the label without ``[mode]``)
        self.source = source or (label.removesuffix(f"[{mode}]") if mode else label)
        #: the file the target comes from (the spec or the .tflite), for reports and node ids
        self.path = path if path is not None else (spec.path if spec is not None else model_path)
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
        return tflm.arena_32bit(self.model_info, alloc, kernels=self.tflm_kernels)

    @property
    def tflm_kernels(self) -> str:
        """The TFLM kernel set this target's firmware uses (``--tinyml-kernels``, the spec's, else by core):
        the host arena estimate is made for it too."""
        from pytest_tinyml.emulate.tflm_build import default_kernels

        chosen = self.options.kernels or self.firmware_spec.kernels
        if chosen:
            return chosen
        core = self.board.core.removesuffix("f")
        return default_kernels(core)

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
        )

    # --- firmware (policy in pytest_tinyml.emulate.firmware) --------------------------------------
    @property
    def firmware_spec(self) -> FirmwareSpec:
        return self.constraints.firmware or FirmwareSpec()

    @property
    def firmware_machine(self) -> str:
        from pytest_tinyml.emulate import firmware

        return firmware.machine(self)

    @property
    def board_core_emulated(self) -> bool:
        from pytest_tinyml.emulate import firmware

        return firmware.board_core_emulated(self)

    @property
    def firmware_core(self) -> str:
        from pytest_tinyml.emulate import firmware

        return firmware.core(self)

    @cached_measurement
    def firmware_inputs(self) -> list[Any]:
        from pytest_tinyml.emulate import firmware

        return firmware.inputs(self)

    @cached_measurement
    def firmware(self) -> Any:
        from pytest_tinyml.emulate import firmware

        return firmware.run(self)

    @cached_measurement
    def tflm_outputs(self) -> list[Any]:
        from pytest_tinyml.emulate import firmware

        return firmware.tflm_outputs(self)

    #: Set by the plugin after deselection when a ``firmware`` item of this target will run: then the
    #: ``arena`` and ``flash`` items measure on the target too (they never build firmware otherwise).
    firmware_selected: bool = False

    def firmware_for_memory(self) -> Any | None:
        """The firmware run for the memory items: computed when this target's firmware items are selected,
        reused when it already ran, else None (never raises: the firmware items report failures)."""
        value = self.computed("firmware")
        if value is None and self.firmware_selected:
            try:
                value = self.firmware
            except (NotEvaluable, TinyMLError):
                return None
        return None if value is None or isinstance(value, BaseException) else value

    @cached_measurement
    def firmware_runtime_choice(self) -> Any:
        from pytest_tinyml.emulate import firmware

        return firmware.runtime_choice(self)

    def firmware_divergence(self, sample: int) -> str:
        from pytest_tinyml.emulate import firmware

        return firmware.divergence(self, sample)

    # --- what was computed ------------------------------------------------------------------------
    def computed(self, name: str) -> Any:
        """The measurement ``name`` if it was already computed in this process (never computes it):
        the value, a :class:`NotEvaluable` / :class:`TinyMLError` it failed with, or None."""
        value = self.__dict__.get(f"{_MEMO}{name}")
        if isinstance(value, _Failed):
            return value.exc
        return value

    def record(self) -> TargetRecord:
        """What the reports need of this target, from what was already computed (never computes)."""
        from pytest_tinyml.records import ESCAPED_NAME, ESCAPED_NAME_NOTE, TargetRecord, plain

        facts: dict[str, Any] = {}
        arena = self.computed("arena")
        if arena is not None and not isinstance(arena, BaseException):
            facts["arena"] = {"bytes": int(arena.bytes), "host_bytes": getattr(arena, "host_bytes", None),
                              "method": str(getattr(arena, "method", "") or "") or None}
            from pytest_tinyml.emulate.firmware import export_arena_bytes

            fw = self.computed("firmware")
            facts["arena"]["export_bytes"] = export_arena_bytes(arena, None if isinstance(fw, BaseException) else fw)
        else:  # the arena item measured on the target (real TFLM) without the host estimate
            ran = self.computed("firmware")
            min_bytes = 0 if ran is None or isinstance(ran, BaseException) else int(getattr(ran, "arena_min_bytes", 0))
            if min_bytes:
                facts["arena"] = {"bytes": min_bytes, "host_bytes": None, "method": "target", "export_bytes": min_bytes}
        flash = self.computed("flash")
        if flash is not None and not isinstance(flash, BaseException):
            model_b, code_b = int(flash.model_bytes), int(flash.runtime_code_bytes)
            facts["flash"] = {"bytes": model_b + code_b, "model_bytes": model_b, "runtime_code_bytes": code_b}
        accuracy = self.computed("accuracy")
        if accuracy is not None and not isinstance(accuracy, BaseException):
            ci = getattr(accuracy, "drop_ci", None)
            facts["accuracy"] = {"stages": dict(getattr(accuracy, "stages", {}) or {}),
                                 "drop_points": getattr(accuracy, "drop_points", None),
                                 "drop_ci": list(ci) if ci is not None else None}
        for name in ("arena", "flash", "accuracy", "tflite_path"):
            value = self.computed(name)
            if isinstance(value, BaseException):
                facts.setdefault("not_measured", {})[name] = str(value)
        if self.path is not None and has_unsafe(str(self.path)):  # its label shows them escaped
            facts[ESCAPED_NAME] = ESCAPED_NAME_NOTE
        path = self.computed("tflite_path")
        model_path = path if path is not None and not isinstance(path, BaseException) else self.model_path
        regression = {k: v for k, v in asdict(self.constraints.regression).items() if v is not None}
        runtime = None
        if self.constraints.firmware is not None and self.constraints.firmware.enabled:
            choice = self.computed("firmware_runtime_choice")
            runtime = (getattr(choice, "runtime", None)
                       or self.options.firmware_runtime or os.environ.get("TINYML_FIRMWARE_RUNTIME") or "tinyml")
        return TargetRecord(
            label=self.label,
            kind="spec" if self.spec is not None or self.mode is not None else "model",
            board=self.board.name,
            spec=self.source if self.spec is not None else None,
            spec_name=printable(self.spec.name) if self.spec is not None else None,
            mode=self.mode,
            runtime=runtime,
            model_path=str(model_path) if model_path is not None else None,
            regression=regression,
            facts=plain(facts),
        )

    def preset(self, name: str, value: Any) -> None:
        """Provide the measurement ``name`` (a value, or an exception to fail with) without computing it."""
        self.__dict__[f"{_MEMO}{name}"] = _Failed(value) if isinstance(value, BaseException) else value


# --- the one place targets are made --------------------------------------------------------------------
def target_label(name: str, mode: str | None, modes: int) -> str:
    """``specs/x.yaml`` for a single-mode spec or a model, ``specs/x.yaml[int8]`` for one mode of several."""
    return name if mode is None or modes <= 1 else f"{name}[{mode}]"


def mode_constraints(constraints: Constraints, mode: str, modes: int) -> Constraints:
    """In a multi-mode spec, float modes are compared, not deployed: no firmware or latency items."""
    if modes <= 1 or mode in DEPLOYED_MODES:
        return constraints
    return replace(constraints, firmware=None, max_latency=None)


def spec_targets(
    spec: Spec, *, name: str, board: Board, options: RunOptions, artifacts: SpecArtifacts | None = None
) -> list[Target]:
    """The targets of a spec: one for a ``.tflite`` model, one per quantization mode for a built model."""
    if not spec.builds:
        assert spec.model.path is not None
        return [Target(label=name, constraints=spec.constraints, board=board, options=options, spec=spec,
                       model_path=spec.model.path, path=spec.path, source=name)]
    artifacts = artifacts or SpecArtifacts(spec, options)
    modes = spec.quantization.modes
    return [
        Target(
            label=target_label(name, mode, len(modes)),
            constraints=mode_constraints(spec.constraints, mode, len(modes)),
            board=board,
            options=options,
            spec=spec,
            mode=mode,
            artifacts=artifacts,
            path=spec.path,
            source=name,
        )
        for mode in modes
    ]


def model_target(
    path: Path, *, name: str, board: Board, options: RunOptions, constraints: Constraints | None = None
) -> Target:
    """The target of a ``.tflite`` audited on its own (audit defaults) or under a spec's constraints."""
    return Target(label=name, constraints=constraints or AUDIT_DEFAULTS, board=board, options=options,
                  model_path=path, path=path, source=name)
