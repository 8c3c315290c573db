"""Where a firmware run executes: the emulator, its machine or platform, the memory map linked for, the UART
(:class:`Placement`), and the checks that the machine can run code built for the core."""

from __future__ import annotations

from dataclasses import dataclass

from pytest_tinyml.emulate.toolchain import CORES, MACHINES, MemoryMap, Uart, machine_can_run
from pytest_tinyml.errors import NotEvaluable
from pytest_tinyml.kinds import Emulator


def check_args(machine: str, core: str, emulator: str) -> None:
    if machine not in MACHINES:
        raise ValueError(f"unknown machine {machine!r}; known: {', '.join(sorted(MACHINES))}")
    if core not in CORES:
        raise ValueError(f"unknown core {core!r}; known: {', '.join(sorted(CORES))}")
    if emulator not in Emulator.values():
        raise ValueError(f"unknown emulator {emulator!r} (qemu or renode)")
    if not machine_can_run(machine, core):
        raise NotEvaluable(
            f"QEMU machine {machine} ({MACHINES[machine].cpu}) cannot execute code built for {core}",
            "pick a machine whose CPU implements the core's instruction set, e.g. mps2-an386 for cortex-m0plus..m4",
        )


@dataclass(frozen=True)
class Placement:
    """Where the firmware runs: the emulator, its machine/platform, the memory map linked for, the UART."""

    emulator: str
    name: str  # QEMU machine or Renode platform (.repl)
    memory: MemoryMap
    uart: Uart
    per_tick: float  # instructions per SysTick tick
    note: str  # how the memory map was chosen


def resolve_target(machine: str, emulator: str, memory: MemoryMap | None, platform: str | None,
                   core: str = "cortex-m4") -> Placement:
    """Pick the memory map and UART for a run. A board map (``memory``) is used when the emulated machine
    models all of it; otherwise the QEMU proxy machine's own map is used and the note says so."""
    from pytest_tinyml.emulate.toolchain import RENODE_FOR_MACHINE, RENODE_PLATFORMS

    if emulator == Emulator.RENODE:
        repl = platform or RENODE_FOR_MACHINE.get(machine)
        if repl is None or repl not in RENODE_PLATFORMS:
            raise NotEvaluable(
                f"no Renode platform is known for {platform or machine}",
                f"use one of {', '.join(sorted(RENODE_PLATFORMS))} (boards.yaml field 'renode'), or --tinyml-emulator qemu",
            )
        p = RENODE_PLATFORMS[repl]
        from pytest_tinyml.emulate.toolchain import platform_can_run

        if not platform_can_run(p, core):
            raise NotEvaluable(
                f"Renode's {repl} ({p.cpu}) does not run code built for {core} correctly",
                "run this board under QEMU (--tinyml-emulator qemu)",
            )
        mem = memory or MACHINES[machine].memory
        if mem is None or not (mem.flash.within(p.modelled) and mem.ram.within(p.modelled)):
            raise NotEvaluable(f"the memory map {mem.key() if mem else '?'} is not modelled by Renode's {repl}",
                               "give the board a Renode platform that models its memory")
        from pytest_tinyml.emulate.renode import instructions_per_tick

        return Placement("renode", repl, mem, p.uart, instructions_per_tick(p), f"board map ({mem.source}) on Renode {repl}")
    m = MACHINES[machine]
    assert m.memory is not None and m.uart is not None
    per_tick = 1e9 / m.systick_hz
    if memory is not None and memory.flash.within(m.modelled) and memory.ram.within(m.modelled):
        return Placement("qemu", machine, memory, m.uart, per_tick, f"board map ({memory.source}) on QEMU {machine}")
    note = f"QEMU {machine}'s own map ({m.memory.source})"
    if memory is not None:
        note += f"; the board's map ({memory.key()}) is not modelled by this QEMU machine"
    return Placement("qemu", machine, m.memory, m.uart, per_tick, note)
