"""JSON Schema for spec files, version 1. Units are checked after the schema by :mod:`.units`."""

from __future__ import annotations

from typing import Any

SIZE: dict[str, Any] = {"type": ["integer", "string"], "description": "bytes, or 50KiB / 50KB / 1MiB"}
TIME: dict[str, Any] = {"type": "string", "description": "1ms, 500us, 2s"}
POINTS: dict[str, Any] = {"type": ["number", "string"], "description": "percentage points: 1.0 or '1pt'"}
PERCENT: dict[str, Any] = {"type": "string", "description": "an accuracy such as '95%'"}
NAME: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 200}

QUANT_MODES = ["int8", "float16", "dynamic_range", "qat", "float32"]
PREPROCESS = ["x/255", "x/127.5-1", "x-128", "none"]


def _obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


SCHEMA: dict[str, Any] = _obj(
    {
        "version": {"const": 1, "description": "spec format version; this plugin reads version 1"},
        "name": NAME,
        "description": {"type": "string"},
        "model": _obj(
            {
                "builder": {"type": "string", "pattern": r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"},
                "args": {"type": "object"},
                "keras": {"type": "string", "minLength": 1},
                "saved_model": {"type": "string", "minLength": 1},
                "tflite": {"type": "string", "minLength": 1},
            }
        ),
        "dataset": _obj(
            {
                "name": NAME,
                "cache_dir": {"type": "string"},
                "preprocess": {"enum": PREPROCESS},
                "validation": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                "test": {"type": ["integer", "number"], "exclusiveMinimum": 0},
                "limit": {"type": "integer", "minimum": 10},
                "seed": {"type": "integer"},
                "augment": _obj(
                    {
                        "flip": {"type": "boolean"},
                        "rotation": {"type": "number", "minimum": 0, "maximum": 180},
                        "shift": {"type": "number", "minimum": 0, "maximum": 0.5},
                        "zoom": {"type": "number", "minimum": 0, "maximum": 0.5},
                    }
                ),
                "args": {"type": "object"},
            },
            ["name"],
        ),
        "training": _obj(
            {
                "epochs": {"type": "integer", "minimum": 1, "maximum": 10000},
                "batch_size": {"type": "integer", "minimum": 1, "maximum": 1000000},
                "optimizer": {"enum": ["adam", "sgd", "rmsprop"]},
                "learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 10},
                "early_stopping": {"type": "integer", "minimum": 0, "description": "patience in epochs, 0 = off"},
                "loss_from_logits": {"type": "boolean"},
                "seed": {"type": "integer"},
            }
        ),
        "quantization": _obj(
            {
                "mode": {"enum": QUANT_MODES},
                "modes": {"type": "array", "items": {"enum": QUANT_MODES}, "minItems": 1, "uniqueItems": True},
                "representative_samples": {"type": "integer", "minimum": 1, "maximum": 10000000},
                "qat_epochs": {"type": "integer", "minimum": 1, "maximum": 1000},
            }
        ),
        "board": NAME,
        "constraints": _obj(
            {
                "max_size": SIZE,
                "io_dtype": {"enum": ["int8", "uint8", "float32", "any"]},
                "ops": {"enum": ["tflm", "any"]},
                "max_accuracy_drop": POINTS,
                "min_accuracy": PERCENT,
                "arena": {"type": ["integer", "string"], "description": "'board' or a size"},
                "flash": {"type": ["integer", "string"], "description": "'board' or a size"},
                "ram_reserve": SIZE,
                "max_latency": TIME,
                "firmware": _obj(
                    {
                        "samples": {"type": "integer", "minimum": 1, "maximum": 100000},
                        "machine": NAME,
                        "emulator": {"enum": ["qemu", "renode"]},
                        "enabled": {"type": "boolean"},
                        "kernels": {"enum": ["cmsis_nn", "reference"]},
                    }
                ),
                "regression": _obj(
                    {"size": SIZE, "accuracy": POINTS, "arena": SIZE, "latency": TIME}
                ),
            }
        ),
    },
    ["version", "name", "model"],
)
