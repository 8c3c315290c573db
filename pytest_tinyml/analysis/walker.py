"""The walk over a TFLite flatbuffer: tables to :class:`~pytest_tinyml.analysis.modelinfo.ModelInfo`,
every index and size checked against the file (any inconsistency is one :class:`ModelFileError`)."""

from __future__ import annotations

from typing import Any

from pytest_tinyml.analysis._fb import Reader, Table
from pytest_tinyml.analysis.macs import op_macs
from pytest_tinyml.analysis.modelinfo import ModelInfo, OperatorCodeInfo, OpInfo, SubgraphInfo, TensorInfo
from pytest_tinyml.analysis.names import MAX_DESCRIPTION_CHARS, clip
from pytest_tinyml.analysis.schema import DTYPE_BITS, OPTION_LAYOUTS, Schema, builtin_op_name
from pytest_tinyml.errors import ModelFileError

#: Tensors of higher rank are refused as corrupted (TFLite and TFLM kernels stop at 5-8 dimensions).
#: Without a bound, a damaged shape vector of thousands of dimensions gives element counts with
#: thousands of digits, which ``int`` -> ``str`` (reports, ``f"{n:,}"``) refuses to convert.
MAX_TENSOR_RANK = 16

FIX_CORRUPT = "the file is incomplete or damaged: copy, download or re-export it again"


class Walker:
    def __init__(self, data: bytes, source: str, schema: type[Schema]) -> None:
        self.data = data
        self.source = source
        self.schema = schema
        self.reader = Reader(data)

    def error(self, message: str) -> ModelFileError:
        return ModelFileError(f"corrupted model: {message}", where=self.source, fix=FIX_CORRUPT)

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
            nbytes = (n * DTYPE_BITS.get(dtype, 0) + 7) // 8
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
            macs=op_macs(code.name, op_tensors, out_tensors, options),
            weight_bytes=weight_bytes,
        )

    def options(self, t: Table, op_name: str, what: str) -> dict[str, Any]:
        layouts = OPTION_LAYOUTS.get(op_name)
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
