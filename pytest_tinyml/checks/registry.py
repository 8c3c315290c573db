"""The built-in checks, in canonical order, and the metrics they declare (registered with pytest through
:mod:`pytest_tinyml.builtin`'s ``pytest_tinyml_checks``; read directly by reports for documents written
before metrics travelled in them)."""

from __future__ import annotations

from pytest_tinyml.checks.accuracy import AccuracyCheck, AccuracyDropCheck
from pytest_tinyml.checks.base import Check, Metric, metrics_of
from pytest_tinyml.checks.firmware import FirmwareBitexactCheck, LatencyCheck
from pytest_tinyml.checks.io import IoCheck
from pytest_tinyml.checks.memory import ArenaCheck, FirmwareRamCheck, FlashCheck
from pytest_tinyml.checks.npu import NpuFlashCheck, NpuLatencyCheck, NpuOpsCheck, NpuSramCheck
from pytest_tinyml.checks.ops import TflmOpsCheck
from pytest_tinyml.checks.size import SizeCheck


def builtin_checks() -> list[Check]:
    return [
        SizeCheck(),
        IoCheck(),
        TflmOpsCheck(),
        ArenaCheck(),
        FlashCheck(),
        AccuracyCheck(),
        AccuracyDropCheck(),
        LatencyCheck(),
        FirmwareBitexactCheck(),
        FirmwareRamCheck(),
        NpuOpsCheck(),
        NpuSramCheck(),
        NpuFlashCheck(),
        NpuLatencyCheck(),
    ]


def builtin_metrics() -> dict[str, Metric]:
    """The metrics of the built-in checks."""
    return metrics_of(builtin_checks())


__all__ = ["builtin_checks", "builtin_metrics"]
