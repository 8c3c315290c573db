"""Firmware build + emulated Cortex-M run of int8 models (own runtime, bit-exact with TFLM, or real TFLM).

Public API (other parts of pytest-tinyml call exactly these):

- :class:`FirmwareRequest` -> :func:`pytest_tinyml.emulate.firmware.run` (cached) -> :class:`FirmwareResult`
  (frozen, ``to_dict``/``from_dict``)
- :func:`run_firmware` -> :class:`FirmwareResult`, the same run with keyword arguments, not cached (raises
  ``NotEvaluable`` / :class:`FirmwareError`); ``runtime="tinyml"`` (default, this project's runtime) or
  ``"tflm"`` (real TFLM; the default comes from ``$TINYML_FIRMWARE_RUNTIME``)
- :func:`toolchain_status` -> :class:`ToolStatus`; :func:`unsupported_ops` -> op names the project's
  runtime cannot run; :func:`tflm_tree` -> the located TFLM sources, or ``NotEvaluable`` saying what is missing
- :func:`latency_estimate` -> :class:`LatencyEstimate`; :func:`export` -> model_data.c/.h, an op-resolver
  snippet and the arena size header; :func:`firmware_dir` -> location of the C sources (checkout or wheel)

Rooms: ``request``/``result`` (the typed call), ``firmware`` (policy from explicit values, the cached
entry point), ``policy`` (the runtime choice and its one default), ``run`` (build and run one request),
``protocol`` (input block, UART frames), ``runner`` (one emulator run on the process supervisor
``pytest_tinyml._util.proc``), ``qemu``/``renode`` (adapters: command, script, counts), ``placement``
(machine, memory map, UART), ``runcache`` and ``blocks`` (the run cache and the input blocks), ``build``
(the project's runtime), ``tflm_tree``/``tflm_pch``/``tflm_build`` (real TFLM: sources,
the library once per core and kernel set, precompiled header, the model's link), ``tflm_sources`` (pinned downloads).
"""

from pytest_tinyml.emulate.errors import FirmwareError
from pytest_tinyml.emulate.export import ExportResult, export
from pytest_tinyml.emulate.ops import SUPPORTED, unsupported_ops
from pytest_tinyml.emulate.policy import resolve_runtime
from pytest_tinyml.emulate.request import FirmwareRequest
from pytest_tinyml.emulate.result import FirmwareResult
from pytest_tinyml.emulate.run import run_firmware
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
    "FirmwareRequest",
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
