"""Guest-host protocol v1: no semihosting, CRC-framed UART lines, validated input block, isolation.

The guest programs here are real firmware built with the project's startup code and harness and run under
the real QEMU; the hostile one tries the semihosting call that used to run a command on the host.
"""

from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from pytest_tinyml._util.toolcache import ToolCache
from pytest_tinyml.emulate import FirmwareError, run_firmware, toolchain_status
from pytest_tinyml.emulate.build import GCC, build_library, core_cflags, elf_symbols, link_command
from pytest_tinyml.emulate.protocol import input_block, parse_uart
from pytest_tinyml.emulate.qemu import qemu_command
from pytest_tinyml.emulate.runner import run_emulator
from pytest_tinyml.emulate.toolchain import MACHINES, firmware_dir

pytest_plugins = ["pytester"]

needs_toolchain = pytest.mark.skipif(
    not toolchain_status().ok,
    reason=f"firmware toolchain missing ({', '.join(toolchain_status().missing)}); to enable: {toolchain_status().hint}",
)


@pytest.fixture(scope="session")
def fw_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's firmware build cache (the same directory test_firmware_api.py uses: the runtime library
    is compiled once per session)."""
    return tmp_path_factory.getbasetemp() / "firmware-cache"


def _frame(text: str) -> bytes:
    return f"{text} *{zlib.crc32(text.encode()):08x}\n".encode()


def test_parse_uart_accepts_framed_lines_and_checks_the_output_crc() -> None:
    data = bytes(range(10))
    raw = (b"free text from TFLM\n" + _frame("TM:INFO arena=5") + _frame("TM:D " + data.hex())
           + _frame(f"TM:END status=0 out_bytes=10 out_crc={zlib.crc32(data):08x}"))
    proto = parse_uart(raw, 10)
    assert proto.ended and proto.data == data and proto.tags["INFO"]["arena"] == "5"
    assert "free text from TFLM" in proto.log


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"TM:INFO arena=5 *00000000\n", "garbled"),  # wrong CRC
        (b"TM:RESULT samples=1\n", "garbled"),  # no CRC at all
        (_frame("TM:D zz"), "bad output data"),
        (_frame("TM:D " + "00" * 11), "more than the expected 10"),
        (_frame("TM:D 00") + _frame("TM:END status=0 out_bytes=1 out_crc=00000000"), "count/CRC-32"),
    ],
)
def test_parse_uart_rejects_garbage_with_a_clear_error(raw: bytes, message: str) -> None:
    with pytest.raises(FirmwareError) as info:
        parse_uart(raw, 10)
    assert message in str(info.value)


def test_input_block_layout() -> None:
    block = input_block(b"TFL3-model", b"\x01\x02\x03\x04", 2, 2)
    words = [int.from_bytes(block[i : i + 4], "little") for i in range(0, 64, 4)]
    assert block[:4] == b"TMIB" and words[1] == 1 and words[2] == 64 and words[3] == len(block)
    assert words[4] == 64 and words[5] == 10 and words[6] == 80 and words[7:9] == [2, 2]
    assert words[9] == zlib.crc32(block[64:]) and words[15] == zlib.crc32(block[:60])
    assert block[80:] == b"\x01\x02\x03\x04"


HOSTILE_MAIN = r"""
#include <stdint.h>
#include "harness.h"
/* Semihosting SYS_SYSTEM (0x12): r1 -> {command, length}.  With semihosting enabled on the host side this
 * ran the command on the host; without it, BKPT is a debug event the core escalates to a HardFault. */
static const char cmd[] = "touch MARKER";
int main(void)
{
    uint32_t args[2] = {(uint32_t)(uintptr_t)cmd, sizeof cmd - 1};
    register uint32_t r0 __asm__("r0") = 0x12;
    register uint32_t *r1 __asm__("r1") = args;
    tm_report("INFO about to call SYS_SYSTEM");
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    tm_report("INFO semihosting returned %lu", (unsigned long)r0);
    return 0;
}
"""


def _hostile_elf(tmp_path: Path, cache: Path, script: Path | None = None,
                 source: str = HOSTILE_MAIN) -> tuple[Path, Path]:
    """The firmware whose main makes the semihosting SYS_SYSTEM call; returns (elf, marker path)."""
    marker = tmp_path / "marker-created-by-guest"
    with build_library("cortex-m4", ToolCache(cache / "tools")) as entry:
        lib = entry.path
        return _link_hostile(tmp_path, lib, marker, script, source)


def _link_hostile(tmp_path: Path, lib: Path, marker: Path, script: Path | None, source: str) -> tuple[Path, Path]:
    fw = firmware_dir()
    src = tmp_path / "hostile.c"
    src.write_text(source.replace("MARKER", str(marker)))
    flags = core_cflags("cortex-m4")
    subprocess.run([GCC, *flags, "-I", str(fw / "app"), "-c", str(src), "-o", str(tmp_path / "hostile.o")],
                   check=True, capture_output=True)
    out = tmp_path / "out"
    out.mkdir()
    boards = fw / "boards"
    subprocess.run(link_command(GCC, flags, boards, script or boards / MACHINES["mps2-an386"].linker_script, out,
                                [lib / "startup.o", lib / "harness.o", tmp_path / "hostile.o"]),
                   check=True, capture_output=True)
    return out / "app.elf", marker


def _guest_command(tmp_path: Path, elf: Path) -> tuple[list[str], Path, Path]:
    """QEMU's command for a guest ELF with an empty input block: (command, empty working dir, UART file)."""
    addr = elf_symbols(elf, ("__tm_input_start",))["__tm_input_start"]
    block = tmp_path / "input.bin"
    block.write_bytes(input_block(b"", b"", 0, 0))
    serial = tmp_path / "uart.txt"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    return qemu_command("mps2-an386", elf, block, addr, serial), cwd, serial


@needs_toolchain
def test_guest_semihosting_call_cannot_reach_the_host(tmp_path: Path, fw_cache: Path) -> None:
    elf, marker = _hostile_elf(tmp_path, fw_cache)
    cmd, cwd, serial = _guest_command(tmp_path, elf)
    assert not [arg for arg in cmd if arg.startswith("-") and "semihosting" in arg]  # no -semihosting option
    run = run_emulator(cmd, cwd, serial, 30, max_bytes=1 << 16)
    proto = parse_uart(run.uart, 0)
    assert proto.tags["INFO"] == {} or "about to call" in " ".join(proto.log)
    assert "FAULT" in proto.tags, proto.log  # the BKPT faulted in the guest ...
    assert "semihosting returned" not in " ".join(proto.log)
    assert not marker.exists()  # ... and nothing ran on the host
    assert list(cwd.iterdir()) == []  # the emulator's working directory stays empty


PROBE_MAIN = r"""
#include <setjmp.h>
#include <stdint.h>
#include "harness.h"
/* A probe that faults (a store to an address no bus answers, as TFLM's memory planner did for an arena just
 * too small) resumes at resume() once; a fault outside a probe is reported and ends the run. */
static jmp_buf env;
static void resume(void) { longjmp(env, 1); }
int main(void)
{
    volatile int caught = 0;
    if (setjmp(env) == 0) {
        tm_fault_resume = resume;
        *(volatile uint32_t *)0x8666AF68u = 1u;
        tm_report("INFO probe did not fault");
    } else {
        caught = 1;
    }
    tm_fault_resume = 0;
    tm_report("INFO caught=%d pending=%d", caught, tm_fault_resume != 0);
    *(volatile uint32_t *)0x8666AF68u = 2u; /* not probing: reported */
    tm_report("INFO unreachable");
    return 0;
}
"""


@needs_toolchain
def test_a_fault_while_probing_resumes_once_and_a_later_fault_is_reported(tmp_path: Path, fw_cache: Path) -> None:
    elf, _ = _hostile_elf(tmp_path, fw_cache, source=PROBE_MAIN)
    cmd, cwd, serial = _guest_command(tmp_path, elf)
    run = run_emulator(cmd, cwd, serial, 30, max_bytes=1 << 16)
    proto = parse_uart(run.uart, 0)
    text = " ".join(proto.log)
    assert "caught=1 pending=0" in text and "probe did not fault" not in text, proto.log
    assert "FAULT" in proto.tags and "unreachable" not in text, proto.log


@needs_toolchain
def test_corrupt_input_block_is_rejected_by_the_firmware(
    tflite_factory: ModuleType, fw_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FAKE fault: the host's block writer is patched to flip one payload byte after the CRC was computed,
    standing in for a corrupted transfer; the firmware must refuse the block, not run the model."""
    import pytest_tinyml.emulate.run as run_mod

    real = run_mod.input_block

    def corrupt(*args: object) -> bytes:
        block = bytearray(real(*args))  # type: ignore[arg-type]
        block[70] ^= 0xFF
        return bytes(block)

    monkeypatch.setattr(run_mod, "input_block", corrupt)
    with pytest.raises(FirmwareError) as info:
        run_firmware(tflite_factory.int8_cnn(seed=1), [np.zeros((1, 8, 8, 1), np.int8)], cache_dir=fw_cache)
    assert info.value.stage == "input" and "payload CRC mismatch" in str(info.value)


@needs_toolchain
def test_model_too_big_for_flash_says_by_how_many_bytes(tflite_factory: ModuleType, fw_cache: Path) -> None:
    model = tflite_factory.int8_cnn(seed=1)
    samples = [np.zeros((1, 8, 8, 1), np.int8)]
    padded = model + bytes(1100 * 1024)  # trailing bytes: still a valid flatbuffer, > 1 MiB of flash
    with pytest.raises(FirmwareError) as info:
        run_firmware(padded, samples, machine="netduinoplus2", cache_dir=fw_cache)
    assert info.value.stage == "link" and "short by" in str(info.value) and "bytes" in str(info.value)


@needs_toolchain
def test_samples_beyond_the_flash_are_split_into_runs(tflite_factory: ModuleType, fw_cache: Path) -> None:
    """1 MiB of flash on the Netduino: 130 samples of 16 KiB do not fit at once; the host splits them."""
    model = tflite_factory.int8_cnn_graph_fc_only(units=1, features=16384).build()
    rng = np.random.default_rng(0)
    samples = [rng.integers(-128, 128, size=(1, 16384), dtype=np.int8) for _ in range(130)]
    res = run_firmware(model, samples, machine="netduinoplus2", cache_dir=fw_cache)
    assert res.runs >= 2 and res.samples == 130
    one = run_firmware(model, samples[-3:], machine="netduinoplus2", cache_dir=fw_cache)
    assert one.runs == 1
    assert [o.tobytes() for o in res.outputs[-3:]] == [o.tobytes() for o in one.outputs]


def _conv_overflow_model(tf_: ModuleType) -> bytes:
    """CONV_2D whose output shape has 65536 x 65536 = 2^32 elements: a 32-bit element count wraps to 0."""
    g = tf_.Graph()
    x = g.add(tf_.Tensor("input", (1, 8, 8, 1), tf_.INT8, scale=(1 / 255,), zero_point=(-128,)))
    w = g.const("conv/filter", np.ones((1, 1, 1, 1)), tf_.INT8, scale=(0.01,), zero_point=(0,), quantized_dimension=0)
    b = g.const("conv/bias", np.zeros((1,)), tf_.INT32, scale=(0.01 / 255,), zero_point=(0,))
    y = g.add(tf_.Tensor("conv/out", (1, 65536, 65536, 1), tf_.INT8, scale=(0.05,), zero_point=(-128,)))
    g.ops.append(tf_.Op(tf_.OP["CONV_2D"], [x, w, b], [y], tf_.OPTION_TYPES["Conv2DOptions"],
                        tf_._conv_options(1, tf_.VALID, tf_.NONE)))
    g.inputs, g.outputs = [x], [y]
    return g.build()


@needs_toolchain
def test_element_count_overflowing_32_bits_is_rejected_before_running(
    tflite_factory: ModuleType, fw_cache: Path
) -> None:
    with pytest.raises(FirmwareError) as info:
        run_firmware(_conv_overflow_model(tflite_factory), [np.zeros((1, 8, 8, 1), np.int8)], cache_dir=fw_cache)
    assert info.value.stage == "init" and "32-bit overflow" in str(info.value)


# ------------------------------------------------------------------------------------ memory maps
def test_board_map_is_used_where_the_qemu_machine_models_it() -> None:
    from pytest_tinyml.boards import builtin_boards
    from pytest_tinyml.emulate.placement import resolve_target

    boards = {b.name: b for b in builtin_boards()}
    nrf = resolve_target("mps2-an386", "qemu", boards["nrf52840"].memory, None)
    assert nrf.memory == boards["nrf52840"].memory and nrf.note.startswith("board map")
    assert nrf.memory.ram.length == 256 * 1024 and nrf.memory.flash.origin == 0
    f405 = resolve_target("netduinoplus2", "qemu", boards["stm32f405"].memory, None)
    assert f405.memory.flash.origin == 0x08000000 and f405.memory.ram.length == 128 * 1024
    # the STM32F746's flash at 0x08000000 does not exist on the MPS2 AN500: the proxy's own map, said so
    f746 = resolve_target("mps2-an500", "qemu", boards["stm32f746"].memory, None)
    assert f746.memory == MACHINES["mps2-an500"].memory and "not modelled by this QEMU machine" in f746.note


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        ("1MiB", "memory must be a mapping"),
        ({"flash": {"origin": 0, "length": "1MiB"}}, "lacks region 'ram'"),
        ({"flash": {"origin": 0, "length": "1MiB"}, "ram": {"origin": "0x2000000g", "length": "1KiB"}},
         "is not an address"),
        ({"flash": {"origin": 0xFFFFF000, "length": "1MiB"}, "ram": {"origin": 0x20000000, "length": "1KiB"}},
         "must fit the 32-bit address space"),
        ({"flash": {"origin": -1, "length": "1MiB"}, "ram": {"origin": 0x20000000, "length": "1KiB"}},
         "32-bit address"),
    ],
)
def test_board_memory_map_is_validated(memory: object, message: str) -> None:
    from pytest_tinyml.boards import board_from_mapping
    from pytest_tinyml.errors import SpecError

    with pytest.raises(SpecError) as info:
        board_from_mapping("b", {"core": "cortex-m4", "clock": "64MHz", "flash": "1MiB", "ram": "256KiB",
                                 "memory": memory}, "plugin")
    assert message in str(info.value)


@needs_toolchain
def test_model_that_does_not_fit_the_board_ram_says_by_how_many_bytes(
    tflite_factory: ModuleType, fw_cache: Path
) -> None:
    from pytest_tinyml.boards import builtin_boards

    l476 = {b.name: b for b in builtin_boards()}["stm32l476"]
    nrf = {b.name: b for b in builtin_boards()}["nrf52840"]
    model = tflite_factory.int8_cnn(seed=2, height=100, width=100, filters=8)  # 98x98x8 x2 live tensors: ~150 KB
    samples = [np.zeros((1, 100, 100, 1), np.int8)]
    ok = run_firmware(model, samples, machine="mps2-an386", memory=nrf.memory, cache_dir=fw_cache)
    assert "board map" in ok.memory_map and ok.arena_bytes > 96 * 1024
    # the L476's 96 KiB SRAM1 is not at a QEMU-modelled address on the MPS2 proxy (flash at 0x08000000), so it
    # runs on the proxy's map; the nRF52840 map with the RAM cut to 96 KiB stands for it here
    from dataclasses import replace

    from pytest_tinyml.boards import Region

    small = replace(nrf.memory, ram=Region(0x20000000, l476.memory.ram.length))  # type: ignore[type-var,union-attr]
    with pytest.raises(FirmwareError) as info:
        run_firmware(model, samples, machine="mps2-an386", memory=small, cache_dir=fw_cache)
    assert info.value.stage == "init" and "short by" in str(info.value)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@needs_toolchain
def test_timeout_kills_the_emulator_and_leaves_no_process(tflite_factory: ModuleType, fw_cache: Path) -> None:
    model = tflite_factory.int8_cnn(seed=1, height=32, width=32, filters=16)
    rng = np.random.default_rng(0)
    samples = [rng.integers(-128, 128, size=(1, 32, 32, 1), dtype=np.int8) for _ in range(300)]
    with pytest.raises(FirmwareError) as info:
        run_firmware(model, samples, cache_dir=fw_cache, timeout=0.5)
    assert info.value.stage == "timeout"
    assert _processes_mentioning(str(fw_cache)) == []


@needs_toolchain
def test_emulator_that_stops_without_the_marker_is_a_clear_error(tmp_path: Path) -> None:
    from pytest_tinyml.emulate.protocol import Protocol
    from pytest_tinyml.emulate.protocol import raise_reported as _raise_reported
    from pytest_tinyml.emulate.runner import EmulatorRun

    not_elf = tmp_path / "app.elf"
    not_elf.write_bytes(b"\x7fELF garbage")
    block = tmp_path / "in.bin"
    block.write_bytes(input_block(b"", b"", 0, 0))
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    run = run_emulator(qemu_command("mps2-an386", not_elf, block, 0x10000, tmp_path / "uart.txt"), cwd,
                       tmp_path / "uart.txt", 30, max_bytes=1024)
    assert run.returncode not in (None, 0)
    proto = parse_uart(run.uart, 0)
    with pytest.raises(FirmwareError) as info:
        _raise_reported(proto, run, [])
    assert info.value.stage == "emulate" and "before the firmware's end marker" in str(info.value)
    assert isinstance(run, EmulatorRun) and isinstance(proto, Protocol)


def test_emulator_choice_option_then_spec_then_board() -> None:
    import shutil
    from dataclasses import replace
    from types import SimpleNamespace

    from pytest_tinyml.boards import builtin_boards
    from pytest_tinyml.emulate.firmware import emulator as choose_emulator
    from pytest_tinyml.spec.model import FirmwareSpec

    def emulator(t: SimpleNamespace) -> str:  # the policy takes explicit values: the option, the spec's section, the board
        return choose_emulator(t.options.emulator, t.firmware_spec, t.board)

    nrf = {b.name: b for b in builtin_boards()}["nrf52840"]
    renode_only = replace(nrf, qemu=None)

    def target(option: str | None, spec: str | None, board: object) -> Any:
        return SimpleNamespace(options=SimpleNamespace(emulator=option), firmware_spec=FirmwareSpec(emulator=spec),
                               board=board)

    assert emulator(target("renode", "qemu", nrf)) == "renode"  # --tinyml-emulator wins
    assert emulator(target(None, "renode", nrf)) == "renode"  # then the spec
    assert emulator(target(None, None, nrf)) == "qemu"  # the board has a QEMU machine
    want = "renode" if shutil.which("renode") else "qemu"  # only Renode models it: Renode when installed
    assert emulator(target(None, None, renode_only)) == want


def test_renode_platform_that_miscomputes_a_core_is_refused() -> None:
    """Cortex-M7 double-precision code gave outputs different from host TFLM on Renode 1.15.1's STM32F746
    (checked by hand, see toolchain.py); such a run is not evaluable rather than a false mismatch."""
    from pytest_tinyml.boards import builtin_boards
    from pytest_tinyml.emulate.placement import resolve_target
    from pytest_tinyml.errors import NotEvaluable

    f746 = {b.name: b for b in builtin_boards()}["stm32f746"]
    with pytest.raises(NotEvaluable) as info:
        resolve_target("mps2-an500", "renode", f746.memory, f746.renode, "cortex-m7")
    assert "--tinyml-emulator qemu" in str(info.value)
    ok = resolve_target("mps2-an500", "renode", f746.memory, f746.renode, "cortex-m4")
    assert ok.emulator == "renode" and ok.memory == f746.memory


SPINNING_MAIN = r"""
#include <stdio.h>
#include "harness.h"
/* What TFLM's TFLITE_ABORT does when built with TF_LITE_MCU_DEBUG_LOG: print HALTED, spin forever. */
int main(void)
{
    fprintf(stderr, "HALTED\n");
    fflush(stderr);
    for (;;) {
    }
}
"""


@needs_toolchain
def test_firmware_that_halts_is_stopped_at_once_not_at_the_timeout(tmp_path: Path, fw_cache: Path) -> None:
    from pytest_tinyml.emulate.protocol import raise_reported as _raise_reported

    elf, _ = _hostile_elf(tmp_path, fw_cache, source=SPINNING_MAIN)
    cmd, cwd, serial = _guest_command(tmp_path, elf)
    # without the early stop this would end in a FirmwareError(stage="timeout") after 60 s
    run = run_emulator(cmd, cwd, serial, 60, max_bytes=1 << 16)
    proto = parse_uart(run.uart, 0)
    with pytest.raises(FirmwareError) as info:
        _raise_reported(proto, run, proto.log)
    assert "HALTED" in str(info.value) and info.value.stage == "invoke"


def _block_file(folder: Path, n: int, size: int, age: float) -> Path:
    import os
    import time

    p = folder / f"{n:024x}.bin"
    p.write_bytes(bytes(size))
    t = time.time() - age
    os.utime(p, (t, t))
    return p


def test_input_blocks_are_pruned_least_recently_used_first(tmp_path: Path) -> None:
    """The input-block folder stays bounded: the oldest blocks go first, never ``keep`` nor one used within
    the grace period; other files are not touched, a writer's temporary file left by a killed process is."""
    import os
    import time

    from pytest_tinyml.emulate.blocks import prune_blocks

    folder = tmp_path / "inputs"
    folder.mkdir()
    old = [_block_file(folder, i, 1000, 7200 - i) for i in range(5)]  # the oldest first, past the grace
    fresh = _block_file(folder, 0xF, 1000, 60)  # used a minute ago: within the grace period
    keep = _block_file(folder, 0xE, 1000, 9000)  # the oldest of all, but it is the block being used
    other = folder / "notes.bin"  # not a name blocks.py gives: never touched
    other.write_bytes(bytes(5000))
    os.utime(other, (1, 1))
    orphan = folder / ".block-abc123"  # left by a writer killed an hour ago
    orphan.write_bytes(bytes(10))
    os.utime(orphan, (time.time() - 3600,) * 2)
    deleted = prune_blocks(folder, keep=keep, limit=3500, grace=600)
    assert deleted == old[:4]  # 7,000 B of blocks -> 3,000 B: the four oldest unprotected blocks
    assert sorted(p.name for p in folder.iterdir()) == sorted([fresh.name, keep.name, old[4].name, "notes.bin"])
    assert prune_blocks(folder, keep=keep, limit=3500, grace=600) == []  # under the limit
    assert (tmp_path / "inputs.lock").is_file()  # the folder's lock sits next to it, like builds/<key>.lock


def test_input_block_pruning_never_follows_links(tmp_path: Path) -> None:
    """A crafted cache whose inputs folder (or a block in it) is a symbolic link deletes nothing outside."""
    from pytest_tinyml.emulate.blocks import prune_blocks

    outside = tmp_path / "outside"
    outside.mkdir()
    victim = _block_file(outside, 1, 4000, 99999)
    linked = tmp_path / "cache-a" / "inputs"
    linked.parent.mkdir()
    linked.symlink_to(outside, target_is_directory=True)
    assert prune_blocks(linked, limit=0, grace=0) == []
    inputs = tmp_path / "cache-b" / "inputs"
    inputs.mkdir(parents=True)
    (inputs / f"{2:024x}.bin").symlink_to(victim)
    assert prune_blocks(inputs, limit=0, grace=0) == []
    assert victim.is_file()


def test_use_block_reuses_repairs_and_prunes(tmp_path: Path) -> None:
    import os

    from pytest_tinyml.emulate.blocks import block_name, use_block

    folder = tmp_path / "inputs"
    with use_block(folder, b"a" * 1000, keep_bytes=2500, grace=0) as first:
        assert first.name == block_name(b"a" * 1000) and first.read_bytes() == b"a" * 1000
    os.utime(first, (1, 1))
    with use_block(folder, b"b" * 1000, keep_bytes=2500, grace=0) as second:
        pass
    os.utime(second, (2, 2))
    with use_block(folder, b"a" * 1000, keep_bytes=2500, grace=0) as again:  # reused: now the most recent
        assert again == first and first.stat().st_mtime > 2
    with use_block(folder, b"c" * 1000, keep_bytes=2500, grace=0) as third:  # 3,000 B > 2,500 B
        pass
    assert first.is_file() and third.is_file() and not second.exists()  # the least recently used went
    first.write_bytes(b"a" * 999 + b"X")  # damaged in place (same size): written again, not trusted
    with use_block(folder, b"a" * 1000, keep_bytes=1 << 20) as repaired:
        assert repaired.read_bytes() == b"a" * 1000
    first.unlink()
    first.symlink_to(third)  # a link with the block's name is replaced by the block itself
    with use_block(folder, b"a" * 1000, keep_bytes=1 << 20) as replaced:
        assert not replaced.is_symlink() and replaced.read_bytes() == b"a" * 1000
    assert third.read_bytes() == b"c" * 1000


_HOLD = """
import sys, time
from pathlib import Path
from pytest_tinyml.emulate.blocks import use_block
with use_block(Path(sys.argv[1]), b"held" * 250, keep_bytes=0, grace=0) as p:
    print(p, flush=True)
    sys.stdin.readline()  # hold the block (an emulator running on it) until told to stop
"""


def test_block_an_emulator_is_using_is_never_pruned(tmp_path: Path) -> None:
    """Another process holds a block (as a running emulator does): pruning to 0 bytes with no grace period
    leaves it alone, then deletes it once that process has let go."""
    import os

    from pytest_tinyml.emulate.blocks import prune_blocks

    folder = tmp_path / "inputs"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdin is not None
        held = Path(holder.stdout.readline().strip())
        idle = _block_file(folder, 7, 1000, 3600)
        os.utime(held, (1, 1))  # the oldest of all
        assert prune_blocks(folder, limit=0, grace=0) == [idle]
        assert held.is_file()
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
    assert prune_blocks(folder, limit=0, grace=0) == [held]


_WORKER = """
import random, sys
from pathlib import Path
from pytest_tinyml.emulate.blocks import use_block
rng = random.Random(int(sys.argv[2]))
for i in range(int(sys.argv[3])):
    block = bytes([rng.randrange(6)]) * rng.randrange(100, 4000)  # a few contents, shared by both workers
    with use_block(Path(sys.argv[1]), block, keep_bytes=0, grace=0) as p:
        if p.read_bytes() != block:
            sys.exit(f"block {p.name} changed or vanished while in use")
"""


def test_two_processes_writing_and_pruning_one_folder(tmp_path: Path) -> None:
    """Two processes (as pytest-xdist workers are) write, reuse and prune one folder with no size allowance
    and no grace period: neither ever loses the block it is using, and nothing but blocks is left."""
    import os

    folder = tmp_path / "inputs"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, str(folder), str(seed), "300"], env=env,
                                stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    for w in workers:
        _, err = w.communicate(timeout=60)
        assert w.returncode == 0, err
    left = list(folder.iterdir())
    assert len(left) <= 2 and all(p.suffix == ".bin" for p in left), left  # at most the last block of each


def _one_run(
    tf_: ModuleType, fw_cache: Path, keep: int | None = None
) -> tuple[Any, bytes, list[np.ndarray]]:
    model = tf_.int8_cnn(seed=11)
    rng = np.random.default_rng(11)
    samples = [rng.integers(-128, 128, size=(1, 8, 8, 1), dtype=np.int8) for _ in range(3)]
    return run_firmware(model, samples, cache_dir=fw_cache, count_classes=False, inputs_keep=keep), model, samples


@needs_toolchain
def test_recorded_command_names_its_block_and_a_pruned_block_is_restored(
    tflite_factory: ModuleType, fw_cache: Path
) -> None:
    """A run records the input block its emulator command loads; once pruned, the block is rebuilt from the
    model and inputs (as a cached run does) byte for byte, and the firmware items say when it is missing."""
    import shlex

    from pytest_tinyml.checks.firmware import firmware_provenance
    from pytest_tinyml.emulate.blocks import restore_block

    fw, model, samples = _one_run(tflite_factory, fw_cache)
    block = Path(fw.input_block)  # type: ignore[attr-defined]
    assert block.parent == fw_cache.resolve() / "inputs" and fw.input_block_samples == 3  # type: ignore[attr-defined]
    assert f"loader,file={block}," in " ".join(shlex.split(fw.emulator_command))  # type: ignore[attr-defined]
    content = block.read_bytes()
    assert "emulator_command_note" not in firmware_provenance(fw)
    block.unlink()  # pruned
    extra = firmware_provenance(fw)
    assert extra["input_block"] == str(block) and "no longer in the cache" in extra["emulator_command_note"]
    assert restore_block(fw, model, samples, fw_cache)  # type: ignore[arg-type]
    assert block.read_bytes() == content and "emulator_command_note" not in firmware_provenance(fw)
    # other inputs than the run's do not hash to the recorded name: nothing is written under it
    block.unlink()
    assert not restore_block(fw, model, samples[::-1], fw_cache)  # type: ignore[arg-type]
    assert not block.exists()
    assert restore_block(fw, model, samples, fw_cache)  # type: ignore[arg-type]


@needs_toolchain
def test_cached_run_writes_back_the_block_its_command_loads(
    tflite_factory: ModuleType, pytester: pytest.Pytester
) -> None:
    """Through the plugin: a firmware item's report names the input block of its emulator command; after the
    block is pruned, the next run (a cached run, no emulator) writes it back, so the command stays runnable.
    A bad ``tinyml_input_blocks_keep`` is a one-line usage error."""
    import json

    (pytester.path / "m.tflite").write_bytes(tflite_factory.int8_cnn(seed=12))
    args = ("-p", "no:cacheprovider", "--tinyml-model", "m.tflite", "-k", "firmware_bitexact",
            "--tinyml-firmware-runtime", "tinyml", "--tinyml-firmware-samples", "2", "-o", "tinyml_cache_dir=c",
            "-o", "tinyml_input_blocks_keep=1MiB")

    def item_extra(report: str) -> dict[str, object]:
        result = pytester.runpytest_subprocess(*args, "--tinyml-report", report, timeout=600)
        assert result.ret == 0, result.stdout.str()
        doc = json.loads((pytester.path / report / "report.json").read_text())
        (item,) = [i for t in doc["targets"] for i in t["items"] if i["check"] == "firmware_bitexact"]
        return dict(item["extra"])

    first = item_extra("r1")
    block = Path(str(first["input_block"]))
    assert block.is_file() and str(block) in str(first["emulator_command"])
    assert "emulator_command_note" not in first
    content = block.read_bytes()
    block.unlink()  # pruned

    def entries() -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in (pytester.path / "c" / "runs").glob("*/result.json")}

    runs = entries()
    second = item_extra("r2")
    assert entries() == runs  # a cached run: no entry was written again
    assert second["emulator_command"] == first["emulator_command"] and "emulator_command_note" not in second
    assert block.read_bytes() == content


def test_bad_input_blocks_keep_is_a_usage_error(
    tflite_factory: ModuleType, pytester: pytest.Pytester
) -> None:
    (pytester.path / "m.tflite").write_bytes(tflite_factory.int8_cnn(seed=12))
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--tinyml-model", "m.tflite",
                                        "-o", "tinyml_input_blocks_keep=10 Mb", timeout=600)
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["*ini tinyml_input_blocks_keep: '10 Mb': 'Mb' reads as kilobits/megabits*"])
