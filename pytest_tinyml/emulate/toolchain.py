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

from pytest_tinyml.boards import MemoryMap, Region
from pytest_tinyml.kinds import Emulator

APT_HINT = (
    "apt-get install -y --no-install-recommends gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"
)
RENODE_HINT = (
    "install Renode 1.15 from Antmicro's release packages (the .deb, or the portable Linux tarball, from the "
    "renode/renode GitHub releases page) and put `renode` on PATH"
)

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
    needed = [GCC, QEMU] if emulator == Emulator.QEMU else [GCC, RENODE]
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


#: UART register models the harness drives (harness.c, ``__tm_uart_kind``).
UART_KINDS = {"cmsdk": 1, "stm32": 2, "nrf52": 3, "stm32f7": 4}


@dataclass(frozen=True)
class Uart:
    kind: str  # key of UART_KINDS
    base: int


@dataclass(frozen=True)
class Machine:
    name: str
    cpu: str  # core name of the emulated CPU
    linker_script: str  # file in firmware/boards/ (the machine's own map; kept for the real-TFLM build)
    systick_hz: int  # emulated core clock that drives SysTick (CLKSOURCE = core clock)
    default_clock_hz: int  # clock of the real board, for latency estimates
    ram_bytes: int
    flash_bytes: int
    fpu: str  # "sp" / "dp" / "none": what the emulated CPU's FPU can execute
    memory: MemoryMap | None = None  # the machine's own map (used when a board's map is not modelled)
    modelled: tuple[Region, ...] = ()  # every RAM/ROM block the emulator models (a board map must fit in them)
    uart: Uart | None = None  # the UART that -serial connects first
    # guest RAM QEMU always maps for this machine whatever the firmware uses (address space only: it is
    # mapped lazily), added to the emulator's RLIMIT_AS
    fixed_ram_bytes: int = 0
    # False where the emulated SysTick does not count under the harness: instructions per inference then come
    # from the instruction-class plugin (and are unknown without it)
    systick_counts: bool = True


# QEMU 7.2 hw/arm/mps2.c (AN385/AN386/AN500): SSRAM1 4 MiB at 0x0 (code), SSRAM2/3 4 MiB at 0x20000000,
# CMSDK APB UART0 at 0x40004000 (first -serial); SYSCLK_FRQ 25 MHz.
_MPS2_MAP = MemoryMap(Region(0x0, 4 << 20), Region(0x20000000, 4 << 20),
                      "QEMU 7.2 hw/arm/mps2.c: SSRAM1 4 MiB at 0x0, SSRAM2/3 4 MiB at 0x20000000",
                      stack_bytes=0x8000, heap_bytes=0x4000)
_MPS2_MODELLED = (Region(0x0, 4 << 20), Region(0x20000000, 4 << 20))
# QEMU 7.2 hw/arm/stm32f405_soc.c: flash 1 MiB at 0x08000000 (aliased at 0), SRAM 128 KiB at 0x20000000;
# USART1 at 0x40011000 (first -serial); the CCM at 0x10000000 is not modelled. SYSCLK 168 MHz.
_F405_MAP = MemoryMap(Region(0x08000000, 1 << 20), Region(0x20000000, 128 << 10),
                      "QEMU 7.2 hw/arm/stm32f405_soc.c: flash 1 MiB at 0x08000000, SRAM 128 KiB at 0x20000000")

MACHINES: dict[str, Machine] = {
    # QEMU hw/arm/mps2.c: SYSCLK_FRQ 25 MHz for all MPS2 FPGA images.
    "mps2-an386": Machine("mps2-an386", "cortex-m4", "mps2-an386.ld", 25_000_000, 25_000_000, 4 << 20, 4 << 20, "sp",
                          _MPS2_MAP, _MPS2_MODELLED, Uart("cmsdk", 0x40004000)),
    "mps2-an385": Machine("mps2-an385", "cortex-m3", "mps2-an386.ld", 25_000_000, 25_000_000, 4 << 20, 4 << 20, "none",
                          _MPS2_MAP, _MPS2_MODELLED, Uart("cmsdk", 0x40004000)),
    "mps2-an500": Machine("mps2-an500", "cortex-m7", "mps2-an386.ld", 25_000_000, 25_000_000, 4 << 20, 4 << 20, "dp",
                          _MPS2_MAP, _MPS2_MODELLED, Uart("cmsdk", 0x40004000)),
    # QEMU 7.2 hw/arm/mps2-tz.c (AN505, Cortex-M33, boots secure with VTOR_S 0x10000000): secure aliases of
    # ZBT SSRAM1 (4 MiB at 0x10000000) and SSRAM2+3 (4 MiB at 0x38000000); CMSDK UART0 at its secure alias
    # 0x50200000; SYSCLK 20 MHz.
    "mps2-an505": Machine(
        "mps2-an505", "cortex-m33", "mps2-an505.ld", 20_000_000, 20_000_000, 4 << 20, 4 << 20, "sp",
        MemoryMap(Region(0x10000000, 4 << 20), Region(0x38000000, 4 << 20),
                  "QEMU 7.2 hw/arm/mps2-tz.c AN505: secure aliases of SSRAM1 at 0x10000000 and SSRAM2+3 at 0x38000000",
                  stack_bytes=0x8000, heap_bytes=0x4000),
        (Region(0x10000000, 4 << 20), Region(0x38000000, 4 << 20)), Uart("cmsdk", 0x50200000),
    ),
    # QEMU 7.2 hw/arm/mps2-tz.c AN547 (Cortex-M55 in an SSE-300, boots secure with VTOR_S 0), as `info mtree`
    # and `info qtree` of qemu-system-arm 7.2 print it: ITCM 512 KiB at 0x0 (secure alias 0x10000000), DTCM
    # 512 KiB at 0x20000000 (secure alias 0x30000000), CMSDK UART0 at 0x49303000 (secure alias 0x59303000);
    # SysTick cpuclk 32 MHz.
    "mps3-an547": Machine(
        "mps3-an547", "cortex-m55", "mps3-an547.ld", 32_000_000, 32_000_000, 512 << 10, 512 << 10, "dp",
        MemoryMap(Region(0x10000000, 512 << 10), Region(0x30000000, 512 << 10),
                  "QEMU 7.2 mps3-an547: secure aliases of the ITCM at 0x10000000 and the DTCM at 0x30000000",
                  stack_bytes=0x8000, heap_bytes=0x4000),
        (Region(0x10000000, 512 << 10), Region(0x30000000, 512 << 10)), Uart("cmsdk", 0x59303000),
        fixed_ram_bytes=2 << 30,  # the board's 2 GiB DDR, which QEMU 7.2 maps at start-up (fixed size)
        # measured: every SysTick interval reads as one full 2^24-tick reload period (the harness's
        # 200,000-instruction calibration loop read as 524,488,000 instructions, an inference as 525.7 M
        # against 1.46 M counted by the plugin), so the plugin's count is used
        systick_counts=False,
    ),
    # QEMU hw/arm/netduinoplus2.c: SYSCLK_FRQ 168 MHz (STM32F405 at full speed).
    "netduinoplus2": Machine(
        "netduinoplus2", "cortex-m4", "netduinoplus2.ld", 168_000_000, 168_000_000, 128 << 10, 1 << 20, "sp",
        _F405_MAP, (Region(0x08000000, 1 << 20), Region(0x20000000, 128 << 10)), Uart("stm32", 0x40011000),
    ),
}


@dataclass(frozen=True)
class RenodePlatform:
    """A platform description shipped with Renode (path relative to Renode's install directory)."""

    repl: str
    cpu: str
    fpu: str
    modelled: tuple[Region, ...]
    uart: Uart
    uart_name: str  # the peripheral in the monitor, e.g. sysbus.usart1
    systick_hz: int  # SysTick clock the harness sets (nvic Frequency) -- see renode.py
    source: str


def _stm32f4(repl: str) -> RenodePlatform:
    return RenodePlatform(
        repl, "cortex-m4", "sp", (Region(0x08000000, 2 << 20), Region(0x20000000, 256 << 10)),
        Uart("stm32", 0x40011000), "sysbus.usart1", 72_000_000,
        "Renode platforms/cpus/stm32f4.repl: flash 2 MiB at 0x08000000, SRAM 256 KiB at 0x20000000, "
        "STM32_UART usart1 at 0x40011000, NVIC systickFrequency 72 MHz",
    )


def _nrf52840(repl: str) -> RenodePlatform:
    return RenodePlatform(
        repl, "cortex-m4", "sp", (Region(0x0, 1 << 20), Region(0x20000000, 256 << 10)),
        Uart("nrf52", 0x40002000), "sysbus.uart0", 0,
        "Renode platforms/cpus/nrf52840.repl: flash 1 MiB at 0x0, RAM 256 KiB at 0x20000000, "
        "NRF52840_UART uart0 at 0x40002000",
    )


def _stm32f746(repl: str) -> RenodePlatform:
    # fpu "sp": code built for cortex-m7 (-mfpu=fpv5-d16, double precision) gave outputs different from host
    # TFLM on Renode 1.15.1's model (the same firmware built for cortex-m4 was bit-exact there and on QEMU)
    return RenodePlatform(
        repl, "cortex-m7", "sp", (Region(0x08000000, 2 << 20), Region(0x20000000, 0x60000)),
        Uart("stm32f7", 0x40011000), "sysbus.usart1", 216_000_000,
        "Renode platforms/cpus/stm32f746.repl: flash 2 MiB at 0x08000000, SRAM 384 KiB at 0x20000000, "
        "STM32F7_USART usart1 at 0x40011000",
    )


def _stm32h743(repl: str) -> RenodePlatform:
    # fpu "sp": the same Cortex-M7 model as the STM32F746 above
    return RenodePlatform(
        repl, "cortex-m7", "sp", (Region(0x08000000, 2 << 20), Region(0x24000000, 512 << 10),
                                  Region(0x20000000, 128 << 10)),
        Uart("stm32f7", 0x40011000), "sysbus.usart1", 96_000_000,
        "Renode 1.15.1 platforms/cpus/stm32h743.repl: flash 2 MiB at 0x08000000, AXI SRAM 512 KiB at 0x24000000, "
        "DTCM 128 KiB at 0x20000000, STM32F7_USART usart1 at 0x40011000",
    )


RENODE_PLATFORMS: dict[str, RenodePlatform] = {
    p.repl: p
    for p in (
        _stm32f4("platforms/cpus/stm32f4.repl"),
        _stm32f4("platforms/boards/stm32f4_discovery.repl"),
        _nrf52840("platforms/cpus/nrf52840.repl"),
        _nrf52840("platforms/boards/arduino_nano_33_ble.repl"),
        _nrf52840("platforms/boards/nrf52840dk_nrf52840.repl"),
        _stm32f746("platforms/cpus/stm32f746.repl"),
        _stm32h743("platforms/cpus/stm32h743.repl"),
    )
}
#: Renode platform that stands in for a QEMU machine when only the machine is named (same SoC family).
RENODE_FOR_MACHINE = {"netduinoplus2": "platforms/cpus/stm32f4.repl"}


_FPU_OK = {"none": {"none"}, "sp": {"none", "sp"}, "dp": {"none", "sp", "dp"}}


def _core_fpu(core: Core) -> str:
    flags = " ".join(core.cflags)
    if "float-abi=soft" in flags:
        return "none"
    if "fpv5-d16" in flags or "cortex-m55" in flags:
        return "dp"
    return "sp"


def platform_can_run(platform: RenodePlatform, core: str) -> bool:
    """True when code built for ``core`` runs correctly on the Renode platform's CPU model."""
    c = CORES[core]
    return c.arch in _RUNS[CORES[platform.cpu].arch] and _core_fpu(c) in _FPU_OK[platform.fpu]


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
