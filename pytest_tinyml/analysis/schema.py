"""What the TFLite schema says, as data: element sizes, the enum names (from the ``tflite`` package,
loaded on first use), the option layouts of the ops whose options are read, and the weighted ops."""

from __future__ import annotations

import os

# Bytes per element for each TFLite tensor type (by lowercase schema name). int4 is packed two per byte;
# string, resource and variant have no fixed element size.
DTYPE_BITS = {
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
WEIGHTED_OPS = frozenset(
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


class Schema:
    """Enum names from the ``tflite`` package, loaded on first use."""

    _loaded = False
    builtin_ops: dict[int, str] = {}
    tensor_types: dict[int, str] = {}
    padding: dict[int, str] = {}
    activations: dict[int, str] = {}
    options: dict[str, int] = {}

    @classmethod
    def load(cls) -> type[Schema]:
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
    return Schema.load().builtin_ops.get(code, f"BUILTIN_{code}")


# (options union member, [(key, slot, struct format, default)]) per op, from the TFLite schema.
OPTION_LAYOUTS: dict[str, tuple[str, list[tuple[str, int, str, int]]]] = {
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
OPTION_LAYOUTS["MAX_POOL_2D"] = OPTION_LAYOUTS["AVERAGE_POOL_2D"]
OPTION_LAYOUTS["L2_POOL_2D"] = OPTION_LAYOUTS["AVERAGE_POOL_2D"]
