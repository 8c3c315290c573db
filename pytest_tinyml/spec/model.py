"""Typed view of a validated spec. Built only by :func:`pytest_tinyml.spec.loader.load_spec`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_tinyml.spec.units import Size


@dataclass(frozen=True)
class ModelRef:
    """Where the model comes from: ``kind`` is builder, keras, saved_model or tflite (``none`` for a spec
    that only gives constraints and a board to ``--tinyml-model`` audits)."""

    kind: str
    value: str
    path: Path | None = None  # resolved file for keras / saved_model / tflite (relative to the spec)
    args: dict[str, Any] = field(default_factory=dict)  # builder keyword arguments


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # builtin name (mnist_offline, mnist, fashion_mnist, svhn) or module:function
    preprocess: str = "x/255"  # x/255, x/127.5-1, x-128, none
    validation: float = 0.1  # fraction of the training data held out for early stopping
    test: float | int | None = None  # None: the dataset's own test split; int: count; float: fraction
    limit: int | None = None  # use at most this many training images
    seed: int = 0
    cache_dir: Path | None = None
    augment: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingSpec:
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "adam"
    learning_rate: float | None = None
    early_stopping: int = 3
    loss_from_logits: bool | None = None  # None: inferred from the model's last layer
    seed: int = 0


@dataclass(frozen=True)
class QuantizationSpec:
    modes: tuple[str, ...] = ("int8",)
    representative_samples: int = 400
    qat_epochs: int = 2


@dataclass(frozen=True)
class Limit:
    """A byte limit: either the board's (``board=True``) or explicit."""

    board: bool
    size: Size | None = None


@dataclass(frozen=True)
class FirmwareSpec:
    samples: int = 1000
    machine: str | None = None
    emulator: str | None = None  # None: QEMU where the board has a QEMU machine, else Renode when installed
    enabled: bool = True
    kernels: str | None = None  # TFLM kernel set: cmsis_nn or reference; None = by the board's core


@dataclass(frozen=True)
class RegressionSpec:
    size_bytes: int | None = None
    accuracy_points: float | None = None
    arena_bytes: int | None = None
    latency_seconds: float | None = None


@dataclass(frozen=True)
class Constraints:
    max_size: Size | None = None
    io_dtype: str | None = None
    ops: str | None = None
    max_accuracy_drop: float | None = None
    min_accuracy: float | None = None
    arena: Limit | None = None
    flash: Limit | None = None
    ram_reserve: Size | None = None
    max_latency: float | None = None
    firmware: FirmwareSpec | None = None
    regression: RegressionSpec = field(default_factory=RegressionSpec)


#: What ``--tinyml-model`` applies when no spec is given: the design defaults.
AUDIT_DEFAULTS = Constraints(
    max_size=Size(50 * 1024, "50 KiB"),
    io_dtype="int8",
    ops="tflm",
    arena=Limit(board=True),
    flash=Limit(board=True),
    firmware=FirmwareSpec(samples=20),
)


@dataclass(frozen=True)
class Spec:
    path: Path
    name: str
    model: ModelRef
    dataset: DatasetSpec | None
    training: TrainingSpec
    quantization: QuantizationSpec
    board: str | None
    constraints: Constraints
    raw: dict[str, Any]
    locations: dict[tuple[str | int, ...], tuple[int, int]] = field(default_factory=dict, compare=False)
    description: str = ""

    def where(self, *path: str | int) -> str:
        """``specs/x.yaml:12:5`` for a field path (the nearest enclosing one that has a location)."""
        key = tuple(path)
        while key and key not in self.locations:
            key = key[:-1]
        line, col = self.locations.get(key, (1, 1))
        return f"{self.path}:{line}:{col}"

    @property
    def builds(self) -> bool:
        """True when the model has to be built (trained or converted) rather than read as a .tflite."""
        return self.model.kind not in ("tflite", "none")
