"""Toolchain discovery and the per-core / per-machine data tables.

Everything here is data plus cheap lookups: no subprocess is started except to ask the compiler for its
version (once per process, for the build cache key).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

APT_HINT = (
    "apt-get install -y --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
)
RENODE_HINT = "install Renode from https://renode.io (not packaged in Debian) and put `renode` on PATH"

GCC = "arm-none-eabi-gcc"
QEMU = "qemu-system-arm"
RENODE = "renode"


@dataclass(frozen=True)
class ToolStatus:
    ok: bool
    missing: list[str] = field(default_factory=list)
    hint: str = ""


def toolchain_status(emulator: str = "qemu") -> ToolStatus:
    """Which of the cross compiler and the emulator are on PATH (``ok`` when all needed ones are)."""
    needed = [GCC, QEMU] if emulator == "qemu" else [GCC, RENODE]
    missing = [tool for tool in needed if shutil.which(tool) is None]
    hints = []
    if GCC in missing or QEMU in missing:
        hints.append(APT_HINT)
    if RENODE in missing:
        hints.append(RENODE_HINT)
    return ToolStatus(ok=not missing, missing=missing, hint="; ".join(hints))


@functools.lru_cache(maxsize=1)
def compiler_version() -> str:
    """First line of ``arm-none-eabi-gcc --version`` (part of every build cache key)."""
    try:
        out = subprocess.run([GCC, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "missing"
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


@dataclass(frozen=True)
class Core:
    name: str
    cflags: tuple[str, ...]
    arch: str  # ISA level, used to decide which emulated machine can run the code
    cpi: float  # cycles per instruction assumed for latency estimates
    cpi_source: str


# CPI: cycles per retired instruction for compiled int8 reference-kernel code running from zero-wait-state
# memory. They are assumptions, not measurements: QEMU counts instructions, not cycles.
#  - Cortex-M0+: 2-stage pipeline; loads/stores 2 cycles, taken branches 2 cycles, single-cycle multiplier
#    on most parts (Cortex-M0+ TRM, DDI0484C, "Instruction timing"). Inner loops of MAC kernels are
#    about half loads and a branch every ~6 instructions: ~1.5.
#  - Cortex-M3/M4: 3-stage pipeline; LDR 2 cycles (back-to-back loads pipeline to 1 extra), taken branch
#    1+P (P = 1..3 refill), MUL/MLA 1 cycle (Cortex-M4 TRM, DDI0439B, table 3-1): ~1.3 (M3 ~1.35 for its
#    slower multiply-long).
#  - Cortex-M7: 6-stage dual-issue superscalar; published CoreMark/MHz ratio M7/M4 is 5.01/3.40 = 1.47, so
#    CPI ~ 1.3/1.47 ~ 0.9 on the same instruction stream (cache hits assumed).
#  - Cortex-M33: 3-stage like M4 with faster branch handling: ~1.25 (CoreMark/MHz 4.02 vs 3.40).
#  - Cortex-M55 (scalar code, no Helium auto-vectorisation at -O2): ~1.1 (CoreMark/MHz 4.2).
CORES: dict[str, Core] = {
    "cortex-m0plus": Core(
        "cortex-m0plus",
        ("-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"),
        "v6m",
        1.5,
        "Cortex-M0+ TRM DDI0484C instruction timing; loads/taken branches 2 cycles",
    ),
    "cortex-m3": Core(
        "cortex-m3",
        ("-mcpu=cortex-m3", "-mthumb", "-mfloat-abi=soft"),
        "v7m",
        1.35,
        "Cortex-M3 TRM DDI0337 instruction timing; LDR 2 cycles, branch 1+P",
    ),
    "cortex-m4": Core(
        "cortex-m4",
        ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
        "v7em",
        1.3,
        "Cortex-M4 TRM DDI0439B table 3-1; LDR 2 cycles, branch 1+P, MLA 1 cycle",
    ),
    "cortex-m7": Core(
        "cortex-m7",
        ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
        "v7em",
        0.9,
        "dual-issue; CoreMark/MHz ratio M7/M4 = 5.01/3.40 applied to the M4 figure",
    ),
    "cortex-m33": Core(
        "cortex-m33",
        ("-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"),
        "v8mmain",
        1.25,
        "CoreMark/MHz ratio M33/M4 = 4.02/3.40 applied to the M4 figure",
    ),
    "cortex-m55": Core(
        "cortex-m55",
        ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
        "v81mmain",
        1.1,
        "scalar code; CoreMark/MHz 4.2 vs M4 3.40",
    ),
}

# Which instruction sets a core of each level can execute (superset relation).
_RUNS: dict[str, set[str]] = {
    "v6m": {"v6m"},
    "v7m": {"v6m", "v7m"},
    "v7em": {"v6m", "v7m", "v7em"},
    "v8mmain": {"v6m", "v7m", "v8mmain"},
    "v81mmain": {"v6m", "v7m", "v8mmain", "v81mmain"},
}


@dataclass(frozen=True)
class Machine:
    name: str
    cpu: str  # core name of the emulated CPU
    linker_script: str  # file in firmware/boards/
    systick_hz: int  # emulated core clock that drives SysTick (CLKSOURCE = core clock)
    default_clock_hz: int  # clock of the real board, for latency estimates
    ram_bytes: int
    flash_bytes: int
    fpu: str  # "sp" / "dp" / "none": what the emulated CPU's FPU can execute


MACHINES: dict[str, Machine] = {
    # QEMU hw/arm/mps2.c: SYSCLK_FRQ 25 MHz for all MPS2 FPGA images.
    "mps2-an386": Machine("mps2-an386", "cortex-m4", "mps2-an386.ld", 25_000_000, 25_000_000, 4 << 20, 4 << 20, "sp"),
    "mps2-an385": Machine("mps2-an385", "cortex-m3", "mps2-an386.ld", 25_000_000, 25_000_000, 4 << 20, 4 << 20, "none"),
    "mps2-an500": Machine("mps2-an500", "cortex-m7", "mps2-an386.ld", 25_000_000, 25_000_000, 4 << 20, 4 << 20, "dp"),
    # QEMU hw/arm/mps2-tz.c: AN505 (Cortex-M33) SYSCLK 20 MHz; secure aliases of SSRAM1 / SSRAM2+3.
    "mps2-an505": Machine(
        "mps2-an505", "cortex-m33", "mps2-an505.ld", 20_000_000, 20_000_000, 4 << 20, 4 << 20, "sp"
    ),
    # QEMU hw/arm/netduinoplus2.c: SYSCLK_FRQ 168 MHz (STM32F405 at full speed).
    "netduinoplus2": Machine(
        "netduinoplus2", "cortex-m4", "netduinoplus2.ld", 168_000_000, 168_000_000, 128 << 10, 1 << 20, "sp"
    ),
}

_FPU_OK = {"none": {"none"}, "sp": {"none", "sp"}, "dp": {"none", "sp", "dp"}}


def _core_fpu(core: Core) -> str:
    flags = " ".join(core.cflags)
    if "float-abi=soft" in flags:
        return "none"
    if "fpv5-d16" in flags or "cortex-m55" in flags:
        return "dp"
    return "sp"


def machine_can_run(machine: str, core: str) -> bool:
    """True when code built for ``core`` executes on the CPU that QEMU emulates for ``machine``."""
    m = MACHINES[machine]
    c = CORES[core]
    host = CORES[m.cpu]
    return c.arch in _RUNS[host.arch] and _core_fpu(c) in _FPU_OK[m.fpu]


@dataclass(frozen=True)
class LatencyEstimate:
    seconds: float
    cpi: float
    method: str


def latency_estimate(instructions: float, core: str, clock_hz: int) -> LatencyEstimate:
    """Seconds per inference = instructions x assumed CPI / clock."""
    if core not in CORES:
        raise ValueError(f"unknown core {core!r}; known: {', '.join(sorted(CORES))}")
    if clock_hz <= 0:
        raise ValueError("clock_hz must be positive")
    c = CORES[core]
    return LatencyEstimate(
        seconds=float(instructions) * c.cpi / float(clock_hz),
        cpi=c.cpi,
        method=f"QEMU -icount instruction count x assumed CPI {c.cpi} ({c.cpi_source}) / {clock_hz} Hz",
    )


def firmware_dir() -> Path:
    """The firmware sources: ``<repo>/firmware`` in a checkout, ``pytest_tinyml/_firmware`` in a wheel."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "_firmware", package.parent / "firmware"):
        if (candidate / "runtime" / "tm_runtime.h").is_file():
            return candidate
    raise FileNotFoundError(
        f"firmware sources not found next to {package} (looked for _firmware/ and ../firmware/)"
    )
