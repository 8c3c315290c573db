"""What a target is: one model to judge on one board under one set of constraints (an immutable
:class:`TargetDescription`), and the build of a spec its modes share (:class:`SpecArtifacts`).

A target is a ``.tflite`` given to ``--tinyml-model``, a spec whose model is a ``.tflite``, or one
quantization mode of a spec that builds its model. :func:`spec_targets` and :func:`model_target` are
the only places targets are made (labels, constraints per mode). What is measured on a target lives in
:class:`pytest_tinyml.measurements.Measurements`.

Nothing here imports pytest or TensorFlow at module level; building goes through
:mod:`pytest_tinyml.pipeline`, which imports TensorFlow only when it really has to train or convert.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from pytest_tinyml.boards import Board
from pytest_tinyml.errors import NotEvaluable, TinyMLError
from pytest_tinyml.spec.model import AUDIT_DEFAULTS, Constraints, FirmwareSpec, Spec

if TYPE_CHECKING:
    from pytest_tinyml.options import RunOptions
    from pytest_tinyml.pipeline import BuildResult

#: Quantization modes that are deployed; other modes of a multi-mode spec are compared, not deployed.
DEPLOYED_MODES = ("int8", "qat")

T = TypeVar("T")


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A computed measurement: its value, or the TinyMLError / NotEvaluable it failed with."""

    value: T | None = None
    error: TinyMLError | NotEvaluable | None = None

    def get(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class measurement(Generic[T]):  # noqa: N801  (used like functools.cached_property)
    """Like :class:`functools.cached_property`, typed, and caching TinyMLError / NotEvaluable failures
    too: every item that needs a failed measurement reports the same failure, computed once.
    ``peek(obj)`` says what was computed without computing; ``provide(obj, value)`` injects a value (or
    an exception to fail with)."""

    def __init__(self, fn: Callable[[Any], T]) -> None:
        self.fn = fn
        self.name = fn.__name__
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> measurement[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> measurement[T] | T:
        if obj is None:
            return self
        outcome = self.outcome(obj)
        if outcome is None:
            try:
                outcome = Outcome(value=self.fn(obj))
            except (TinyMLError, NotEvaluable) as exc:
                outcome = Outcome(error=exc)
            vars(obj)[self.name] = outcome
        return outcome.get()

    def __set__(self, obj: object, value: T) -> None:  # a data descriptor: the stored Outcome never shadows it
        raise AttributeError(f"{self.name} is measured, not set (give it to the constructor)")

    def outcome(self, obj: object) -> Outcome[T] | None:
        """What was computed on ``obj`` (None: not yet)."""
        found = vars(obj).get(self.name)
        return found if isinstance(found, Outcome) else None

    def peek(self, obj: object) -> T | TinyMLError | NotEvaluable | None:
        """The value if already computed on ``obj``, the failure it ended with, or None (never computes)."""
        outcome = self.outcome(obj)
        if outcome is None:
            return None
        return outcome.error if outcome.error is not None else outcome.value

    def provide(self, obj: object, value: T | BaseException) -> None:
        if isinstance(value, (TinyMLError, NotEvaluable)):
            vars(obj)[self.name] = Outcome(error=value)
        else:
            vars(obj)[self.name] = Outcome(value=value)  # type: ignore[arg-type]


class SpecArtifacts:
    """The build of one spec, shared by the targets of its quantization modes."""

    def __init__(self, spec: Spec, options: RunOptions) -> None:
        self.spec = spec
        self.options = options

    @measurement
    def build(self) -> BuildResult:
        from pytest_tinyml.pipeline import build_artifacts

        return build_artifacts(
            self.spec,
            cache_dir=self.options.cache_dir,
            rebuild=self.options.rebuild,
            progress=self.options.progress,
            extra_loaders=self.options.extra_loaders,
            load_model=self.options.load_model,
        )


@dataclass(frozen=True, eq=False)
class TargetDescription:
    """One model on one board under one set of constraints (immutable; what is measured on it is a
    :class:`~pytest_tinyml.measurements.Measurements`)."""

    label: str
    constraints: Constraints
    board: Board
    options: RunOptions
    spec: Spec | None = None
    mode: str | None = None
    model_path: Path | None = None
    artifacts: SpecArtifacts | None = None
    #: the file the target comes from (the spec or the .tflite), for reports and node ids
    path: Path | None = None
    #: the spec or model file as displayed (the label without ``[mode]``)
    source: str = ""

    def __post_init__(self) -> None:
        if not self.source:
            mode = self.mode
            object.__setattr__(self, "source", self.label.removesuffix(f"[{mode}]") if mode else self.label)
        if self.path is None:
            object.__setattr__(self, "path", self.spec.path if self.spec is not None else self.model_path)

    @property
    def firmware_spec(self) -> FirmwareSpec:
        return self.constraints.firmware or FirmwareSpec()


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
) -> list[TargetDescription]:
    """The targets of a spec: one for a ``.tflite`` model, one per quantization mode for a built model."""
    if not spec.builds:
        assert spec.model.path is not None
        return [TargetDescription(label=name, constraints=spec.constraints, board=board, options=options, spec=spec,
                       model_path=spec.model.path, path=spec.path, source=name)]
    artifacts = artifacts or SpecArtifacts(spec, options)
    modes = spec.quantization.modes
    return [
        TargetDescription(
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
) -> TargetDescription:
    """The target of a ``.tflite`` audited on its own (audit defaults) or under a spec's constraints."""
    return TargetDescription(label=name, constraints=constraints or AUDIT_DEFAULTS, board=board, options=options,
                  model_path=path, path=path, source=name)
