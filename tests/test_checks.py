"""The checks are pure functions from measurements to verdicts: each one passing and failing."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from pytest_tinyml.boards import builtin_boards
from pytest_tinyml.checks.accuracy import judge_accuracy, judge_drop
from pytest_tinyml.checks.firmware import judge_bitexact, judge_latency
from pytest_tinyml.checks.io import judge_io
from pytest_tinyml.checks.memory import judge_bytes
from pytest_tinyml.checks.ops import judge_tflm_ops
from pytest_tinyml.checks.size import judge_size


def test_size_pass_and_fail() -> None:
    ok = judge_size(40_000, 51_200, "50 KiB", [("dense/w", 16_000)])
    assert ok.passed and ok.message == "size: 40,000 B <= limit 51,200 B (50 KiB)"
    bad = judge_size(53_936, 51_200, "50 KiB", [("dense/w", 16_000), ("conv/w", 9_216)])
    assert not bad.passed
    assert bad.message == "size: 53,936 B > limit 51,200 B (50 KiB); largest tensors: dense/w 16,000 B, conv/w 9,216 B"
    assert bad.fix and "int8" in bad.fix
    assert (bad.measured, bad.limit, bad.unit) == (53_936, 51_200, "B")
    already = judge_size(53_936, 51_200, "50 KiB", [("dense/w", 16_000)], "int8")
    assert already.fix is not None and already.fix.startswith("the model is already int8")


def test_io() -> None:
    assert judge_io("int8", [("in", "int8")], [("out", "int8")]).passed
    bad = judge_io("int8", [("in", "float32")], [("out", "int8")])
    assert not bad.passed and "input in is float32" in bad.message and "inference_input_type" in (bad.fix or "")


def _row(op: str, status: str, reason: str | None = None, fix: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        op=op, count=1, status=status, reason=reason, fix=fix,
        to_dict=lambda: {"op": op, "status": status, "reason": reason, "fix": fix},
    )


def test_tflm_ops_pass_note_and_fail() -> None:
    ok_alloc = SimpleNamespace(ok=True, signal=None, timed_out=False, reason=None)
    verdict = judge_tflm_ops(ok_alloc, [_row("CONV_2D", "ok"), _row("SignalWindow", "register")], ["CONV_2D", "SignalWindow"])
    assert verdict.passed and any("register it" in d for d in verdict.details)
    bad_alloc = SimpleNamespace(ok=False, signal=None, timed_out=False, reason="Hybrid models are not supported on TFLite Micro.")
    verdict = judge_tflm_ops(bad_alloc, [_row("CONV_2D", "rejected", "Hybrid models are not supported", "re-quantize")], ["CONV_2D"])
    assert not verdict.passed
    assert verdict.message == "tflm_ops: TFLM refused the model (CONV_2D): Hybrid models are not supported on TFLite Micro."
    assert verdict.fix == "re-quantize"
    crashed = SimpleNamespace(ok=False, signal="SIGSEGV", timed_out=False, reason=None)
    verdict = judge_tflm_ops(crashed, [], ["CONV_2D"])
    assert not verdict.passed and "crashed (SIGSEGV)" in verdict.message
    hung = SimpleNamespace(ok=False, signal=None, timed_out=True, reason=None)
    assert "timed out" in judge_tflm_ops(hung, [], []).message


def test_bytes_limits() -> None:
    assert judge_bytes("arena", 1000, 1000, "x", [], "fix").passed
    bad = judge_bytes("flash", 2_000_000, 943_719, "stm32f405: 1,048,576 B flash - 104,857 B reserve", [], "smaller")
    assert not bad.passed and bad.message.startswith("flash: 2,000,000 B > limit 943,719 B (stm32f405")


def _report(float_acc: float, quant_acc: float, drop: float, ci: tuple[float, float], n: int = 1000) -> SimpleNamespace:
    return SimpleNamespace(
        stages={"float": (float_acc, n, float_acc - 1, float_acc + 1), "litert": (quant_acc, n, quant_acc - 1, quant_acc + 1)},
        drop_points=drop,
        drop_ci=ci,
        n=n,
    )


def test_accuracy_and_drop() -> None:
    assert judge_accuracy(_report(97.5, 97.3, 0.2, (-0.2, 0.7)), 95.0).passed
    low = judge_accuracy(_report(90.0, 89.0, 1.0, (0.5, 1.5)), 95.0)
    assert not low.passed and "89.00 % (litert, 1,000 test images) < minimum 95 %" in low.message
    ok = judge_drop(_report(97.5, 97.3, 0.2, (-0.2, 0.7)), 1.0)
    assert ok.passed and not any("straddles" in d for d in ok.details)
    straddle = judge_drop(_report(97.5, 96.7, 0.8, (0.3, 1.4)), 1.0)
    assert straddle.passed and any("straddles the limit" in d for d in straddle.details)
    bad = judge_drop(_report(97.5, 95.0, 2.5, (1.8, 3.2)), 1.0)
    assert not bad.passed and "2.50 pt >= limit 1 pt" in bad.message and "qat" in (bad.fix or "")


def test_bitexact() -> None:
    a = [np.array([1, 2, 3], np.int8), np.array([4, 5, 6], np.int8)]
    assert judge_bitexact(a, [x.copy() for x in a], "mps2-an386").passed
    b = [a[0].copy(), np.array([4, 5, 9], np.int8)]
    bad = judge_bitexact(a, b, "mps2-an386")
    assert not bad.passed and bad.measured == 1 and "first: 1; largest difference 3 LSB" in bad.message
    short = judge_bitexact(a[:1], b, "mps2-an386")
    assert not short.passed and "returned 1 outputs for 2 inputs" in short.message


def test_latency() -> None:
    ok = judge_latency(0.0005, 0.001, 60_000, 1.3, 168_000_000, "m")
    assert ok.passed and ok.message.startswith("latency: 500 µs <= limit 1 ms")
    bad = judge_latency(0.243, 0.001, 31_400_000, 1.3, 168_000_000, "m")
    assert not bad.passed and "243 ms > limit 1 ms" in bad.message and "31,400,000 instructions" in bad.message


@pytest.mark.parametrize("name", ["size", "int8_io", "tflm_ops", "arena", "flash", "accuracy", "accuracy_drop", "latency",
                                  "firmware_bitexact", "firmware_ram"])
def test_builtin_checks_registered(name: str) -> None:
    from pytest_tinyml.builtin import pytest_tinyml_checks

    assert name in [c.name for c in pytest_tinyml_checks()]


# ------------------------------------------------------------------ which memory, which emulator, which method
def _fw(emulator: str = "qemu", machine: str = "netduinoplus2", script: str = "") -> Any:
    """A firmware result with the fields the checks read (values as a real stm32f405 run reports them)."""
    return SimpleNamespace(
        emulator=emulator, machine=machine, emulator_script=script, emulator_command=f"{emulator} ...", core="cortex-m4",
        runtime="tflm", kernels="cmsis_nn", runtime_note="", static_ram_bytes=2_000, arena_min_bytes=30_000,
        arena_bytes=29_000, arena_used_at=31_000, stack_bytes=1_500, text_bytes=80_000, rodata_bytes=60_000,
        flash_bytes=141_000, instructions_per_inference=5_213.0, memory_map="", runs=1, executed_instructions=0,
        outputs=[], input_block="", input_block_samples=0, instruction_counts=None, counts_note="",
    )


def _target(board_name: str, fw: SimpleNamespace | None) -> SimpleNamespace:
    from pytest_tinyml.emulate.firmware import require_model_fits_flash
    from pytest_tinyml.spec.model import Limit

    board = {b.name: b for b in builtin_boards()}[board_name]
    return SimpleNamespace(
        board=board,
        require_model_fits_flash=lambda: require_model_fits_flash(40_000, board),
        constraints=SimpleNamespace(arena=Limit(board=True), flash=Limit(board=True), ram_reserve=None),
        model_info=SimpleNamespace(tensors=[], size_bytes=40_000),
        firmware=fw,
        firmware_for_memory=lambda: fw,
        arena=SimpleNamespace(bytes=28_977, host_bytes=31_000, method="host TFLM, 64-bit pointers rescaled"),
        flash=SimpleNamespace(model_bytes=40_000, runtime_code_bytes=60_000, method="op table", per_op={}),
    )


def test_firmware_ram_limit_is_the_ram_region_the_firmware_is_linked_into() -> None:
    from pytest_tinyml.checks.memory import FirmwareRamCheck, firmware_ram_limit

    boards = {b.name: b for b in builtin_boards()}
    f405 = boards["stm32f405"]
    assert f405.ram_bytes == 196_608 and f405.memory is not None  # 128 KiB SRAM + 64 KiB CCM
    limit, text = firmware_ram_limit(f405)
    assert limit == 131_072 == f405.memory.ram.length and "0x20000000+0x20000" in text
    for b in boards.values():  # every board with a memory map: its linked RAM region, not the chip's RAM total
        assert firmware_ram_limit(b)[0] == (b.memory.ram.length if b.memory else b.ram_bytes), b.name
    # 2,000 + 30,000 + 100,000 = 132,000 B fits 192 KiB of chip RAM but not the 128 KiB region it is linked into
    fw = _fw()
    fw.stack_bytes = 100_000
    v = FirmwareRamCheck().evaluate(_target("stm32f405", fw))  # type: ignore[arg-type]
    assert not v.passed and v.limit == 131_072
    assert "firmware_ram: 132,000 B (measured on QEMU netduinoplus2) > limit 131,072 B (stm32f405 RAM region " \
        "0x20000000+0x20000" in v.message


def test_firmware_messages_name_the_emulator_that_ran() -> None:
    from pytest_tinyml.checks.firmware import emulator_label
    from pytest_tinyml.emulate.renode import renode_script

    script = renode_script("platforms/cpus/stm32f4.repl", Path("a.elf"), Path("in.bin"), 0x08004000, Path("u.txt"),
                           "sysbus.usart1")
    renode = _fw("renode", "netduinoplus2", script)  # a Renode run carries the board's QEMU proxy machine name
    assert emulator_label(renode) == "Renode platforms/cpus/stm32f4.repl"
    assert emulator_label(_fw()) == "QEMU netduinoplus2"
    a = [np.array([1, 2, 3], np.int8)]
    msg = judge_bitexact(a, [a[0].copy()], emulator_label(renode)).message
    assert msg == "firmware_bitexact: 1 of 1 outputs byte-identical to host TFLM (Renode platforms/cpus/stm32f4.repl)"
    assert "netduinoplus2" not in msg


def test_memory_messages_say_how_the_figure_was_measured() -> None:
    from pytest_tinyml.checks.memory import ArenaCheck, FlashCheck

    host = ArenaCheck().evaluate(_target("stm32f405", None))  # type: ignore[arg-type]
    assert host.message.startswith("arena: 28,977 B (host estimate for a 32-bit target) <= limit 117,965 B")
    target = ArenaCheck().evaluate(_target("stm32f405", _fw()))  # type: ignore[arg-type]
    assert target.message.startswith("arena: 30,000 B (smallest that allocates on the target, QEMU netduinoplus2) <=")
    assert target.message.endswith("[runtime tflm, cmsis_nn kernels]")
    est = FlashCheck().evaluate(_target("stm32f405", None))  # type: ignore[arg-type]
    assert est.message.startswith("flash: 100,000 B (host estimate: model + TFLM code) <= limit")
    elf = FlashCheck().evaluate(_target("stm32f405", _fw()))  # type: ignore[arg-type]
    assert elf.message.startswith("flash: 141,000 B (real harness ELF, QEMU netduinoplus2) <= limit")


def test_emulator_total_instructions_is_labelled_as_the_whole_run() -> None:
    from pytest_tinyml.checks.firmware import firmware_provenance

    fw = _fw("renode")
    fw.executed_instructions = 1_005_012
    props = firmware_provenance(fw)
    assert props["emulator_total_instructions"] == 1_005_012 and props["instructions"] == 5_213.0
    assert "executed_instructions" not in props and "whole run" in props["emulator_total_instructions_note"]
    assert firmware_provenance(_fw())["emulator_total_instructions"] is None  # QEMU: no such counter
