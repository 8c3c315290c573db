"""Firmware build + emulated Cortex-M run of int8 models (own runtime, bit-exact with TFLM).

Public API (other parts of pytest-tinyml call exactly these):

- :func:`toolchain_status` -> :class:`ToolStatus`
- :func:`unsupported_ops` -> list of op names the firmware runtime cannot run
- :func:`run_firmware` -> :class:`FirmwareResult` (raises ``NotEvaluable`` / :class:`FirmwareError`);
  ``runtime="tinyml"`` (default, this project's runtime) or ``"tflm"`` (real TFLM built from ``$TFLM_ROOT``;
  the default comes from ``$TINYML_FIRMWARE_RUNTIME``)
- :func:`tflm_tree` -> the located TFLM checkout, or ``NotEvaluable`` saying what is missing
- :func:`latency_estimate` -> :class:`LatencyEstimate`
- :func:`export` -> writes model_data.c/.h, an op-resolver snippet and the arena size header
- :func:`firmware_dir` -> location of the C sources (checkout or wheel)
"""

from pytest_tinyml.emulate.errors import FirmwareError
from pytest_tinyml.emulate.export import ExportResult, export
from pytest_tinyml.emulate.ops import SUPPORTED, unsupported_ops
from pytest_tinyml.emulate.result import FirmwareResult
from pytest_tinyml.emulate.run import resolve_runtime, run_firmware
from pytest_tinyml.emulate.tflm_tree import tflm_tree
from pytest_tinyml.emulate.toolchain import (
    CORES,
    MACHINES,
    LatencyEstimate,
    ToolStatus,
    firmware_dir,
    latency_estimate,
    toolchain_status,
)

__all__ = [
    "CORES",
    "MACHINES",
    "SUPPORTED",
    "ExportResult",
    "FirmwareError",
    "FirmwareResult",
    "LatencyEstimate",
    "ToolStatus",
    "export",
    "firmware_dir",
    "latency_estimate",
    "resolve_runtime",
    "run_firmware",
    "tflm_tree",
    "toolchain_status",
    "unsupported_ops",
]
