"""Which operator's output first differs between the firmware and host TFLM (for one mismatching sample).

The model is rewritten so that every operator output of the main subgraph is also a subgraph output (in
operator order; the original outputs stay first, so nothing the firmware or host reads moves). Both
runtimes then run that model on the one sample and the intermediate tensors are compared in operator
order: the first operator whose output differs is where the kernels diverge. Making a tensor an output
changes the memory plan (it lives to the end) but not its values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class OpOutput:
    op_index: int
    op_name: str
    tensor_index: int
    tensor_name: str
    output_position: int  # index among the debug model's outputs


@dataclass(frozen=True)
class Divergence:
    op: OpOutput | None  # None: every intermediate tensor matched
    differing: int  # elements that differ in that tensor
    max_lsb: int

    def describe(self) -> str:
        if self.op is None:
            return "every intermediate tensor matched host TFLM; only the final output differs"
        return (
            f"first differing operator: #{self.op.op_index} {self.op.op_name} (output tensor "
            f"{self.op.tensor_name!r}: {self.differing:,} elements differ, up to {self.max_lsb} LSB)"
        )


def with_intermediate_outputs(model: bytes) -> tuple[bytes, list[OpOutput]]:
    """``model`` with every operator output of subgraph 0 appended to its outputs, and what was added."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from pytest_tinyml.analysis.model import parse_model

    info = parse_model(bytes(model), "<model>")
    names = [op.name for op in info.ops]
    tree = schema.ModelT.InitFromPackedBuf(bytearray(model), 0)
    graph = tree.subgraphs[0]
    outputs = [int(t) for t in (graph.outputs if graph.outputs is not None else [])]
    added: list[OpOutput] = []
    for i, op in enumerate(graph.operators or []):
        for t in op.outputs if op.outputs is not None else []:
            t = int(t)
            if t < 0 or t in outputs:
                continue
            raw = graph.tensors[t].name
            name = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            added.append(OpOutput(i, names[i] if i < len(names) else "?", t, name, len(outputs)))
            outputs.append(t)
    graph.outputs = outputs
    builder = flatbuffers.Builder(len(model) + 4096)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), added


def first_divergence(
    model: bytes,
    sample: Any,
    run_target: Callable[[bytes, Any], tuple[np.ndarray, ...]],
    run_host: Callable[[bytes, Any, int], tuple[np.ndarray, ...]],
) -> Divergence:
    """Run the debug model on ``sample`` with both runtimes (callables returning every output) and name
    the first operator whose output differs."""
    debug, added = with_intermediate_outputs(model)
    n_outputs = (added[-1].output_position + 1) if added else 1
    target = run_target(debug, sample)
    host = run_host(debug, sample, n_outputs)
    for entry in sorted(added, key=lambda a: a.op_index):
        a = np.asarray(target[entry.output_position]).astype(np.int64).ravel()
        b = np.asarray(host[entry.output_position]).astype(np.int64).ravel()
        if a.shape != b.shape or not np.array_equal(a, b):
            diff = np.abs(a - b) if a.shape == b.shape else np.array([0])
            return Divergence(entry, int(np.count_nonzero(diff)) if a.shape == b.shape else int(a.size),
                              int(diff.max()) if diff.size else 0)
    return Divergence(None, 0, 0)
