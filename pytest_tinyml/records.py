"""Typed, JSON-serialisable records of what each item judged: the only input of reports and export.

An item writes one :class:`TargetRecord` (what it judged: label, board, runtime, model file, and the facts
measured by the time it finished) and its :class:`~pytest_tinyml.checks.base.Verdict` into its report's
``user_properties`` as JSON (``tinyml_record``). pytest (and pytest-xdist, from its workers) carries them to
the controller, where :func:`record_from_report` makes one :class:`ItemRecord` per item. Reports, baseline
comparison and ``--tinyml-export`` read nothing else, so a serial run and a ``-n 2`` run write the same
files.

No pytest, TensorFlow or numpy here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_tinyml.measurements import Measurements

from pytest_tinyml._util.jsonsafe import jsonsafe
from pytest_tinyml._util.text import has_unsafe, printable
from pytest_tinyml.kinds import ItemStatus

#: The user property that carries a record.
PROPERTY = "tinyml_record"
#: Record format; a reader ignores records of another version.
RECORD_VERSION = 1
#: Strings in a record are cut to this many characters (the full value is the model's, not the report's).
MAX_TEXT = 4096
#: At most this many list entries per list in a record.
MAX_LIST = 1000
#: The fact a record carries when its file's name has control characters (its label shows them escaped).
ESCAPED_NAME = "escaped_name"
ESCAPED_NAME_NOTE = "the file name has control characters; shown with them escaped (\\x1b, \\n)"


@dataclass
class TargetRecord:
    """What an item judged: one model on one board.

    ``facts``: measurements of the target already computed when the item finished, as plain data:
    ``arena`` {bytes, host_bytes, method}, ``flash`` {bytes, model_bytes, runtime_code_bytes},
    ``accuracy`` {stages, drop_points, drop_ci}. Items of one target add to each other's facts.
    """

    label: str
    kind: str  # spec or model
    board: str
    spec: str | None = None  # the spec file (as displayed) for targets of a spec
    spec_name: str | None = None
    mode: str | None = None  # quantization mode of a spec that builds its model
    runtime: str | None = None  # firmware runtime asked for (tinyml, tflm), None when not set
    model_path: str | None = None  # the .tflite judged, once known (built, or given)
    regression: dict[str, float] = field(default_factory=dict)  # RegressionSpec field -> threshold
    facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TargetRecord:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class ItemRecord:
    """One item's outcome: its node id, check, status, target and verdict (``Verdict.to_dict()``: measured,
    limit, unit, message, details, fix and free-form ``extra`` properties)."""

    nodeid: str
    name: str  # the item name, e.g. size or size[int8]
    check: str
    status: ItemStatus
    info: TargetRecord
    verdict: dict[str, Any] | None = None
    message: str = ""
    # what a skipped item measured before it found it could not judge (e.g. the latency estimate of the
    # project's runtime): shown as information, never a verdict
    information: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.status = ItemStatus(self.status)  # a record built from plain data (tests, lookalikes)

    @property
    def target(self) -> str:
        return self.info.label

    @property
    def board(self) -> str | None:
        return self.info.board

    @property
    def mode(self) -> str | None:
        return self.info.mode

    @property
    def model_path(self) -> str | None:
        return self.info.model_path

    @property
    def properties(self) -> dict[str, Any]:
        """Free-form figures of the verdict (``Verdict.extra``: runtime, instructions, emulator_command...)."""
        extra = (self.verdict or {}).get("extra")
        return extra if isinstance(extra, dict) else {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plain(value: Any) -> Any:
    """A JSON-safe, bounded copy for a record (:func:`~pytest_tinyml._util.jsonsafe.jsonsafe` with the
    record's bounds): tuples -> lists, numpy -> Python, NaN/inf -> None, long strings and lists cut."""
    return jsonsafe(value, max_depth=20, too_deep_text=False, max_text=MAX_TEXT, max_items=MAX_LIST)


def encode(info: TargetRecord, verdict: dict[str, Any] | None, information: dict[str, Any] | None = None) -> str:
    """The JSON a test report carries for one item."""
    return json.dumps(
        {"version": RECORD_VERSION, "target": plain(asdict(info)), "verdict": plain(verdict),
         "information": plain(information)},
        allow_nan=False,
        ensure_ascii=False,
    )


def decode(text: str) -> tuple[TargetRecord, dict[str, Any] | None, dict[str, Any] | None] | None:
    """The (target, verdict, information) of an encoded record, or None if it is not one this version reads."""
    try:
        data = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != RECORD_VERSION or not isinstance(data.get("target"), dict):
        return None
    try:
        info = TargetRecord.from_dict(data["target"])
    except TypeError:
        return None
    verdict = data.get("verdict")
    information = data.get("information")
    return info, verdict if isinstance(verdict, dict) else None, information if isinstance(information, dict) else None


def record_from_report(report: Any) -> ItemRecord | None:
    """The record of a tinyml item's test report (``pytest.TestReport``), or None for other reports and
    phases. Setup errors and skips count; the call phase gives passed / failed / skipped."""
    props = {str(k): v for k, v in getattr(report, "user_properties", ())}
    if PROPERTY not in props:
        return None
    if report.when != "call" and not (report.when == "setup" and (report.failed or report.skipped)):
        return None
    decoded = decode(str(props[PROPERTY]))
    if decoded is None:
        return None
    info, verdict, information = decoded
    if report.skipped:
        status = ItemStatus.SKIPPED
        longrepr = report.longrepr
        message = str(longrepr[2]) if isinstance(longrepr, tuple) else str(longrepr)
    else:
        status = ItemStatus(report.outcome) if report.when == "call" else ItemStatus.ERROR
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash is not None else (report.longreprtext or "")
        message = str(verdict.get("message")) if verdict else (text.splitlines()[0] if text else "")
    name = report.nodeid.rsplit("::", 1)[-1]
    check = str((verdict or {}).get("name") or name.split("[", 1)[0])
    return ItemRecord(
        nodeid=report.nodeid, name=name, check=check, status=status, info=info, verdict=verdict, message=message,
        information=information if status is ItemStatus.SKIPPED else None,
    )


def target_record(m: Measurements) -> TargetRecord:
    """What the reports need of a target, from its description and what was already measured (never
    computes a measurement)."""
    from pytest_tinyml.emulate.firmware import export_arena_bytes
    from pytest_tinyml.emulate.policy import UNCHOSEN
    from pytest_tinyml.measurements import Measurements as M

    target = m.target
    facts: dict[str, Any] = {}
    arena = M.arena.peek(m)
    ran = M.firmware.peek(m)
    fw = None if ran is None or isinstance(ran, BaseException) else ran
    if arena is not None and not isinstance(arena, BaseException):
        facts["arena"] = {"bytes": int(arena.bytes), "host_bytes": getattr(arena, "host_bytes", None),
                          "method": str(getattr(arena, "method", "") or "") or None}
        facts["arena"]["export_bytes"] = export_arena_bytes(arena, fw)
    else:  # the arena item measured on the target (real TFLM) without the host estimate
        min_bytes = 0 if fw is None else int(fw.arena_min_bytes)
        if min_bytes:
            facts["arena"] = {"bytes": min_bytes, "host_bytes": None, "method": "target", "export_bytes": min_bytes}
    flash = M.flash.peek(m)
    if flash is not None and not isinstance(flash, BaseException):
        model_b, code_b = int(flash.model_bytes), int(flash.runtime_code_bytes)
        facts["flash"] = {"bytes": model_b + code_b, "model_bytes": model_b, "runtime_code_bytes": code_b}
    accuracy = M.accuracy.peek(m)
    if accuracy is not None and not isinstance(accuracy, BaseException):
        ci = getattr(accuracy, "drop_ci", None)
        facts["accuracy"] = {"stages": dict(getattr(accuracy, "stages", {}) or {}),
                             "drop_points": getattr(accuracy, "drop_points", None),
                             "drop_ci": list(ci) if ci is not None else None}
    path = M.tflite_path.peek(m)
    for name, value in (("arena", arena), ("flash", flash), ("accuracy", accuracy), ("tflite_path", path)):
        if isinstance(value, BaseException):
            facts.setdefault("not_measured", {})[name] = str(value)
    if target.path is not None and has_unsafe(str(target.path)):  # its label shows them escaped
        facts[ESCAPED_NAME] = ESCAPED_NAME_NOTE
    model_path = path if path is not None and not isinstance(path, BaseException) else target.model_path
    regression = {k: v for k, v in asdict(target.constraints.regression).items() if v is not None}
    runtime = None
    if target.constraints.firmware is not None and target.constraints.firmware.enabled:
        choice = M.firmware_runtime_choice.peek(m)
        chosen = None if choice is None or isinstance(choice, BaseException) else choice.runtime
        options = target.options
        runtime = str(chosen or options.firmware_runtime or options.environment.firmware_runtime or UNCHOSEN)
    return TargetRecord(
        label=target.label,
        kind="spec" if target.spec is not None or target.mode is not None else "model",
        board=target.board.name,
        spec=target.source if target.spec is not None else None,
        spec_name=printable(target.spec.name) if target.spec is not None else None,
        mode=target.mode,
        runtime=runtime,
        model_path=str(model_path) if model_path is not None else None,
        regression=regression,
        facts=plain(facts),
    )
