"""Which operators (and tensor types) the firmware runtime implements.

Checked on the parsed model BEFORE anything is built, so an unsupported model is reported as not
evaluable (with the op names) instead of failing inside the emulator.
"""

from __future__ import annotations

from typing import Any

# op name -> (allowed input-0 dtypes, allowed output-0 dtypes)
_INT8 = frozenset({"int8"})
SUPPORTED: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "CONV_2D": (_INT8, _INT8),
    "DEPTHWISE_CONV_2D": (_INT8, _INT8),
    "FULLY_CONNECTED": (_INT8, _INT8),
    "MAX_POOL_2D": (_INT8, _INT8),
    "AVERAGE_POOL_2D": (_INT8, _INT8),
    "RESHAPE": (frozenset({"int8", "float32", "int32"}), frozenset({"int8", "float32", "int32"})),
    "SQUEEZE": (frozenset({"int8", "float32", "int32"}), frozenset({"int8", "float32", "int32"})),
    "EXPAND_DIMS": (frozenset({"int8", "float32", "int32"}), frozenset({"int8", "float32", "int32"})),
    "SOFTMAX": (_INT8, _INT8),
    "ADD": (_INT8, _INT8),
    "MUL": (_INT8, _INT8),
    "MEAN": (_INT8, _INT8),
    "PAD": (_INT8, _INT8),
    "CONCATENATION": (_INT8, _INT8),
    "LOGISTIC": (_INT8, _INT8),
    "QUANTIZE": (frozenset({"float32", "int8"}), _INT8),
    "DEQUANTIZE": (_INT8, frozenset({"float32"})),
    "TRANSPOSE": (frozenset({"int8", "int16", "int32", "float32"}), frozenset({"int8", "int16", "int32", "float32"})),
}

# Weight inputs that must be int8 (int4 / float weights are not implemented).
_WEIGHT_INPUT = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1}


def _model_info(model: Any) -> Any:
    if isinstance(model, (bytes, bytearray, memoryview)):
        from pytest_tinyml.analysis.model import parse_model

        return parse_model(bytes(model), "<model>")
    if hasattr(model, "subgraphs"):
        return model
    raise TypeError(f"expected model bytes or a ModelInfo, got {type(model).__name__}")


def unsupported_ops(model_info_or_bytes: Any) -> list[str]:
    """Names of the ops the firmware runtime cannot run, sorted, each once.

    An op whose name is supported but whose tensor types are not is listed as ``NAME[dtype]``, e.g.
    ``CONV_2D[float32]`` for a float model or ``FULLY_CONNECTED[int4 weights]``.
    """
    info = _model_info(model_info_or_bytes)
    bad: set[str] = set()
    for sg in info.subgraphs:
        tensors = sg.tensors
        for op in sg.ops:
            name = op.name
            if getattr(op, "is_custom", False) or name not in SUPPORTED:
                bad.add(name)
                continue
            ins, outs = SUPPORTED[name]
            if op.inputs and op.inputs[0] >= 0:
                dt = tensors[op.inputs[0]].dtype
                if dt not in ins:
                    bad.add(f"{name}[{dt}]")
                    continue
            if op.outputs and op.outputs[0] >= 0:
                dt = tensors[op.outputs[0]].dtype
                if dt not in outs:
                    bad.add(f"{name}[{dt} output]")
                    continue
            widx = _WEIGHT_INPUT.get(name)
            if widx is not None and len(op.inputs) > widx and op.inputs[widx] >= 0:
                dt = tensors[op.inputs[widx]].dtype
                if dt != "int8":
                    bad.add(f"{name}[{dt} weights]")
                    continue
            if name == "FULLY_CONNECTED" and str(op.options.get("weights_format", "DEFAULT")).upper() not in (
                "DEFAULT",
                "0",
            ):
                bad.add(f"{name}[shuffled weights]")
        if sg.index > 0 and sg.ops:
            bad.add(f"subgraph {sg.index} (control flow)")
    return sorted(bad)
