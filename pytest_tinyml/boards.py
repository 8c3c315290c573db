"""Boards: the data file ``boards.yaml`` plus any boards plugins add through ``pytest_tinyml_boards``."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from pytest_tinyml.errors import SpecError
from pytest_tinyml.spec.units import UnitError, parse_frequency, parse_size

#: The board audits use when neither the spec nor --tinyml-board names one: the Arduino Nano 33 BLE Sense
#: (nRF52840: 256 KiB RAM, 1 MiB flash), TFLM's reference board for its examples.
DEFAULT_BOARD = "arduino_nano_33_ble_sense"


@dataclass(frozen=True)
class Region:
    """A block of the MCU's address space: ``origin`` and ``length`` in bytes."""

    origin: int
    length: int

    @property
    def end(self) -> int:
        return self.origin + self.length

    def within(self, others: tuple[Region, ...]) -> bool:
        return any(o.origin <= self.origin and self.end <= o.end for o in others)


@dataclass(frozen=True)
class MemoryMap:
    """Where firmware lives on a board: code, constants and the harness's input block in ``flash``; data,
    heap, tensor arena and stack in ``ram`` (one contiguous block each)."""

    flash: Region
    ram: Region
    source: str = ""
    stack_bytes: int = 0x4000
    heap_bytes: int = 0x2000

    def key(self) -> str:
        return (f"flash {self.flash.origin:#x}+{self.flash.length:#x} ram {self.ram.origin:#x}+{self.ram.length:#x} "
                f"stack {self.stack_bytes:#x} heap {self.heap_bytes:#x}")


#: Vela's accelerator configurations (``vela --accelerator-config``), as ethos-u-vela 5.x accepts them.
NPU_ACCELERATORS = (
    "ethos-u55-32", "ethos-u55-64", "ethos-u55-128", "ethos-u55-256", "ethos-u65-256", "ethos-u65-512",
    "ethos-u85-128", "ethos-u85-256", "ethos-u85-512", "ethos-u85-1024", "ethos-u85-2048",
)


@dataclass(frozen=True)
class NpuConfig:
    """A board's Arm Ethos-U NPU as Vela compiles for it: ``accelerator`` (``--accelerator-config``),
    ``system_config`` and ``memory_mode`` (sections of Vela's ``vela.ini``, ``config`` names that file
    relative to Vela's ``config_files``), the NPU's clock, the SRAM it keeps tensors in (``sram_bytes``) and
    the flash (or memory) that holds the compiled model (``flash_bytes``), with the datasheet ``source``."""

    accelerator: str
    system_config: str
    memory_mode: str
    clock_hz: int
    sram_bytes: int
    flash_bytes: int
    config: str = "Arm/vela.ini"
    source: str = ""

    def key(self) -> str:
        return (f"{self.accelerator} {self.system_config} {self.memory_mode} {self.config} "
                f"{self.clock_hz} sram {self.sram_bytes} flash {self.flash_bytes}")

    def to_dict(self) -> dict[str, Any]:
        return {"accelerator": self.accelerator, "system_config": self.system_config,
                "memory_mode": self.memory_mode, "config": self.config, "clock_hz": self.clock_hz,
                "sram_bytes": self.sram_bytes, "flash_bytes": self.flash_bytes, "source": self.source}


@dataclass(frozen=True)
class Board:
    name: str
    mcu: str
    core: str
    clock_hz: int
    flash_bytes: int
    ram_bytes: int
    arena_ram_bytes: int
    source: str
    qemu: str | None = None
    aliases: tuple[str, ...] = ()
    reserve_bytes: int | None = None
    flash_reserve_bytes: int | None = None
    memory: MemoryMap | None = None  # the MCU's own flash/RAM regions (firmware is linked for them)
    renode: str | None = None  # Renode platform description that models this board
    # memory timing for latency estimates (emulate/cycles.py); None: not given for this board
    flash_wait_states: int | None = None
    ram_wait_states: int | None = None
    flash_cache_line: int | None = None  # bytes per line of the flash read cache/buffer
    flash_cache_lines: int | None = None
    flash_cache_ways: int | None = None  # 0 or absent: fully associative
    timing_source: str = ""
    npu: NpuConfig | None = None  # an Arm Ethos-U NPU next to the core (the npu_* items judge it)

    @property
    def ram_reserve(self) -> int:
        """RAM kept back for stack, heap, runtime state and the application."""
        if self.reserve_bytes is not None:
            return self.reserve_bytes
        return max(8 * 1024, self.arena_ram_bytes // 10)

    @property
    def arena_limit(self) -> int:
        return max(0, self.arena_ram_bytes - self.ram_reserve)

    @property
    def flash_reserve(self) -> int:
        if self.flash_reserve_bytes is not None:
            return self.flash_reserve_bytes
        return self.flash_bytes // 10

    @property
    def flash_limit(self) -> int:
        return max(0, self.flash_bytes - self.flash_reserve)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "mcu": self.mcu,
            "core": self.core,
            "clock_hz": self.clock_hz,
            "flash_bytes": self.flash_bytes,
            "ram_bytes": self.ram_bytes,
            "arena_ram_bytes": self.arena_ram_bytes,
            "ram_reserve_bytes": self.ram_reserve,
            "flash_reserve_bytes": self.flash_reserve,
            "qemu": self.qemu,
            "renode": self.renode,
            "memory": self.memory.key() if self.memory else None,
            "source": self.source,
            "flash_wait_states": self.flash_wait_states,
            "ram_wait_states": self.ram_wait_states,
            "timing_source": self.timing_source,
            **({"npu": self.npu.to_dict()} if self.npu is not None else {}),  # boards without one: unchanged
        }


def board_from_mapping(name: str, data: Mapping[str, Any], origin: str = "boards") -> Board:
    """Build a :class:`Board` from a mapping with the fields of ``boards.yaml``."""
    try:
        return Board(
            name=name,
            mcu=str(data.get("mcu", name)),
            core=str(data["core"]),
            clock_hz=parse_frequency(data["clock"]),
            flash_bytes=parse_size(data["flash"]).bytes,
            ram_bytes=parse_size(data["ram"]).bytes,
            arena_ram_bytes=parse_size(data.get("arena_ram", data["ram"])).bytes,
            source=str(data.get("source", "")),
            qemu=data.get("qemu"),
            aliases=tuple(str(a) for a in data.get("aliases", ()) or ()),
            reserve_bytes=parse_size(data["reserve"]).bytes if "reserve" in data else None,
            flash_reserve_bytes=parse_size(data["flash_reserve"]).bytes if "flash_reserve" in data else None,
            memory=_memory_map(name, data.get("memory"), origin),
            renode=str(data["renode"]) if data.get("renode") else None,
            flash_wait_states=_small_int(name, data, "flash_wait_states", 64),
            ram_wait_states=_small_int(name, data, "ram_wait_states", 64),
            flash_cache_line=_small_int(name, data, "flash_cache_line", 4096),
            flash_cache_lines=_small_int(name, data, "flash_cache_lines", 4096),
            flash_cache_ways=_small_int(name, data, "flash_cache_ways", 4096),
            timing_source=str(data.get("timing_source", "")),
            npu=_npu(name, data.get("npu"), origin),
        )
    except KeyError as exc:
        raise SpecError(f"board {name!r} lacks field {exc.args[0]!r}", where=origin) from None
    except UnitError as exc:
        raise SpecError(f"board {name!r}: {exc}", where=origin) from None


def _region(name: str, field: str, value: Any, origin: str) -> Region:
    if not isinstance(value, Mapping) or "origin" not in value or "length" not in value:
        raise SpecError(f"board {name!r}: memory.{field} needs 'origin' and 'length'", where=origin)
    start = value["origin"]
    if isinstance(start, str):
        try:
            start = int(start, 0)
        except ValueError:
            raise SpecError(f"board {name!r}: memory.{field}.origin {start!r} is not an address", where=origin) from None
    if not isinstance(start, int) or isinstance(start, bool) or not 0 <= start < 1 << 32:
        raise SpecError(f"board {name!r}: memory.{field}.origin must be a 32-bit address", where=origin)
    length = parse_size(value["length"]).bytes
    if not 0 < length <= (1 << 32) - start:
        raise SpecError(f"board {name!r}: memory.{field}.length must fit the 32-bit address space", where=origin)
    return Region(start, length)


def _memory_map(name: str, value: Any, origin: str) -> MemoryMap | None:
    """``memory: {flash: {origin, length}, ram: {origin, length}, source}`` (other regions, e.g. a CCM, may
    be listed for the record; the firmware uses flash and ram)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError(f"board {name!r}: memory must be a mapping of regions", where=origin)
    for field in ("flash", "ram"):
        if field not in value:
            raise SpecError(f"board {name!r}: memory lacks region {field!r}", where=origin)
    for field, region in value.items():
        if field != "source":
            _region(name, str(field), region, origin)
    return MemoryMap(
        _region(name, "flash", value["flash"], origin),
        _region(name, "ram", value["ram"], origin),
        str(value.get("source", "")),
    )


def _npu(name: str, value: Any, origin: str) -> NpuConfig | None:
    """``npu: {accelerator, system_config, memory_mode, clock, sram, flash, config, source}``."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError(f"board {name!r}: npu must be a mapping", where=origin)
    for field in ("accelerator", "system_config", "memory_mode", "clock", "sram", "flash"):
        if field not in value:
            raise SpecError(f"board {name!r}: npu lacks field {field!r}", where=origin)
    accelerator = str(value["accelerator"]).lower()
    if accelerator not in NPU_ACCELERATORS:
        raise SpecError(f"board {name!r}: npu.accelerator {accelerator!r} is not one Vela knows",
                        where=origin, fix=f"use one of: {', '.join(NPU_ACCELERATORS)}")
    return NpuConfig(
        accelerator=accelerator,
        system_config=str(value["system_config"]),
        memory_mode=str(value["memory_mode"]),
        clock_hz=parse_frequency(value["clock"]),
        sram_bytes=parse_size(value["sram"]).bytes,
        flash_bytes=parse_size(value["flash"]).bytes,
        config=str(value.get("config", "Arm/vela.ini")),
        source=str(value.get("source", "")),
    )


def _small_int(name: str, data: Mapping[str, Any], key: str, most: int) -> int | None:
    if key not in data or data[key] is None:
        return None
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= most:
        raise UnitError(f"{key} must be a whole number from 0 to {most}, got {value!r}")
    return value


def builtin_boards() -> list[Board]:
    text = resources.files("pytest_tinyml").joinpath("boards.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    return [board_from_mapping(name, fields, "boards.yaml") for name, fields in data["boards"].items()]


def npu_board_names() -> str:
    """The boards of boards.yaml that have an Arm Ethos-U NPU, each with its accelerator, for messages."""
    found = [f"{b.name} ({b.npu.accelerator})" for b in builtin_boards() if b.npu is not None]
    return ", ".join(found) or "none in boards.yaml"


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


class BoardRegistry:
    def __init__(self, boards: Iterable[Board]) -> None:
        self._boards: dict[str, Board] = {}
        self._index: dict[str, str] = {}
        for board in boards:
            self.add(board)

    def add(self, board: Board) -> None:
        self._boards[board.name] = board
        for key in (board.name, *board.aliases):
            self._index[_norm(key)] = board.name

    def names(self) -> list[str]:
        return sorted(self._boards)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._boards.values())

    def get(self, name: str, *, where: str | None = None) -> Board:
        key = self._index.get(_norm(name))
        if key is not None:
            return self._boards[key]
        close = difflib.get_close_matches(_norm(name), list(self._index), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(sorted({self._index[c] for c in close}))}?" if close else ""
        raise SpecError(
            f"unknown board {name!r}" + (f"; {hint}" if hint else ""),
            where=where,
            fix=f"use one of: {', '.join(self.names())}, or add one with the pytest_tinyml_boards hook",
        )
