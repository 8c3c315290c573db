"""Renode backend: the same firmware and protocol as QEMU, on Renode's own platform descriptions.

Needs a real Renode (``renode`` on PATH); skipped elsewhere with how to install it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from pytest_tinyml.boards import builtin_boards
from pytest_tinyml.emulate import run_firmware, toolchain_status
from pytest_tinyml.emulate.renode import renode_script
from pytest_tinyml.emulate.toolchain import RENODE_HINT

needs_renode = pytest.mark.skipif(
    shutil.which("renode") is None or not toolchain_status("renode").ok,
    reason=f"renode not on PATH; to enable: {RENODE_HINT}",
)
needs_both = pytest.mark.skipif(
    shutil.which("renode") is None or not toolchain_status("qemu").ok or not toolchain_status("renode").ok,
    reason=f"needs both QEMU and Renode; to enable: {RENODE_HINT}",
)
BOARDS = {b.name: b for b in builtin_boards()}


def _samples(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(-128, 128, size=(1, 8, 8, 1), dtype=np.int8) for _ in range(n)]


def test_renode_script_loads_the_platform_elf_and_input_block_without_semihosting(tmp_path: Path) -> None:
    text = renode_script("platforms/cpus/stm32f4.repl", tmp_path / "app.elf", tmp_path / "in.bin", 0x08004000,
                         tmp_path / "uart.txt", "sysbus.usart1")
    assert "LoadPlatformDescription @platforms/cpus/stm32f4.repl" in text
    assert f"sysbus LoadBinary @{tmp_path / 'in.bin'} 0x8004000" in text
    assert f"sysbus.usart1 CreateFileBackend @{tmp_path / 'uart.txt'} true" in text
    assert "emihost" not in text.lower().replace("no semihosting", "")


@needs_both
@pytest.mark.parametrize(
    ("board", "machine"),
    [("stm32f405", "netduinoplus2"), ("arduino_nano_33_ble_sense", "mps2-an386")],
)
def test_renode_and_qemu_agree_on_outputs_and_instructions(
    tflite_factory: ModuleType, board: str, machine: str, tmp_path: Path
) -> None:
    b = BOARDS[board]
    model = tflite_factory.int8_cnn(seed=4, fc_units=16)
    samples = _samples(4, 4)
    q = run_firmware(model, samples, machine=machine, memory=b.memory, cache_dir=tmp_path)
    r = run_firmware(model, samples, machine=machine, memory=b.memory, platform=b.renode, emulator="renode",
                     cache_dir=tmp_path, timeout=300)
    assert r.emulator == "renode" and r.emulator_command.startswith("renode")
    assert "semihosting" not in r.emulator_command
    assert [o.tobytes() for o in r.outputs] == [o.tobytes() for o in q.outputs]
    assert r.instructions_per_inference == pytest.approx(q.instructions_per_inference, rel=0.005)
    assert r.calibration_instructions == pytest.approx(200_000, rel=0.001)
    assert "board map" in r.memory_map and b.renode in r.memory_map  # type: ignore[operator]


@needs_renode
def test_guest_semihosting_call_cannot_reach_the_host_under_renode(tmp_path: Path) -> None:
    """The same hostile guest as under QEMU (semihosting SYS_SYSTEM via BKPT 0xAB), on Renode's nRF52840.

    Renode 1.15.1 answers BKPT 0xAB itself: only SYS_READC/WRITEC/WRITE0 to a registered semihosting UART
    (the generated script registers none); any other operation returns 0 to the guest and does nothing."""
    from test_firmware_protocol import _hostile_elf

    from pytest_tinyml.emulate.build import board_script, elf_symbols
    from pytest_tinyml.emulate.protocol import input_block, parse_uart
    from pytest_tinyml.emulate.renode import renode_run
    from pytest_tinyml.emulate.toolchain import RENODE_PLATFORMS

    b = BOARDS["nrf52840"]
    assert b.memory is not None and b.renode is not None
    platform = RENODE_PLATFORMS[b.renode]
    script = board_script(tmp_path / "cache", b.memory, platform.uart, "hostile guest")
    elf, marker = _hostile_elf(tmp_path, tmp_path / "cache", script)
    addr = elf_symbols(elf, ("__tm_input_start",))["__tm_input_start"]
    io = tmp_path / "io"
    io.mkdir()
    block = io / "input.bin"
    block.write_bytes(input_block(b"", b"", 0, 0))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cmd, run, _ = renode_run(b.renode, elf, block, addr, io / "uart.txt", cwd, 120, max_bytes=1 << 16,
                             vector_table=b.memory.flash.origin)
    proto = parse_uart(run.uart, 0)
    log = " ".join(proto.log)
    assert "FAULT" in proto.tags or "semihosting returned 0" in log, proto.log  # refused in the guest ...
    assert not marker.exists()  # ... and nothing ran on the host
    assert "Semihosting" not in (io / "tinyml.resc").read_text()
    assert not [p for p in cwd.iterdir() if p.name != "renode-tmp"]


@needs_renode
def test_renode_counter_is_the_whole_runs_work_and_holds_no_idle_time(
    tflite_factory: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counter is asked at the end marker and again twice, a second apart: it must not move (the firmware
    halts with SysTick off and interrupts masked), so it counts work, not Renode's idle virtual time. It covers
    the calibration loop and every inference, and is reported under a name that says "whole run"."""
    import time

    import pytest_tinyml.emulate.runner as run_mod
    from pytest_tinyml.checks.firmware import emulator_label, firmware_provenance

    original = run_mod.run_emulator
    readings: list[int] = []

    def ask_three_times(*args, on_end=None, **kwargs):  # type: ignore[no-untyped-def]
        def again(proc, console):  # type: ignore[no-untyped-def]
            for _ in range(3):
                seen = console.read_text(errors="replace").count("ExecutedInstructions")
                on_end(proc, console)
                text = console.read_text(errors="replace")
                assert text.count("ExecutedInstructions") == seen + 1
                readings.append(int(text.rsplit("ExecutedInstructions", 1)[1].split()[0], 0))
                time.sleep(1)

        return original(*args, on_end=again if on_end else None, **kwargs)

    monkeypatch.setattr(run_mod, "run_emulator", ask_three_times)
    b = BOARDS["stm32f405"]
    r = run_firmware(tflite_factory.int8_cnn(seed=4, fc_units=16), _samples(2, 7), machine="netduinoplus2", memory=b.memory,
                     platform=b.renode, emulator="renode", cache_dir=tmp_path, timeout=300)
    assert len(readings) == 3 and readings[0] == readings[1] == readings[2] == r.executed_instructions, readings
    assert r.executed_instructions > 2 * r.instructions_per_inference + r.calibration_instructions
    props = firmware_provenance(r)
    assert props["emulator_total_instructions"] == r.executed_instructions and "executed_instructions" not in props
    assert "whole run" in props["emulator_total_instructions_note"]
    assert emulator_label(r) == f"Renode {b.renode}"
