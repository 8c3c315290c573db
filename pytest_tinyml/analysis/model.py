"""Read a ``.tflite`` file into plain dataclasses: operators, tensors, quantization, MACs, weight bytes.

No TensorFlow. The flatbuffer is walked with the bounds-checked reader in :mod:`._fb` (every offset is
validated before it is read, vector lengths are bounded by the file size), and the ``tflite`` package
supplies the schema's enum names (operators, tensor types, padding, activations). Any problem with the
file becomes one :class:`~pytest_tinyml.errors.ModelFileError` line naming the file, what is wrong, and
the fix.

MACs (multiply-accumulates) are counted for the ops that dominate compute, from tensor shapes:

- ``CONV_2D``: ``batch * out_h * out_w * out_c * k_h * k_w * in_c`` (``in_c`` = the filter's input
  channels, so grouped convolutions count correctly);
- ``DEPTHWISE_CONV_2D``: ``batch * out_h * out_w * out_c * k_h * k_w``;
- ``FULLY_CONNECTED``: ``output elements * in_features`` (``output elements`` = batch rows x units);
- ``TRANSPOSE_CONV``: ``batch * in_h * in_w * in_c * k_h * k_w * out_c``;
- ``BATCH_MATMUL``: ``output elements * K``.

Other ops count 0 MACs. Ops in every subgraph are counted once (a ``WHILE`` body is not multiplied by
its trip count).
"""

from __future__ import annotations

import os
import stat
import struct
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from pytest_tinyml.analysis._fb import BudgetError, FlatbufferError, Reader, Table
from pytest_tinyml.analysis.names import MAX_DESCRIPTION_CHARS, clip
from pytest_tinyml.errors import ModelFileError

#: Files above this size are refused before reading, with one line: no microcontroller holds them (the
#: largest flash in boards.yaml is 8 MiB; external QSPI parts top out around 64 MiB) and every copy of
#: them (host TFLM child, digests, firmware image) is a memory hazard for the pytest process.
MAX_MODEL_BYTES = 64 << 20

TFLITE_IDENTIFIER = b"TFL3"

#: Tensors of higher rank are refused as corrupted (TFLite and TFLM kernels stop at 5-8 dimensions).
#: Without a bound, a damaged shape vector of thousands of dimensions gives element counts with
#: thousands of digits, which ``int`` -> ``str`` (reports, ``f"{n:,}"``) refuses to convert.
MAX_TENSOR_RANK = 16

_FIX_CORRUPT = "the file is incomplete or damaged: copy, download or re-export it again"
_FIX_CONVERT = "convert the model to TFLite with tf.lite.TFLiteConverter and pass the .tflite file"

# Bytes per element for each TFLite tensor type (by lowercase schema name). int4 is packed two per byte;
# string, resource and variant have no fixed element size.
_DTYPE_BITS = {
    "float32": 32,
    "float16": 16,
    "int32": 32,
    "uint8": 8,
    "int64": 64,
    "string": 0,
    "bool": 8,
    "int16": 16,
    "complex64": 64,
    "int8": 8,
    "float64": 64,
    "complex128": 128,
    "uint64": 64,
    "resource": 0,
    "variant": 0,
    "uint32": 32,
    "uint16": 16,
    "int4": 4,
    "bfloat16": 16,
}

# Ops whose constant second input is "the weights" (used to classify the quantization scheme).
_WEIGHTED_OPS = frozenset(
    {
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "TRANSPOSE_CONV",
        "BATCH_MATMUL",
        "CONV_3D",
        "SVDF",
        "UNIDIRECTIONAL_SEQUENCE_LSTM",
        "EMBEDDING_LOOKUP",
    }
)


def _enum_names(enum_class: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_") and isinstance(v, int)}


def _load_tflite_enums(*names: str) -> list[type]:
    """The ``tflite`` package's enum classes ``names``.

    ``import tflite`` executes its ``__init__``, which imports all ~190 schema modules (0.15-0.3 s).
    The enum modules are plain classes without imports, so they are loaded from the package directory
    directly; if that ever fails the package is imported the ordinary way.
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec("tflite")
        locations = list(spec.submodule_search_locations or []) if spec else []
        classes = []
        for name in names:
            path = os.path.join(locations[0], f"{name}.py")
            mod_spec = importlib.util.spec_from_file_location(f"_pytest_tinyml_tflite_{name}", path)
            if mod_spec is None or mod_spec.loader is None:
                raise ImportError(name)
            module = importlib.util.module_from_spec(mod_spec)
            mod_spec.loader.exec_module(module)
            classes.append(getattr(module, name))
        return classes
    except (ImportError, OSError, AttributeError, IndexError, SyntaxError):
        import tflite

        return [getattr(tflite, name) for name in names]


class _Schema:
    """Enum names from the ``tflite`` package, loaded on first use."""

    _loaded = False
    builtin_ops: dict[int, str] = {}
    tensor_types: dict[int, str] = {}
    padding: dict[int, str] = {}
    activations: dict[int, str] = {}
    options: dict[str, int] = {}

    @classmethod
    def load(cls) -> type[_Schema]:
        if not cls._loaded:
            ops, types, padding, activations, options = _load_tflite_enums(
                "BuiltinOperator", "TensorType", "Padding", "ActivationFunctionType", "BuiltinOptions"
            )
            cls.builtin_ops = _enum_names(ops)
            cls.tensor_types = {k: v.lower() for k, v in _enum_names(types).items()}
            cls.padding = _enum_names(padding)
            cls.activations = _enum_names(activations)
            cls.options = {v: k for k, v in _enum_names(options).items()}
            cls._loaded = True
        return cls


def builtin_op_name(code: int) -> str:
    """Schema name of a builtin operator code; ``BUILTIN_<n>`` for codes the ``tflite`` package lacks."""
    return _Schema.load().builtin_ops.get(code, f"BUILTIN_{code}")


# --------------------------------------------------------------------------------------------------
# Dataclasses
# --------------------------------------------------------------------------------------------------


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
            if op.name not in _WEIGHTED_OPS:
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


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


def load_model_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a ``.tflite`` file, after checking it is a complete, readable TFLite flatbuffer.

    Raises :class:`ModelFileError` (one line: file, problem, fix) for a missing file, a directory or
    other non-regular file, an empty or absurdly large file, something that is not a flatbuffer, a
    wrong file identifier, and truncated or inconsistent contents.
    """
    data = _read_file(path)
    parse_model(data, os.fspath(path))  # full structural check; cheap (milliseconds)
    return data


def _read_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular, non-empty file of sane size (file-system checks only)."""
    where = os.fspath(path)
    try:
        st = os.stat(where)
    except FileNotFoundError:
        raise ModelFileError(
            "model file not found", where=where, fix=f"check the path (relative to {os.getcwd()})"
        ) from None
    except OSError as exc:
        raise ModelFileError(
            f"cannot access the model file: {exc.strerror}", where=where, fix="check the path and permissions"
        ) from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(
            "is a directory, not a .tflite file",
            where=where,
            fix="pass the .tflite file itself (a SavedModel directory must be converted first)",
        )
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(
            "is not a regular file (device, pipe or socket)", where=where, fix="pass a .tflite file"
        )
    if st.st_size == 0:
        raise ModelFileError(
            "file is empty (0 bytes)",
            where=where,
            fix="re-export the model: the conversion or the copy did not finish",
        )
    if st.st_size > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"file is {st.st_size:,} bytes, more than the {MAX_MODEL_BYTES:,}-byte limit "
            "for any microcontroller flash; not read",
            where=where,
            fix="check this is the right file, or shrink the model (quantize, prune, fewer parameters)",
        )
    try:
        with open(where, "rb") as fh:
            data = fh.read(MAX_MODEL_BYTES + 1)
    except OSError as exc:
        raise ModelFileError(
            f"cannot read the model file: {exc.strerror}", where=where, fix="check the file permissions"
        ) from None
    return data


def _sniff(data: bytes) -> str | None:
    """A short description of well-known non-TFLite formats."""
    head = data[:64]
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file (a Keras .h5 model?)"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive (a .keras model?)"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the model itself"
    if b"onnx" in head.lower() or b"pytorch" in head.lower():
        return "an ONNX/PyTorch file"
    if len(data) >= 12 and data[8:12] == TFLITE_IDENTIFIER:
        return "a size-prefixed flatbuffer"
    if head and all(32 <= c < 127 or c in (9, 10, 13) for c in head):
        return f"a text file starting {head[:24].decode('ascii')!r}"
    return None


def _fix_for(kind: str) -> str:
    if "Git LFS" in kind:
        return "run `git lfs pull` to fetch the real file"
    if "size-prefixed" in kind:
        return "strip the 4-byte size prefix (bytes 0..4) and pass the plain flatbuffer"
    return _FIX_CONVERT


def _check_header(data: bytes, where: str) -> None:
    size = len(data)
    if size == 0:
        raise ModelFileError("model is empty (0 bytes)", where=where, fix="re-export the model")
    if size > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"model is {size:,} bytes, more than the {MAX_MODEL_BYTES:,}-byte limit",
            where=where,
            fix="check this is the right file, or shrink the model",
        )
    kind = _sniff(data)
    if size < 16:
        raise ModelFileError(
            f"not a TFLite flatbuffer: only {size} bytes" + (f", looks like {kind}" if kind else ""),
            where=where,
            fix=_FIX_CONVERT,
        )
    ident = data[4:8]
    if ident == TFLITE_IDENTIFIER:
        return
    root = struct.unpack_from("<I", data, 0)[0]
    is_flatbuffer = False
    if kind is None and 8 <= root < size:
        try:
            Reader(data).root()
            is_flatbuffer = True
        except FlatbufferError:
            pass
    if is_flatbuffer:
        raise ModelFileError(
            f"wrong file identifier: bytes 4..8 are {ident!r}, a TFLite model has {TFLITE_IDENTIFIER!r} "
            "(a flatbuffer of another schema)",
            where=where,
            fix="pass a TFLite (.tflite) model, e.g. the output of tf.lite.TFLiteConverter",
        )
    found = kind or f"bytes 4..8 are {ident!r}, not {TFLITE_IDENTIFIER!r}"
    raise ModelFileError(f"not a TFLite flatbuffer: found {found}", where=where, fix=_fix_for(kind or ""))


def parse_model(data: bytes, source: str) -> ModelInfo:
    """Parse a TFLite flatbuffer (``source`` names it in messages). Raises :class:`ModelFileError`."""
    data = bytes(data)
    _check_header(data, source)
    schema = _Schema.load()
    try:
        return _Walker(data, source, schema).model()
    except ModelFileError:
        raise
    except BudgetError as exc:
        raise ModelFileError(
            f"refused: {exc.problem}; stopped at byte offset {exc.offset}, reading {exc.what}",
            where=source,
            fix="a converter writes each table once: re-export the model; do not trust this file",
        ) from None
    except FlatbufferError as exc:
        raise ModelFileError(
            f"truncated or corrupted: {exc.problem} at byte offset {exc.offset}, reading {exc.what}",
            where=source,
            fix=_FIX_CORRUPT,
        ) from None
    except Exception as exc:  # any other surprise from hostile bytes: still one line, no traceback
        raise ModelFileError(
            f"corrupted model ({type(exc).__name__}: {exc})", where=source, fix=_FIX_CORRUPT
        ) from None


class _Walker:
    def __init__(self, data: bytes, source: str, schema: type[_Schema]) -> None:
        self.data = data
        self.source = source
        self.schema = schema
        self.reader = Reader(data)

    def error(self, message: str) -> ModelFileError:
        return ModelFileError(f"corrupted model: {message}", where=self.source, fix=_FIX_CORRUPT)

    def model(self) -> ModelInfo:
        root = self.reader.root("model root table")
        version = root.integer(0, "I", 0, "version")
        codes = [self.opcode(i, t) for i, t in enumerate(root.tables(1, "operator_codes"))]
        description = clip(root.string(3, "description") or "", MAX_DESCRIPTION_CHARS)
        buffers = [self.buffer(i, t) for i, t in enumerate(root.tables(4, "buffers"))]
        metadata = tuple(clip(t.string(0, "name") or "") for t in root.tables(6, "metadata"))
        sg_tables = root.tables(2, "subgraphs")
        if not sg_tables:
            raise self.error("the model has no subgraphs")
        subgraphs = tuple(self.subgraph(i, t, codes, buffers) for i, t in enumerate(sg_tables))
        return ModelInfo(
            source=self.source,
            size_bytes=len(self.data),
            schema_version=version,
            description=description,
            operator_codes=tuple(codes),
            subgraphs=subgraphs,
            num_buffers=len(buffers),
            metadata_names=metadata,
        )

    def opcode(self, index: int, t: Table) -> OperatorCodeInfo:
        deprecated = t.integer(0, "b", 0, "deprecated_builtin_code")
        builtin = t.integer(3, "i", 0, "builtin_code")
        code = max(deprecated, builtin)
        version = t.integer(2, "i", 1, "version")
        custom_code = None
        if code == 32:  # CUSTOM
            custom_code = clip(t.string(1, "custom_code") or "CUSTOM")
            name = custom_code
        else:
            name = builtin_op_name(code)
        return OperatorCodeInfo(index=index, code=code, name=name, version=version, custom_code=custom_code)

    def buffer(self, index: int, t: Table) -> int:
        """Bytes of data held by buffer ``index`` (in the flatbuffer or past it via offset/size)."""
        _, length = t.vector(0, 1, f"data of buffer {index}")
        offset = t.integer(1, "Q", 0, "offset")
        size = t.integer(2, "Q", 0, "size")
        if offset > 1 and size > 0:  # stored after the flatbuffer (models above 2 GB)
            if offset + size > len(self.data):
                raise self.error(
                    f"buffer {index} claims {size} bytes at offset {offset}, past the end of the file "
                    f"({len(self.data)} bytes)"
                )
            return size
        return length

    def subgraph(self, sg: int, t: Table, codes: list[OperatorCodeInfo], buffers: list[int]) -> SubgraphInfo:
        tensors = tuple(
            self.tensor(sg, i, tt, buffers) for i, tt in enumerate(t.tables(0, f"subgraph {sg} tensors"))
        )
        inputs = self.indices(t, 1, len(tensors), f"subgraph {sg} inputs", allow_optional=False)
        outputs = self.indices(t, 2, len(tensors), f"subgraph {sg} outputs", allow_optional=False)
        name = clip(t.string(4, "name") or "")
        ops = tuple(
            self.op(sg, i, ot, codes, tensors) for i, ot in enumerate(t.tables(3, f"subgraph {sg} operators"))
        )
        return SubgraphInfo(index=sg, name=name, tensors=tensors, ops=ops, inputs=inputs, outputs=outputs)

    def indices(self, t: Table, slot: int, n: int, what: str, *, allow_optional: bool) -> tuple[int, ...]:
        values = t.ints(slot, "i", what) or ()
        lowest = -1 if allow_optional else 0
        for v in values:
            if v < lowest or v >= n:
                raise self.error(f"{what} name tensor {v}, but the subgraph has {n} tensors (0..{n - 1})")
        return values

    def tensor(self, sg: int, index: int, t: Table, buffers: list[int]) -> TensorInfo:
        what = f"subgraph {sg} tensor {index}"
        shape = t.ints(0, "i", f"{what} shape") or ()
        if len(shape) > MAX_TENSOR_RANK:
            raise self.error(f"{what} has {len(shape)} dimensions; TFLite kernels take at most {MAX_TENSOR_RANK}")
        type_code = t.integer(1, "b", 0, f"{what} type")
        dtype = self.schema.tensor_types.get(type_code, f"type_{type_code}")
        buffer = t.integer(2, "I", 0, f"{what} buffer")
        if buffer >= max(len(buffers), 1) and buffer != 0:
            raise self.error(f"{what} uses buffer {buffer}, but the model has {len(buffers)} buffers")
        name = clip(t.string(3, f"{what} name") or "")
        scale: tuple[float, ...] = ()
        zero_point: tuple[int, ...] = ()
        qdim = 0
        q = t.table(4, f"{what} quantization")
        if q is not None:
            scale = q.floats(2, "scale") or ()
            zero_point = q.ints(3, "q", "zero_point") or ()
            qdim = q.integer(6, "i", 0, "quantized_dimension")
        is_variable = bool(t.scalar(5, "?", False, f"{what} is_variable"))
        signature = t.ints(7, "i", f"{what} shape_signature")
        data_bytes = buffers[buffer] if buffer < len(buffers) else 0
        is_constant = buffer > 0 and data_bytes > 0
        if is_constant:
            nbytes = data_bytes
        else:
            n = 1
            for d in shape:
                n *= max(d, 1)
            nbytes = (n * _DTYPE_BITS.get(dtype, 0) + 7) // 8
        return TensorInfo(
            index=index,
            subgraph=sg,
            name=name,
            shape=shape,
            shape_signature=signature,
            dtype=dtype,
            nbytes=nbytes,
            buffer=buffer,
            is_constant=is_constant,
            is_variable=is_variable,
            scale=scale,
            zero_point=zero_point,
            quantized_dimension=qdim,
        )

    def op(
        self, sg: int, index: int, t: Table, codes: list[OperatorCodeInfo], tensors: tuple[TensorInfo, ...]
    ) -> OpInfo:
        what = f"subgraph {sg} operator {index}"
        opcode_index = t.integer(0, "I", 0, f"{what} opcode_index")
        if opcode_index >= len(codes):
            raise self.error(f"{what} uses operator code {opcode_index}, but the model has {len(codes)}")
        code = codes[opcode_index]
        n = len(tensors)
        inputs = self.indices(t, 1, n, f"{what} inputs", allow_optional=True)
        outputs = self.indices(t, 2, n, f"{what} outputs", allow_optional=True)
        large_offset = t.integer(9, "Q", 0, f"{what} large_custom_options_offset")
        large_size = t.integer(10, "Q", 0, f"{what} large_custom_options_size")
        if large_offset > 1 and large_offset + large_size > len(self.data):
            raise self.error(f"{what} custom options at offset {large_offset} run past the end of the file")
        t.vector(5, 1, f"{what} custom_options")  # validated, not used
        options = self.options(t, code.name, what)
        op_tensors = [tensors[i] if i >= 0 else None for i in inputs]
        out_tensors = [tensors[i] if i >= 0 else None for i in outputs]
        weight_bytes = sum(x.nbytes for x in op_tensors if x is not None and x.is_constant)
        return OpInfo(
            index=index,
            subgraph=sg,
            name=code.name,
            code=code.code,
            is_custom=code.is_custom,
            version=code.version,
            inputs=inputs,
            outputs=outputs,
            options=options,
            macs=_macs(code.name, op_tensors, out_tensors, options),
            weight_bytes=weight_bytes,
        )

    def options(self, t: Table, op_name: str, what: str) -> dict[str, Any]:
        layouts = _OPTION_LAYOUTS.get(op_name)
        if layouts is None:
            return {}
        union_name, fields = layouts
        union_type = t.integer(3, "B", 0, f"{what} builtin_options_type")
        if self.schema.options.get(union_name) != union_type:
            return {}
        table = t.table(4, f"{what} builtin_options")
        if table is None:
            return {}
        result: dict[str, Any] = {}
        for key, slot, fmt, default in fields:
            value = table.scalar(slot, fmt, default, f"{what} {union_name}.{key}")
            if key == "padding":
                result[key] = self.schema.padding.get(int(value), str(value))
            elif key == "fused_activation":
                result[key] = self.schema.activations.get(int(value), str(value))
            elif fmt == "?":
                result[key] = bool(value)
            else:
                result[key] = int(value)
        return result


# (options union member, [(key, slot, struct format, default)]) per op, from the TFLite schema.
_OPTION_LAYOUTS: dict[str, tuple[str, list[tuple[str, int, str, int]]]] = {
    "CONV_2D": (
        "Conv2DOptions",
        [
            ("padding", 0, "b", 0),
            ("stride_w", 1, "i", 0),
            ("stride_h", 2, "i", 0),
            ("fused_activation", 3, "b", 0),
            ("dilation_w", 4, "i", 1),
            ("dilation_h", 5, "i", 1),
        ],
    ),
    "DEPTHWISE_CONV_2D": (
        "DepthwiseConv2DOptions",
        [
            ("padding", 0, "b", 0),
            ("stride_w", 1, "i", 0),
            ("stride_h", 2, "i", 0),
            ("depth_multiplier", 3, "i", 0),
            ("fused_activation", 4, "b", 0),
            ("dilation_w", 5, "i", 1),
            ("dilation_h", 6, "i", 1),
        ],
    ),
    "AVERAGE_POOL_2D": (
        "Pool2DOptions",
        [
            ("padding", 0, "b", 0),
            ("stride_w", 1, "i", 0),
            ("stride_h", 2, "i", 0),
            ("filter_w", 3, "i", 0),
            ("filter_h", 4, "i", 0),
            ("fused_activation", 5, "b", 0),
        ],
    ),
    "FULLY_CONNECTED": (
        "FullyConnectedOptions",
        [
            ("fused_activation", 0, "b", 0),
            ("weights_format", 1, "b", 0),
            ("keep_num_dims", 2, "?", 0),
            ("asymmetric_quantize_inputs", 3, "?", 0),
        ],
    ),
    "TRANSPOSE_CONV": (
        "TransposeConvOptions",
        [
            ("padding", 0, "b", 0),
            ("stride_w", 1, "i", 0),
            ("stride_h", 2, "i", 0),
            ("fused_activation", 3, "b", 0),
        ],
    ),
    "BATCH_MATMUL": (
        "BatchMatMulOptions",
        [("adj_x", 0, "?", 0), ("adj_y", 1, "?", 0), ("asymmetric_quantize_inputs", 2, "?", 0)],
    ),
}
_OPTION_LAYOUTS["MAX_POOL_2D"] = _OPTION_LAYOUTS["AVERAGE_POOL_2D"]
_OPTION_LAYOUTS["L2_POOL_2D"] = _OPTION_LAYOUTS["AVERAGE_POOL_2D"]


def _dims(t: TensorInfo | None) -> tuple[int, ...] | None:
    if t is None:
        return None
    return tuple(max(d, 1) for d in t.shape)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _macs(
    name: str,
    inputs: list[TensorInfo | None],
    outputs: list[TensorInfo | None],
    options: dict[str, Any],
) -> int:
    """Multiply-accumulates of one op from its tensor shapes (0 for ops not counted or odd shapes)."""
    out = _dims(outputs[0]) if outputs else None
    if out is None:
        return 0
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D") and len(inputs) >= 2:
        w = _dims(inputs[1])
        if w is None or len(w) != 4 or len(out) != 4:
            return 0
        _, kh, kw, in_c = w
        if name == "DEPTHWISE_CONV_2D":
            return _numel(out) * kh * kw
        return _numel(out) * kh * kw * in_c
    if name == "FULLY_CONNECTED" and len(inputs) >= 2:
        w = _dims(inputs[1])
        if w is None or len(w) != 2:
            return 0
        return _numel(out) * w[1]
    if name == "TRANSPOSE_CONV" and len(inputs) >= 3:
        w, x = _dims(inputs[1]), _dims(inputs[2])
        if w is None or x is None or len(w) != 4:
            return 0
        out_c, kh, kw, _ = w
        return _numel(x) * kh * kw * out_c
    if name == "BATCH_MATMUL" and len(inputs) >= 2:
        a = _dims(inputs[0])
        if a is None or len(a) < 2:
            return 0
        k = a[-2] if options.get("adj_x") else a[-1]
        return _numel(out) * k
    return 0


def load_model(path: str | os.PathLike[str]) -> ModelInfo:
    """:func:`load_model_bytes` + :func:`parse_model` in one call."""
    where = os.fspath(path)
    return parse_model(_read_file(where), where)
