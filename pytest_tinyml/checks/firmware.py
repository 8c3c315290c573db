"""``firmware_bitexact`` and ``latency``: the int8 model on an emulated Cortex-M."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_tinyml._util.durations import format_seconds
from pytest_tinyml.checks.base import CheckInfo, DeclaredCheck, Verdict
from pytest_tinyml.errors import NotEvaluable, TinyMLError
from pytest_tinyml.kinds import Direction, Emulator, KernelSet, Runtime

if TYPE_CHECKING:
    from pytest_tinyml.emulate.result import FirmwareResult
    from pytest_tinyml.measurements import Measurements
    from pytest_tinyml.spec.model import Constraints


_RENODE_PLATFORM = re.compile(r"LoadPlatformDescription @(\S+)")


def emulator_label(fw: FirmwareResult) -> str:
    """What really ran the firmware, for messages: ``QEMU <machine>`` or ``Renode <platform .repl>`` (the QEMU
    machine name a Renode run also carries is only the board's QEMU proxy, not what executed)."""
    emulator = fw.emulator or Emulator.QEMU
    if emulator == Emulator.RENODE:
        found = _RENODE_PLATFORM.search(fw.emulator_script or "")
        return f"Renode {found.group(1)}" if found else "Renode"
    if emulator == Emulator.QEMU:
        return f"QEMU {fw.machine}"
    return f"{emulator} {fw.machine}"


def firmware_provenance(fw: FirmwareResult) -> dict[str, Any]:
    """How a firmware run happened, for every firmware item's ``extra`` (and so report.json): the emulator,
    its exact command line (to reproduce the run by hand), instructions per inference, the memory map."""
    return {
        "emulator": fw.emulator,
        "emulator_command": fw.emulator_command,
        "emulator_script": fw.emulator_script or None,  # Renode: the .resc the command includes
        "instructions": fw.instructions_per_inference,
        "memory_map": fw.memory_map,
        "emulator_runs": fw.runs,
    } | input_block_state(fw) | emulator_total(fw)


def input_block_state(fw: FirmwareResult) -> dict[str, Any]:
    """The input block the recorded command loads, and a note when it is no longer in the cache (input blocks
    are pruned, least recently used first: emulate/blocks.py), so nobody reruns a command that cannot load."""
    block = fw.input_block
    if not block:
        return {"input_block": None}
    out: dict[str, Any] = {"input_block": block}
    if not Path(block).is_file():
        out["emulator_command_note"] = (
            f"the input block this command loads ({block}) is no longer in the cache (input blocks are pruned "
            "past ini tinyml_input_blocks_keep, least recently used first); rerun pytest to write it again "
            "(with --tinyml-rebuild if the cache directory was moved)"
        )
    return out


def emulator_total(fw: FirmwareResult) -> dict[str, Any]:
    """The emulator's own executed-instructions counter for the whole run (Renode), labelled as such: it is not
    the inference's cost (that is ``instructions``, per inference, between the markers)."""
    total = fw.executed_instructions
    if not total:
        return {"emulator_total_instructions": None}
    return {
        "emulator_total_instructions": total,
        "emulator_total_instructions_note": (
            f"{'Renode' if fw.emulator == Emulator.RENODE else fw.emulator}'s executed-instructions counter for the whole run ({fw.runs} emulator "
            f"run(s)): start-up, input-block CRC, the 200,000-instruction calibration loop, every inference, output "
            "over the UART (and, with real TFLM, the arena bisection); it stops at the end marker (the firmware "
            "halts with SysTick off), so it holds no idle time"
        ),
    }


def require_model_fits_flash(m: Measurements) -> None:
    """NotEvaluable when the model alone is larger than the board's flash (before any TFLM or firmware work)."""
    m.require_model_fits_flash()


def judge_bitexact(firmware_outputs: list[Any], tflm_outputs: list[Any], machine: str) -> Verdict:
    """``machine``: what ran the firmware, as :func:`emulator_label` names it (e.g. ``QEMU mps2-an386``)."""
    import numpy as np

    n = min(len(firmware_outputs), len(tflm_outputs))
    if len(firmware_outputs) != len(tflm_outputs):
        return Verdict(
            "firmware_bitexact",
            False,
            abs(len(firmware_outputs) - len(tflm_outputs)),
            0,
            "samples",
            f"firmware_bitexact: firmware returned {len(firmware_outputs)} outputs for {len(tflm_outputs)} inputs",
            fix="check the firmware log (a crash or timeout mid-run)",
        )
    mismatched = []
    worst = 0
    for i in range(n):
        a = np.asarray(firmware_outputs[i]).astype(np.int32).ravel()
        b = np.asarray(tflm_outputs[i]).astype(np.int32).ravel()
        if a.shape != b.shape or not np.array_equal(a, b):
            mismatched.append(i)
            if a.shape == b.shape:
                worst = max(worst, int(np.max(np.abs(a - b))))
    if not mismatched:
        return Verdict(
            "firmware_bitexact",
            True,
            0,
            0,
            "mismatching samples",
            f"firmware_bitexact: {n:,} of {n:,} outputs byte-identical to host TFLM ({machine})",
            extra={"samples": n},
        )
    first = ", ".join(map(str, mismatched[:5]))
    return Verdict(
        name="firmware_bitexact",
        passed=False,
        measured=len(mismatched),
        limit=0,
        unit="mismatching samples",
        message=f"firmware_bitexact: {len(mismatched):,} of {n:,} samples differ from host TFLM "
        f"(first: {first}; largest difference {worst} LSB) on {machine}",
        fix="report the model to pytest-tinyml with the sample index: the firmware kernel for one of its ops "
        "does not match TFLM's reference arithmetic",
        extra={"samples": n, "mismatched": mismatched[:100], "max_lsb": worst},
    )


def runtime_properties(fw: FirmwareResult) -> dict[str, Any]:
    """``runtime`` (``tflm`` or ``tinyml``), the TFLM kernel set, and why the project's runtime ran."""
    props: dict[str, Any] = {"runtime": fw.runtime}
    if fw.runtime == Runtime.TFLM:
        props["kernels"] = fw.kernels or str(KernelSet.REFERENCE)
    if fw.runtime_note:
        props["runtime_note"] = fw.runtime_note
    return props


def runtime_label(fw: FirmwareResult) -> str:
    """The message suffix naming the firmware runtime that measured a figure."""
    if fw.runtime == Runtime.TFLM:
        return f"[runtime tflm, {fw.kernels or KernelSet.REFERENCE} kernels]"
    note = fw.runtime_note
    return f"[runtime tinyml (the project's own), {note}]" if note else "[runtime tinyml (the project's own)]"


def with_runtime(verdict: Verdict, fw: FirmwareResult) -> Verdict:
    """Say in the message and in ``extra`` which firmware runtime measured the verdict."""
    verdict.message = f"{verdict.message} {runtime_label(fw)}"
    verdict.extra.update(runtime_properties(fw))
    verdict.extra.update(firmware_provenance(fw))
    return verdict


class FirmwareBitexactCheck(DeclaredCheck):
    info = CheckInfo(
        name="firmware_bitexact",
        key="firmware",
        unit="mismatching samples",
        direction=Direction.LOWER,
        markers=("firmware",),
    )

    def applies(self, constraints: Constraints) -> bool:
        return constraints.firmware is not None and constraints.firmware.enabled

    def evaluate(self, m: Measurements) -> Verdict:
        require_model_fits_flash(m)  # before any TFLM or firmware work on a model that cannot fit
        if not m.tflm_allocation.ok:
            raise NotEvaluable(
                "TFLM cannot run this model (see the tflm_ops item), so there is no reference output to compare",
                "make the model TFLM-compatible",
            )
        fw = m.firmware
        verdict = judge_bitexact(fw.outputs, m.tflm_outputs, emulator_label(fw))
        mismatched = verdict.extra.get("mismatched") or []
        if not verdict.passed and mismatched:
            where = m.firmware_divergence(int(mismatched[0]))
            verdict.details.append(f"sample {mismatched[0]}: {where}")
            verdict.extra["first_divergence"] = where
        informational = latency_not_judged(fw) if m.constraints.max_latency is not None else (
            "information; no max_latency set"
        )
        if informational:
            # no latency item judges this run: the estimate still reaches the summary and reports, as information
            try:
                info = latency_info(m)
            except NotEvaluable:
                info = None
            if info is not None:
                verdict.extra.update(info, latency_informational=True, latency_note=informational)
        placed = ran_where(m)
        if placed:
            verdict.extra.update(placed)
            verdict.details.append(f"ran where: {placed['ran_where']}")
        return with_runtime(verdict, fw)


def latency_not_judged(fw: FirmwareResult) -> str:
    """Why ``max_latency`` cannot be judged on this firmware run ("" when it can).

    Latency is judged only on real TFLM, the runtime that ships. The project's own runtime executes a
    different instruction stream: on seed 001's CNN (Cortex-M4) it ran 34.4 M instructions per inference
    where TFLM with CMSIS-NN ran 6.1 M and TFLM's reference kernels 179.9 M, so its figure bounds neither
    kernel set and would fail or pass a limit for the wrong reason.
    """
    if fw.runtime == Runtime.TFLM:
        return ""
    return "information; the project's own runtime ran, max_latency is judged on real TFLM only"


def latency_info(m: Measurements) -> dict[str, Any]:
    """The latency estimate on the board and the per-operator profile, as ``Verdict.extra`` keys.

    Keys: ``latency_seconds``, ``cycles``, ``instructions``, ``instruction_classes`` (per inference),
    ``profile`` (per operator, see :func:`pytest_tinyml.emulate.cycles.operator_profile`), ``clock_hz``,
    ``core``, ``method``.
    """
    from pytest_tinyml import emulate
    from pytest_tinyml.emulate.cycles import estimate_cycles, memory_timing, operator_profile

    if not m.board_core_emulated:
        raise NotEvaluable(
            f"latency is estimated from instructions executed on an emulated Cortex-M; board {m.board.name} "
            f"has a {m.board.core} core",
            "measure latency on the board itself, or judge a Cortex-M board (--tinyml-board)",
        )
    fw = m.firmware
    core = m.firmware_core
    clock = m.board.clock_hz
    counts = fw.instruction_counts
    if counts is None:
        if not fw.instructions_per_inference:
            raise NotEvaluable(
                f"no instruction count for this run ({fw.counts_note or 'none measured'})",
                "install a host C compiler (cc) so that the QEMU instruction-class plugin can be built",
            )
        est = emulate.latency_estimate(fw.instructions_per_inference, core, clock)
        note = fw.counts_note or "no instruction classes"
        return {
            "latency_seconds": est.seconds,
            "cycles": est.seconds * clock,
            "instructions": fw.instructions_per_inference,
            "instruction_classes": None,
            "profile": None,
            "clock_hz": clock,
            "core": core,
            "cpi": est.cpi,
            "method": f"{note}; figure used: the {fw.emulator or 'emulator'} instruction count x an assumed "
            f"{est.cpi} cycles/instruction for {core} (emulate/toolchain.py) / {clock} Hz",
        }
    memory = memory_timing(m.board)
    total = estimate_cycles(counts.total, core, memory)
    profile = operator_profile(m.model_info, counts, core, memory, clock)
    return {
        "latency_seconds": total.cycles / clock,
        "cycles": total.cycles,
        "instructions": total.instructions,
        "instruction_classes": {k: v for k, v in counts.total.items() if v},
        "cycle_breakdown": total.to_dict(),
        "profile": profile,
        "clock_hz": clock,
        "core": core,
        "cpi": total.cycles / total.instructions if total.instructions else None,
        "runtime": fw.runtime,
        "method": f"{total.method}; instruction classes: mean of the first {counts.inferences} inference(s)",
    }


def judge_latency(seconds: float, limit: float, instructions: float, cpi: float, clock_hz: int, method: str,
                  extra: dict[str, Any] | None = None) -> Verdict:
    passed = seconds <= limit
    relation = "<=" if passed else ">"
    data: dict[str, Any] = {"instructions": instructions, "cpi": cpi, "clock_hz": clock_hz}
    data.update(extra or {})
    return Verdict(
        name="latency",
        passed=passed,
        measured=seconds,
        limit=limit,
        unit="s",
        message=f"latency: {format_seconds(seconds, smallest='µs')} {relation} limit {format_seconds(limit, smallest='µs')} "
        f"({instructions:,.0f} instructions, {seconds * clock_hz:,.0f} cycles = {cpi:.2f} cycles/instruction "
        f"at {clock_hz / 1e6:g} MHz)",
        details=[f"method: {method}", *_top_ops(data.get("profile"))],
        fix=None if passed else "reduce MACs in the slowest operators (see the per-operator profile: fewer filters, "
        "depthwise-separable convolutions, smaller input) or a faster board",
        extra=data,
    )


def _top_ops(profile: Any, n: int = 5) -> list[str]:
    if not isinstance(profile, dict) or not profile.get("operators"):
        return []
    ops = sorted(profile["operators"], key=lambda r: -float(r.get("cycles", 0.0)))[:n]
    return ["slowest operators: " + "; ".join(f"#{r['index']} {r['op']} {float(r.get('share', 0)) * 100:.0f} %" for r in ops)]


def ran_where(m: Measurements) -> dict[str, Any]:
    """On a board with an Ethos-U NPU: ``{"ran_where": text}`` saying that the firmware figures are a CPU-only
    run (every operator on the core, emulated) and which operators Vela puts on the NPU instead
    (whose figures are the npu_* items': Vela's estimate). Empty on boards without an NPU."""
    if m.board.npu is None:
        return {}
    from pytest_tinyml.analysis.vela import placement

    head = (f"CPU-only run: the firmware ran every operator on the {m.board.core} (emulated), the NPU "
            f"unused")
    try:
        vela = m.vela
    except (NotEvaluable, TinyMLError):
        return {"ran_where": f"{head}; which operators Vela would put on {m.board.name}'s Ethos-U NPU is not known "
                             "(Vela did not run)"}
    where = placement(m.model_info, vela)

    def names(ops: dict[str, int]) -> str:
        return ", ".join(ops) or "none"

    return {"ran_where": f"{head}; on {m.board.name} Vela puts {names(where['npu'])} on the Ethos-U NPU (npu_latency: "
                         f"Vela's estimate, no NPU emulator) and leaves {names(where['cpu'])} on the CPU"}


class LatencyCheck(DeclaredCheck):
    info = CheckInfo(
        name="latency",
        key="max_latency",
        metric="latency_seconds",
        unit="s",
        direction=Direction.LOWER,
        threshold="latency_seconds",
        markers=("firmware",),
    )

    def applies(self, constraints: Constraints) -> bool:
        return constraints.max_latency is not None

    def evaluate(self, m: Measurements) -> Verdict:
        assert m.constraints.max_latency is not None
        require_model_fits_flash(m)
        info = latency_info(m)
        note = latency_not_judged(m.firmware)
        if note:
            fw = m.firmware
            why = f"real TFLM unavailable: {fw.runtime_note}" if fw.runtime_note else (
                "--tinyml-firmware-runtime tinyml"
            )
            raise NotEvaluable(
                f"not judged: the firmware ran the project's own runtime ({why}), not the TFLM you ship; "
                f"its estimate, {format_seconds(info['latency_seconds'], smallest='µs')} per inference on {m.board.name}, is "
                "shown as information (the project's runtime executes other code: on seed 001's CNN 34.4 M "
                "instructions against 6.1 M for TFLM with CMSIS-NN and 179.9 M for TFLM's reference kernels)",
                "let the firmware items build real TFLM: TINYML_TFLM_SOURCES or TFLM_ROOT, or network access to "
                "github.com (or TINYML_TFLM_MIRROR) without --tinyml-offline, and no --tinyml-firmware-runtime tinyml",
                information=info | runtime_properties(fw) | {"latency_note": note, "limit": m.constraints.max_latency,
                                                             "unit": "s"},
            )
        verdict = judge_latency(
            info["latency_seconds"],
            m.constraints.max_latency,
            info["instructions"],
            info["cpi"] or 0.0,
            info["clock_hz"],
            info["method"],
            extra=info | ran_where(m),
        )
        if verdict.extra.get("ran_where"):
            verdict.details.append(f"ran where: {verdict.extra['ran_where']}")
        return with_runtime(verdict, m.firmware)
