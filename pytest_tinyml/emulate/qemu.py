"""The QEMU adapter: the one place that builds QEMU's command line, and the instruction-class plugin's
counts it reads back (:mod:`pytest_tinyml.emulate.insn_plugin`). No process plumbing here: the run goes
through :func:`pytest_tinyml.emulate.runner.run_emulator`.

Instruction counting: QEMU runs with ``-icount shift=0``, so its virtual clock advances exactly 1 ns per
executed instruction. The firmware reads SysTick (clocked by the emulated core clock,
``Machine.systick_hz``) before and after each inference, so ``instructions = ticks * 1e9 / systick_hz``.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
from pathlib import Path
from typing import Any

from pytest_tinyml._util.toolcache import ToolCache
from pytest_tinyml.emulate.toolchain import QEMU
from pytest_tinyml.kinds import Emulator

QEMU_MEMORY_LIMIT = 2 << 30  # address space of the QEMU process (RLIMIT_AS)


@functools.lru_cache(maxsize=1)
def qemu_sandbox_supported() -> bool:
    """True when this QEMU build has seccomp (``-sandbox on``); asked once per process."""
    try:
        proc = subprocess.run(
            [QEMU, "-M", "none", "-display", "none", "-nodefaults", "-sandbox", "on", "-kernel", "/nonexistent"],
            capture_output=True, text=True, timeout=30, check=False, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "sandbox" not in proc.stderr.lower()


def qemu_command(machine: str, elf: Path, block: Path, block_addr: int, serial: Path,
                 extra_args: tuple[str, ...] | list[str] = ()) -> list[str]:
    """The one place that builds QEMU's command line. No semihosting, no monitor, no network, no default
    devices; the UART goes to ``serial``; the input block is written raw at ``block_addr``.
    ``extra_args`` are appended (e.g. ``-plugin`` options)."""
    cmd = [QEMU, "-M", machine, "-display", "none", "-nodefaults", "-no-user-config", "-monitor", "none",
           "-nic", "none", "-serial", f"file:{serial}"]
    if qemu_sandbox_supported():
        cmd += ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
    cmd += ["-icount", "shift=0", "-kernel", str(elf),
            "-device", f"loader,file={block},addr={block_addr:#x},force-raw=on", *extra_args]
    return cmd



#: Inferences the instruction-class plugin counts (the first ones of a run; their mean is the profile).
CLASS_SAMPLES = 8


def counting_plugin(wanted: bool, emulator: str, tools: ToolCache,
                    held: contextlib.ExitStack) -> tuple[Path | None, str]:
    """The compiled instruction-class plugin (held in the user-level cache until ``held`` closes), or None
    and the reason."""
    if not wanted:
        return None, "instruction-class counting not requested"
    if emulator != Emulator.QEMU:
        return None, f"{emulator} has no instruction-class plugin: only the total instruction count is known"
    from pytest_tinyml.emulate.insn_plugin import PLUGIN_FILE, PluginUnavailable, build_plugin

    try:
        return held.enter_context(build_plugin(tools)).path / PLUGIN_FILE, ""
    except PluginUnavailable as exc:
        return None, str(exc)


def read_counts(path: Path) -> Any:
    """The plugin's counts for one emulator run, or the reason (str) they are unusable."""
    from pytest_tinyml.emulate.insn_plugin import parse_counts

    try:
        if path.stat().st_size > (4 << 20):
            return "the instruction-class plugin wrote an oversized counts file"
        return parse_counts(path.read_text(errors="replace"))
    except (OSError, ValueError) as exc:
        return f"the instruction-class plugin gave no usable counts: {exc}"


def merge_run_counts(plugin: Path | None, runs: list[Any], note: str) -> tuple[Any, str]:
    """One per-inference counts record from the emulator runs (weighted by their inferences)."""
    if plugin is None:
        return None, note
    for r in runs:
        if isinstance(r, str):
            return None, r
    from pytest_tinyml.emulate.insn_plugin import merge_counts

    merged = merge_counts(runs)
    if merged is None or merged.inferences == 0:
        return None, "the firmware executed no inference markers (runtime built without firmware/runtime/tm_prof.h?)"
    return merged, ""
