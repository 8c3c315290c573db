"""Terminal summary: one compact table per spec or model, plus baseline deltas and regressions."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pytest_tinyml._util.text import printable
from pytest_tinyml.fmt import fmt_bytes
from pytest_tinyml.kinds import Emulator, ItemStatus, Runtime
from pytest_tinyml.reports._format import STATUS_MARK, fmt_delta, fmt_value, item_order, one_line
from pytest_tinyml.reports.collect import firmware_runtime
from pytest_tinyml.reports.npu import terminal_lines as npu_terminal_lines
from pytest_tinyml.reports.profile import target_latency
from pytest_tinyml.reports.profile import terminal_lines as profile_terminal_lines

if TYPE_CHECKING:
    from pytest_tinyml.boards import BoardRegistry


def skip_reason(message: str, limit: int = 60) -> str:
    """``'Skipped: latency: no firmware; to enable: ...'`` -> ``'no firmware'``."""
    text = one_line(message)
    for prefix in ("Skipped: ",):
        if text.startswith(prefix):
            text = text[len(prefix) :]
    text = text.split("; to enable:", 1)[0]
    head, sep, tail = text.partition(": ")
    if sep and head.isidentifier():
        text = tail
    return one_line(text, limit)


def _table(rows: list[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]


def comparison_lines(report: dict[str, Any]) -> list[str]:
    """The comparison table across targets (size, flash, arena, latency, verdicts)."""
    from pytest_tinyml.reports import compare_table

    targets = report.get("targets") or []
    if len(targets) < 2:
        return []
    header, rows, title = compare_table.rows(targets)
    return [title, *_table([tuple(header), *(tuple(r) for r in rows)])]


def summary_lines(results: Iterable[Any], *, outcome: Any = None, report: dict[str, Any] | None = None) -> list[str]:
    """Lines for pytest's terminal summary.

    ``results``: :class:`~pytest_tinyml.records.ItemRecord` objects. ``outcome``: the
    :class:`~pytest_tinyml.reports.Outcome` of :func:`pytest_tinyml.reports.finish` (optional): adds a
    delta column and the regressions when a baseline was compared, the report errors, and where the
    reports were written. ``report``: the report document (else the outcome's), for the comparison table
    across targets; with several targets, only those with an item that did not pass get a table of
    their own.
    """
    from pytest_tinyml.reports.baseline import Vocabulary

    comparison = getattr(outcome, "comparison", None)
    doc = report if isinstance(report, dict) else getattr(outcome, "report", None)
    doc = doc if isinstance(doc, dict) else {}
    vocab = Vocabulary.of(doc)
    results_list = list(results)
    by_target: dict[str, list[Any]] = {}
    for r in results_list:
        by_target.setdefault(r.target, []).append(r)
    lines: list[str] = comparison_lines(doc)
    several = len(by_target) > 1 and bool(doc.get("targets"))
    for target, rows in by_target.items():
        if several and all(r.status == ItemStatus.PASSED for r in rows) and not (comparison and comparison.deltas.get(target)):
            continue  # one line in the comparison table says it all
        board = next((r.board for r in rows if r.board), None)
        runtime, _ = firmware_runtime(r.verdict for r in rows)
        about = [f"board {board}"] if board else []
        about += [f"runtime {runtime}"] if runtime else []
        head = target + (f"  ({', '.join(about)})" if about else "")
        if comparison is not None and target in comparison.new:
            head += "  (not in baseline)"
        lines.append(head)
        header: tuple[str, ...] = ("constraint", "limit", "measured")
        if comparison is not None:
            header += ("vs baseline",)
        header += ("verdict",)
        table: list[tuple[str, ...]] = [header]
        shown: set[str] = set()
        for r in sorted(rows, key=lambda r: item_order(r.check, r.name)):
            v = r.verdict if isinstance(r.verdict, dict) else {}
            unit = v.get("unit") or ""
            name = r.check
            limit = v.get("limit")
            if not v and isinstance(r.information, dict) and r.information.get("limit") is not None:
                # a skipped item that knew its limit (e.g. max_latency with the project's runtime): show the
                # limit, never a measured value (nothing was judged)
                limit, unit = r.information.get("limit"), str(r.information.get("unit") or "")
            row: tuple[str, ...] = (name, fmt_value(limit, unit), fmt_value(v.get("measured"), unit))
            if comparison is not None:
                metric = vocab.metric_of(name)
                d = comparison.delta(target, metric) if metric else None
                if d is not None:
                    shown.add(d.metric)
                row += (
                    (fmt_delta(d.metric, d.delta) + (" REGRESSION" if d.regression else "")) if d else "",
                )
            verdict = STATUS_MARK.get(r.status, r.status.upper())
            if r.status == ItemStatus.SKIPPED and r.message:
                verdict += f"  {skip_reason(r.message)}"
            row += (verdict,)
            table.append(row)
        lines.extend(_table(table))
        section = target_latency(rows)
        if section is not None:
            lines.extend(profile_terminal_lines(section))
        lines.extend(npu_terminal_lines([r.verdict for r in rows]))
        if comparison is not None:
            rest = [d for d in comparison.deltas.get(target, []) if d.metric not in shown]
            if rest:
                lines.append(
                    "  vs baseline: "
                    + ", ".join(d.text() + (" (REGRESSION)" if d.regression else "") for d in rest)
                )
    lines.extend(mode_table_lines(results_list))
    lines.extend(runtime_note_lines(results_list))
    if comparison is not None:
        if comparison.missing:
            lines.append(f"in the baseline but not in this run: {', '.join(comparison.missing)}")
        if comparison.regressions:
            lines.append(f"regressions against baseline {printable(str(comparison.path))}:")
            lines.extend(f"  {text}" for text in comparison.regressions)
        else:
            lines.append(f"no regressions against baseline {printable(str(comparison.path))}")
    for error in getattr(outcome, "errors", None) or []:
        lines.append(f"report error: {error}")
    written = getattr(outcome, "written", None) or []
    if written:
        lines.append("reports: " + ", ".join(printable(str(p)) for p in written))
    return lines


def runtime_note_lines(results: list[Any]) -> list[str]:
    """Once per run (not per item): why firmware items ran the project's own runtime instead of real TFLM."""
    seen: list[str] = []
    for r in results:
        extra = r.verdict.get("extra") if isinstance(r.verdict, dict) else None
        note = extra.get("runtime_note") if isinstance(extra, dict) and extra.get("runtime") == Runtime.TINYML else None
        if isinstance(note, str) and note and one_line(note, 600) not in seen:
            seen.append(one_line(note, 600))
    lines = []
    for note in seen:
        why, sep, fix = note.partition("; fix: ")
        lines.append(f"{why}; firmware items ran the project's own runtime (tinyml)" + (f"; fix: {fix}" if sep else ""))
    return lines


def _pct(stage: Any) -> str:
    return f"{stage[0]:.2f} %" if isinstance(stage, (list, tuple)) and stage else "-"


def mode_table_lines(results: list[Any]) -> list[str]:
    """For a spec built in several quantization modes: one row per mode with size, accuracy per stage,
    the drop and whether TFLM runs it (seed 003's comparison)."""
    by_spec: dict[str, dict[str, dict[str, Any]]] = {}
    for r in results:
        spec = r.info.spec
        if not r.mode or not spec or r.target == spec:  # not one mode of several
            continue
        by_spec.setdefault(spec, {}).setdefault(r.mode, {})[r.check] = r
    lines: list[str] = []
    for spec, modes in by_spec.items():
        if len(modes) < 2:
            continue
        lines.append(f"{spec}: quantization modes compared")
        table: list[tuple[str, ...]] = [("mode", "size", "float acc", "quantized acc", "TFLM acc", "drop", "TFLM runs it")]
        for mode, items in modes.items():
            size = items.get("size")
            size_v = size.verdict if size is not None and isinstance(size.verdict, dict) else {}
            acc = items.get("accuracy_drop") or items.get("accuracy")
            acc_v = acc.verdict if acc is not None and isinstance(acc.verdict, dict) else {}
            stages = (acc_v.get("extra") or {}).get("stages") or {}
            ops = items.get("tflm_ops")
            runs = "-" if ops is None else ("yes" if ops.status == ItemStatus.PASSED else "no")
            drop = acc_v.get("measured") if acc is not None and acc.check == "accuracy_drop" else None
            table.append(
                (
                    mode,
                    fmt_value(size_v.get("measured"), "B") if size_v else "-",
                    _pct(stages.get("float")),
                    _pct(stages.get("litert")),
                    _pct(stages.get("tflm")),
                    f"{drop:.2f} pt" if isinstance(drop, (int, float)) else "-",
                    runs,
                )
            )
        lines.extend(_table(table))
    return lines


def board_lines(boards: BoardRegistry) -> list[str]:
    """The board table of ``--tinyml-boards``."""
    from pytest_tinyml.emulate.toolchain import CORES, RENODE_PLATFORMS, platform_can_run

    def refused(platform: str, core: str) -> bool:  # e.g. Cortex-M7 builds on Renode 1.15.1's M7 model
        known = RENODE_PLATFORMS.get(platform)
        return known is not None and core in CORES and not platform_can_run(known, core)

    rows = [("board", "core", "clock", "flash", "RAM", "emulators")]
    for board in sorted(boards, key=lambda b: b.name):
        emulators = [f"{name} {machine}" + (f" (refused for {board.core} builds)"
                                            if name is Emulator.RENODE and refused(machine, board.core) else "")
                     for name in Emulator
                     if isinstance(machine := getattr(board, name, None), str) and machine]
        rows.append((board.name, board.core, f"{board.clock_hz / 1e6:g} MHz", fmt_bytes(board.flash_bytes),
                     fmt_bytes(board.ram_bytes), ", ".join(emulators) or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows]
    for board in sorted(boards, key=lambda b: b.name):
        if board.npu is not None:  # the npu_* items judge these with Arm's Vela
            npu = board.npu
            lines.append(f"{board.name}: Arm Ethos-U NPU {npu.accelerator} at {npu.clock_hz / 1e6:g} MHz (Vela "
                         f"{npu.system_config}, {npu.memory_mode}; NPU SRAM {fmt_bytes(npu.sram_bytes)}, flash "
                         f"{fmt_bytes(npu.flash_bytes)})")
    lines.append("(figures and datasheet sources: pytest_tinyml/boards.yaml; --tinyml-board NAME selects one)")
    return lines
