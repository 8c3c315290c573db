"""What a ``.tflite`` holds, as plain frozen dataclasses: operator codes, tensors, operators, subgraphs
and the model (with the derived views: ops by name, weight bytes, the quantization scheme)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pytest_tinyml.analysis.schema import WEIGHTED_OPS


@dataclass(frozen=True)
class OperatorCodeInfo:
    index: int
    code: int  # real builtin code: max(builtin_code, deprecated_builtin_code)
    name: str  # schema name, custom_code for custom ops, BUILTIN_<n> for codes unknown to ``tflite``
    version: int
    custom_code: str | None

    @property
    def is_custom(self) -> bool:
        return self.custom_code is not None


@dataclass(frozen=True)
class TensorInfo:
    index: int
    subgraph: int
    name: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None
    dtype: str  # lowercase schema type name: 'int8', 'float32', ...
    nbytes: int  # constant: bytes of its buffer; activation: elements x element size
    buffer: int  # buffer index (0 = no data)
    is_constant: bool  # backed by a non-empty buffer
    is_variable: bool
    scale: tuple[float, ...] = ()
    zero_point: tuple[int, ...] = ()
    quantized_dimension: int = 0

    @property
    def num_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(d, 1)
        return n

    @property
    def quantized(self) -> bool:
        return bool(self.scale)

    @property
    def per_channel(self) -> bool:
        return len(self.scale) > 1

    @property
    def dynamic(self) -> bool:
        """True when the shape signature has unknown (-1) dimensions."""
        return self.shape_signature is not None and any(d < 0 for d in self.shape_signature)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "subgraph": self.subgraph,
            "name": self.name,
            "shape": list(self.shape),
            "shape_signature": None if self.shape_signature is None else list(self.shape_signature),
            "dtype": self.dtype,
            "nbytes": self.nbytes,
            "buffer": self.buffer,
            "is_constant": self.is_constant,
            "is_variable": self.is_variable,
            "scale": list(self.scale),
            "zero_point": list(self.zero_point),
            "quantized_dimension": self.quantized_dimension,
        }


@dataclass(frozen=True)
class OpInfo:
    index: int
    subgraph: int
    name: str  # builtin name, or the custom_code of a custom op
    code: int  # builtin code (32 = CUSTOM)
    is_custom: bool
    version: int
    inputs: tuple[int, ...]  # tensor indices in the subgraph; -1 = optional input left out
    outputs: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)  # stride_w/h, padding, fused_activation, ...
    macs: int = 0
    weight_bytes: int = 0  # bytes of the op's constant inputs

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "subgraph": self.subgraph,
            "name": self.name,
            "code": self.code,
            "is_custom": self.is_custom,
            "version": self.version,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "options": dict(self.options),
            "macs": self.macs,
            "weight_bytes": self.weight_bytes,
        }


@dataclass(frozen=True)
class SubgraphInfo:
    index: int
    name: str
    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def input_tensors(self) -> list[TensorInfo]:
        return [self.tensors[i] for i in self.inputs]

    @property
    def output_tensors(self) -> list[TensorInfo]:
        return [self.tensors[i] for i in self.outputs]

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "name": self.name,
            "inputs": list(self.inputs),
            "outputs": list(self.outputs),
            "ops": [op.to_dict() for op in self.ops],
            "tensors": [t.to_dict() for t in self.tensors],
        }


@dataclass(frozen=True)
class ModelInfo:
    source: str
    size_bytes: int  # len() of the file
    schema_version: int
    description: str
    operator_codes: tuple[OperatorCodeInfo, ...]
    subgraphs: tuple[SubgraphInfo, ...]
    num_buffers: int
    metadata_names: tuple[str, ...] = ()

    # -- inputs / outputs (subgraph 0) --------------------------------------------------------------
    @property
    def inputs(self) -> list[TensorInfo]:
        return self.subgraphs[0].input_tensors

    @property
    def outputs(self) -> list[TensorInfo]:
        return self.subgraphs[0].output_tensors

    # -- ops ------------------------------------------------------------------------------------------
    @property
    def ops(self) -> list[OpInfo]:
        """Every op of every subgraph, subgraph 0 first, in execution order."""
        return [op for sg in self.subgraphs for op in sg.ops]

    @property
    def op_names(self) -> set[str]:
        return {op.name for op in self.ops}

    @property
    def ops_by_name(self) -> dict[str, int]:
        return dict(Counter(op.name for op in self.ops))

    @property
    def custom_ops(self) -> list[str]:
        """Names of the custom ops used, sorted, each once."""
        return sorted({op.name for op in self.ops if op.is_custom})

    @property
    def total_macs(self) -> int:
        return sum(op.macs for op in self.ops)

    # -- tensors --------------------------------------------------------------------------------------
    @property
    def tensors(self) -> list[TensorInfo]:
        return [t for sg in self.subgraphs for t in sg.tensors]

    @cached_property
    def weight_bytes(self) -> int:
        """Bytes of constant data (each buffer counted once even if several tensors share it)."""
        seen: dict[int, int] = {}
        for t in self.tensors:
            if t.is_constant:
                seen[t.buffer] = t.nbytes
        return sum(seen.values())

    def tensor(self, subgraph: int, index: int) -> TensorInfo:
        return self.subgraphs[subgraph].tensors[index]

    def largest_tensors(self, n: int = 5, *, constant: bool | None = None) -> list[TensorInfo]:
        """The ``n`` largest tensors by bytes; ``constant=True`` weights only, ``False`` activations only."""
        pool = [t for t in self.tensors if constant is None or t.is_constant == constant]
        pool.sort(key=lambda t: (-t.nbytes, t.subgraph, t.index))
        return pool[: max(n, 0)]

    @cached_property
    def quantization(self) -> str:
        """Scheme the converter used, judged from the weighted ops (CONV/FC/...) and constant types.

        ``"int8"`` (integer-only activations, int8 weights), ``"int16x8"`` (int16 activations),
        ``"float16"`` (float16 constants), ``"dynamic_range"`` (float activations fed to int8 weights:
        a hybrid model), ``"float32"``, or ``"mixed"``.
        """
        sg_tensors = [sg.tensors for sg in self.subgraphs]
        if any(t.is_constant and t.dtype == "float16" for t in self.tensors):
            return "float16"
        act_types: set[str] = set()
        weight_types: set[str] = set()
        for op in self.ops:
            if op.name not in WEIGHTED_OPS:
                continue
            tensors = sg_tensors[op.subgraph]
            for i in op.inputs:
                if i < 0:
                    continue
                t = tensors[i]
                (weight_types if t.is_constant else act_types).add(t.dtype)
        if not act_types and not weight_types:
            act_types = {t.dtype for t in self.tensors if not t.is_constant}
        if "float32" in act_types and weight_types & {"int8", "uint8", "int4"}:
            return "dynamic_range"
        if act_types and act_types <= {"int8", "uint8"}:
            return "int8"
        if act_types and act_types <= {"int16"}:
            return "int16x8"
        if act_types and act_types <= {"float32"} and weight_types <= {"float32"}:
            return "float32"
        return "mixed"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "size_bytes": self.size_bytes,
            "schema_version": self.schema_version,
            "description": self.description,
            "quantization": self.quantization,
            "weight_bytes": self.weight_bytes,
            "total_macs": self.total_macs,
            "ops_by_name": self.ops_by_name,
            "custom_ops": self.custom_ops,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "operator_codes": [
                {
                    "index": c.index,
                    "code": c.code,
                    "name": c.name,
                    "version": c.version,
                    "custom": c.is_custom,
                }
                for c in self.operator_codes
            ],
            "num_buffers": self.num_buffers,
            "metadata_names": list(self.metadata_names),
            "subgraphs": [sg.to_dict() for sg in self.subgraphs],
        }
