"""``arena``, ``flash`` and ``firmware_ram``: does the model fit the board's memories."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_tinyml.checks.base import CheckInfo, DeclaredCheck, Verdict, fmt_bytes, fmt_limit_bytes
from pytest_tinyml.checks.firmware import (
    emulator_label,
    require_model_fits_flash,
    runtime_label,
    runtime_properties,
    with_runtime,
)
from pytest_tinyml.kinds import Direction, Runtime

if TYPE_CHECKING:
    from pytest_tinyml.analysis.modelinfo import ModelInfo, TensorInfo
    from pytest_tinyml.boards import Board
    from pytest_tinyml.measurements import Measurements
    from pytest_tinyml.spec.model import Constraints, Limit


def byte_limit(limit: Limit, board: Board, board_limit: int, what: str) -> tuple[int, str]:
    """The limit in bytes and how it was derived, for messages."""
    if not limit.board and limit.size is not None:
        return limit.size.bytes, limit.size.text
    return board_limit, what


def judge_bytes(
    name: str, measured: int, limit: int, limit_text: str, details: list[str], fix: str, extra: dict | None = None,
    how: str = "",
) -> Verdict:
    """``how``: how ``measured`` was measured, shown in the message after the figure (e.g. "host estimate")."""
    passed = measured <= limit
    relation = "<=" if passed else ">"
    figure = f"{fmt_bytes(measured)} ({how})" if how else fmt_bytes(measured)
    return Verdict(
        name=name,
        passed=passed,
        measured=measured,
        limit=limit,
        unit="B",
        message=f"{name}: {figure} {relation} limit {fmt_limit_bytes(limit, limit_text)}",
        details=details,
        fix=None if passed else fix,
        extra=extra or {},
    )


#: TFLM computes tensor byte sizes in 32-bit ``size_t`` on Cortex-M (and ``int`` element counts), so a
#: tensor of 2**32 bytes or more wraps around to a small number there.
TFLM_SIZE_LIMIT = 1 << 32


def tensor_bytes(t: TensorInfo) -> int:
    """Bytes the tensor's shape and type call for (unbounded integer arithmetic, -1 dims counted as 1)."""
    from pytest_tinyml.analysis.schema import DTYPE_BITS

    return (t.num_elements * DTYPE_BITS.get(t.dtype, 8) + 7) // 8


def oversized_tensor(info: ModelInfo, ram_limit: int) -> tuple[TensorInfo, int, str] | None:
    """The first tensor TFLM's 32-bit arithmetic cannot size, or the largest activation over ``ram_limit``:
    ``(tensor, bytes, why)``; None when every tensor is sane."""
    worst: tuple[TensorInfo, int] | None = None
    for t in info.tensors:
        nbytes = tensor_bytes(t)
        if nbytes >= TFLM_SIZE_LIMIT:
            return t, nbytes, "overflows TFLM's 32-bit byte count (the arena it reports is meaningless)"
        if not t.is_constant and (worst is None or t.nbytes > worst[1]):
            worst = (t, t.nbytes)
    if worst is not None and worst[1] > ram_limit:
        return worst[0], worst[1], "is larger than the RAM limit on its own"
    return None


def _tensor_label(t: TensorInfo) -> str:
    from pytest_tinyml.analysis.names import clip

    dims = "x".join(str(d) for d in t.shape) or "scalar"
    return f"tensor {clip(t.name, 80)!r} (subgraph {t.subgraph} #{t.index}, {t.dtype} {dims})"


def _reserve(m: Measurements) -> int:
    reserve = m.constraints.ram_reserve
    return reserve.bytes if reserve is not None else m.board.ram_reserve


class ArenaCheck(DeclaredCheck):
    info = CheckInfo(
        name="arena",
        key="arena",
        metric="arena_bytes",
        unit="B",
        direction=Direction.LOWER,
        threshold="arena_bytes",
    )

    def applies(self, constraints: Constraints) -> bool:
        return constraints.arena is not None

    def evaluate(self, m: Measurements) -> Verdict:
        board = m.board
        reserve = _reserve(m)
        assert m.constraints.arena is not None
        limit, text = byte_limit(
            m.constraints.arena,
            board,
            max(0, board.arena_ram_bytes - reserve),
            f"{board.name}: {fmt_bytes(board.arena_ram_bytes)} RAM block - {fmt_bytes(reserve)} reserve",
        )
        # Before asking TFLM: its 32-bit size arithmetic wraps for tensors of 4 GiB and more (a 65536x65536
        # int8 output once "allocated" in 496 B), and a tensor over the limit fails whatever TFLM says.
        over = oversized_tensor(m.model_info, min(limit, board.ram_bytes))
        if over is not None:
            t, nbytes, why = over
            return Verdict(
                name="arena",
                passed=False,
                measured=nbytes,
                limit=limit,
                unit="B",
                message=f"arena: {_tensor_label(t)} needs {fmt_bytes(nbytes)}, which {why}; "
                f"limit {fmt_limit_bytes(limit, text)}",
                details=["method: tensor shape x element size, checked before TFLM allocates"],
                fix="shrink the tensor's shape (fewer units/filters, smaller input), or fix the model's shapes",
                extra={"tensor": t.name[:256], "tensor_bytes": nbytes, "board": board.name},
            )
        fix = (
            "shrink the largest activations (fewer filters early, stride or pooling sooner), "
            "or pick a board with more RAM (--tinyml-board)"
        )
        fw = m.firmware_for_memory()
        if fw is not None and fw.runtime == Runtime.TFLM and fw.arena_min_bytes:
            details = [
                f"smallest arena AllocateTensors() accepts on {emulator_label(fw)} ({fw.core}): "
                f"{fmt_bytes(fw.arena_min_bytes)} (bisection to 16 B on the target); "
                f"arena_used_bytes() {fmt_bytes(fw.arena_bytes)} with a {fmt_bytes(fw.arena_used_at)} arena",
                "method: target",
            ]
            extra = {"method": "target", "used": fw.arena_bytes, "used_at": fw.arena_used_at, "board": board.name,
                     **runtime_properties(fw)}
            verdict = judge_bytes("arena", fw.arena_min_bytes, limit, text, details, fix, extra,
                                  how=f"smallest that allocates on the target, {emulator_label(fw)}")
            verdict.message += f" {runtime_label(fw)}"
            return verdict
        arena = m.arena
        details = [
            f"32-bit Cortex-M arena {fmt_bytes(arena.bytes)} (host 64-bit TFLM reported {fmt_bytes(arena.host_bytes)})",
            f"method: host estimate ({arena.method})",
        ]
        if fw is not None:
            details.append(f"not measured on the target: {runtime_label(fw)}")
        return judge_bytes(
            "arena",
            arena.bytes,
            limit,
            text,
            details,
            fix,
            {"host_bytes": arena.host_bytes, "board": board.name, "method": "host estimate"},
            how="host estimate for a 32-bit target",
        )


class FlashCheck(DeclaredCheck):
    info = CheckInfo(name="flash", key="flash", metric="flash_bytes", unit="B", direction=Direction.LOWER)

    def applies(self, constraints: Constraints) -> bool:
        return constraints.flash is not None

    def evaluate(self, m: Measurements) -> Verdict:
        est = m.flash
        board = m.board
        assert m.constraints.flash is not None
        limit, text = byte_limit(
            m.constraints.flash,
            board,
            board.flash_limit,
            f"{board.name}: {fmt_bytes(board.flash_bytes)} flash - {fmt_bytes(board.flash_reserve)} reserve",
        )
        total = est.model_bytes + est.runtime_code_bytes
        details = [
            f"model {fmt_bytes(est.model_bytes)} + TFLM runtime code estimate {fmt_bytes(est.runtime_code_bytes)}",
            f"method: {est.method}",
        ]
        fw = m.firmware_for_memory()
        if fw is not None and fw.runtime == Runtime.TFLM:
            verdict = judge_bytes(
                "flash",
                fw.flash_bytes,
                limit,
                text,
                [
                    f"real TFLM harness ELF ({emulator_label(fw)}, {fw.core}): text {fmt_bytes(fw.text_bytes)}, rodata "
                    f"{fmt_bytes(fw.rodata_bytes)} (model {fmt_bytes(est.model_bytes)}), flash image "
                    f"{fmt_bytes(fw.flash_bytes)}",
                    f"host estimate was {fmt_bytes(total)} ({est.method})",
                    "method: target ELF sections",
                ],
                "quantize to int8 to shrink the weights, register only the ops the model uses, or pick a board "
                "with more flash (--tinyml-board)",
                {"model_bytes": est.model_bytes, "text_bytes": fw.text_bytes, "rodata_bytes": fw.rodata_bytes,
                 "method": "target", **runtime_properties(fw)},
                how=f"real harness ELF, {emulator_label(fw)}",
            )
            verdict.message += f" {runtime_label(fw)}"
            return verdict
        if fw is not None:
            details.append(
                f"measured harness ELF ({emulator_label(fw)}): text {fmt_bytes(fw.text_bytes)}, rodata {fmt_bytes(fw.rodata_bytes)}, "
                f"flash image {fmt_bytes(fw.flash_bytes)}"
            )
        return judge_bytes(
            "flash",
            total,
            limit,
            text,
            details,
            "quantize to int8 to shrink the weights, or pick a board with more flash (--tinyml-board)",
            {"model_bytes": est.model_bytes, "runtime_code_bytes": est.runtime_code_bytes, "per_op": dict(est.per_op),
             "method": "host estimate"},
            how="host estimate: model + TFLM code",
        )


def firmware_ram_limit(board: Board) -> tuple[int, str]:
    """The RAM the firmware's data, arena and stack must share: the ``ram`` region of the board's memory map
    (boards.yaml), which the firmware is linked into, when the board has one; else all of the board's RAM.
    (A board's ``ram`` figure may count blocks the firmware cannot use for them, e.g. the STM32F405's CCM.)"""
    if board.memory is not None:
        ram = board.memory.ram
        return ram.length, f"{board.name} RAM region {ram.origin:#010x}+{ram.length:#x}, boards.yaml memory map"
    return board.ram_bytes, f"{board.name} RAM"


class FirmwareRamCheck(DeclaredCheck):
    info = CheckInfo(name="firmware_ram", key="firmware", unit="B", direction=Direction.LOWER, markers=("firmware",))

    def applies(self, constraints: Constraints) -> bool:
        return constraints.firmware is not None and constraints.firmware.enabled

    def evaluate(self, m: Measurements) -> Verdict:
        require_model_fits_flash(m)
        fw = m.firmware
        board = m.board
        arena = fw.arena_min_bytes if fw.runtime == Runtime.TFLM and fw.arena_min_bytes else fw.arena_bytes
        what = "smallest allocating arena" if arena == fw.arena_min_bytes and arena else "arena"
        used = fw.static_ram_bytes + arena + fw.stack_bytes
        details = [
            f"static data {fmt_bytes(fw.static_ram_bytes)} + {what} {fmt_bytes(arena)} "
            f"+ stack high-water {fmt_bytes(fw.stack_bytes)} (painted stack, {emulator_label(fw)})",
        ]
        limit, text = firmware_ram_limit(board)
        verdict = judge_bytes(
            "firmware_ram",
            used,
            limit,
            text,
            details,
            "reduce the arena (smaller activations) or pick a board with more RAM",
            {
                "static_bytes": fw.static_ram_bytes,
                "arena_bytes": arena,
                "stack_bytes": fw.stack_bytes,
                "ram_limit_bytes": limit,
            },
            how=f"measured on {emulator_label(fw)}",
        )
        return with_runtime(verdict, fw)
