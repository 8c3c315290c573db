"""Arm's Vela compiler (PyPI ``ethos-u-vela``, the ``npu`` extra) run on a ``.tflite`` for a board's Ethos-U NPU.

Vela runs in a child process on the shared supervisor (own process group, timeout, address-space limit) in
an empty temporary directory. What is read back is Vela's own output, nothing guessed:

- ``<model>_summary_<system config>.csv``: ``sram_memory_used`` and ``off_chip_flash_memory_used`` (KiB, as
  Vela's ``stats_writer`` divides bytes by 1,024), ``cycles_total``, ``inference_time`` (seconds, at the
  system configuration's NPU clock), ``nn_macs``;
- ``<model>_per-layer.csv`` (``--verbose-performance``): one row per NPU operation (original operator, the
  NPU operation, cycles, MACs, name);
- its console output: each operator placed on the CPU with Vela's reason (``Warning (supported operators)
  operator: OP, ofm: 'NAME'`` + ``Reason: ...`` lines, or the older ``Warning: OP 'NAME' is not supported on
  the NPU`` + `` - constraint`` lines), and the ``CPU operators = N`` / ``NPU operators = N`` counts;
- ``<model>_vela.tflite``: the compiled model (its size is what the board's flash must hold).

No NPU emulator runs here: nothing of the NPU's outputs is checked, and the latency is Vela's estimate.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import re
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pytest_tinyml._util.proc import Child, read_bounded, signal_name
from pytest_tinyml.errors import NotEvaluable, TinyMLError

#: The extra that installs Vela, named by every item that skips without it.
NPU_EXTRA = "pip install 'pytest-tinyml[npu]' (ethos-u-vela)"
#: The custom operator Vela puts the NPU's command stream in.
ETHOS_U_OP = "ethos-u"
#: Vela's console output is read up to this many bytes.
_MAX_LOG = 8 << 20

_REGOR_RE = re.compile(r"^Warning \(supported operators\) operator: ([^,]+), ofm: '(.*)'\s*$")
_LEGACY_RE = re.compile(r"^Warning: (?:Unsupported TensorFlow Lite semantics for )?(\S+) '(.*?)'"
                        r"(?:\. Placing on CPU instead| is not supported on the NPU)")
_CPU_ONLY_RE = re.compile(r"^Info: (\S+) '(.*)' is a CPU only op")
_COUNT_RE = re.compile(r"^(CPU|NPU) operators = (\d+)")
#: The model description Vela gives a compiled model: ``f"Vela {__version__} Optimised"`` from its Python
#: ``tflite_writer``, ``Vela Optimised`` (no version) from 5.x's default C++ compiler.
_DESCRIPTION_RE = re.compile(r"^Vela (?:(\S+) )?Optimised$")


@dataclass(frozen=True)
class CpuFallback:
    """An operator Vela left on the CPU: its type, its output tensor's name and Vela's reason."""

    op: str
    tensor: str
    reason: str


@dataclass(frozen=True)
class VelaLayer:
    """One row of Vela's per-layer performance CSV."""

    original_op: str
    npu_op: str
    cycles: int
    macs: int
    name: str


@dataclass(frozen=True)
class VelaResult:
    """What Vela said about one model on one NPU configuration."""

    accelerator: str
    system_config: str
    memory_mode: str
    vela_version: str
    sram_bytes: int
    flash_bytes: int  # Vela's off-chip (and on-chip) flash use: weights and command stream
    compiled_model_bytes: int  # the whole compiled .tflite (NPU command stream + weights + CPU part)
    cycles_total: int
    inference_seconds: float  # Vela's estimate at its system configuration's clock
    vela_clock_hz: float
    macs: int
    npu_ops: int
    cpu_ops: int
    fallbacks: tuple[CpuFallback, ...] = ()
    layers: tuple[VelaLayer, ...] = ()
    cpu_op_types: tuple[str, ...] = ()  # operator types left in the compiled model besides ethos-u
    cpu_op_counts: tuple[tuple[str, int], ...] = ()  # (type, how many) of those operators
    summary: dict[str, str] = field(default_factory=dict)
    precompiled: bool = False  # read from a model Vela had already compiled (no cycles, no reasons)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def vela_available() -> str | None:
    """Vela's version when ``ethos-u-vela`` is importable, else None."""
    if importlib.util.find_spec("ethosu") is None or importlib.util.find_spec("ethosu.vela") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ethos-u-vela")
    except PackageNotFoundError:
        return None


def require_vela() -> str:
    found = vela_available()
    if found is None:
        raise NotEvaluable("Arm's Vela compiler (ethos-u-vela) is not installed, so the NPU cannot be judged",
                           f"install the npu extra: {NPU_EXTRA}")
    return found


def parse_fallbacks(text: str) -> tuple[CpuFallback, ...]:
    """The operators Vela's console output places on the CPU, each with the reason lines that follow it."""
    out: list[CpuFallback] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _REGOR_RE.match(line) or _LEGACY_RE.match(line) or _CPU_ONLY_RE.match(line)
        i += 1
        if not m:
            continue
        reasons: list[str] = []
        if _CPU_ONLY_RE.match(line):
            reasons.append("a CPU-only operator for Vela")
        while i < len(lines) and lines[i].strip() and not lines[i].startswith(("Warning", "Info:", "Network summary")):
            reasons.append(lines[i].strip().removeprefix("Reason: ").removeprefix("- ").strip())
            i += 1
        out.append(CpuFallback(m.group(1), m.group(2), "; ".join(r for r in reasons if r) or "no reason printed"))
    return tuple(out)


def _number(row: dict[str, str], key: str) -> float:
    try:
        return float(row[key])
    except (KeyError, ValueError):
        raise TinyMLError(f"Vela's summary CSV has no number in column {key!r}",
                          fix="use ethos-u-vela 5.x (the npu extra)") from None


def parse_summary(text: str) -> dict[str, str]:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise TinyMLError("Vela's summary CSV is empty", fix="use ethos-u-vela 5.x (the npu extra)")
    return {str(k).strip(): str(v).strip() for k, v in rows[0].items() if k is not None}


def parse_layers(text: str) -> tuple[VelaLayer, ...]:
    out = []
    for row in csv.DictReader(io.StringIO(text)):
        try:
            out.append(VelaLayer(row["Original Operator"].strip(), row["NNG Operator"].strip(),
                                 int(float(row["Op Cycles"])), int(float(row["MAC Count"])), row["Name"].strip()))
        except (KeyError, ValueError, AttributeError):
            continue
    return tuple(out)


def compile_for_npu(model: bytes, *, accelerator: str, system_config: str, memory_mode: str,
                    config: str = "Arm/vela.ini", clock_hz: int | None = None, timeout: float = 120.0,
                    memory_limit: int = 4 << 30) -> VelaResult:
    """Run Vela on ``model`` in a child process and read back its summary, per-layer CSV and CPU fallbacks.

    ``clock_hz``: the board's NPU clock; Vela then compiles with a copy of the configuration file whose
    system configuration has that ``core_clock`` (its memory latencies and clock scales are kept), so its
    cycles and ``inference_time`` are for the board's clock."""
    version = require_vela()
    with tempfile.TemporaryDirectory(prefix="tinyml-vela-") as tmp:
        work = Path(tmp)
        (work / "model.tflite").write_bytes(model)
        config_path = _config_file(config)
        if clock_hz is not None:
            config_path = _with_clock(config_path, system_config, clock_hz, work / "board_vela.ini")
        cmd = [sys.executable, "-c", "import sys; from ethosu.vela.vela import main; sys.exit(main())",
               "model.tflite", "--output-dir", "out", "--accelerator-config", accelerator,
               "--config", str(config_path), "--system-config", system_config, "--memory-mode", memory_mode,
               "--verbose-performance"]
        log = work / "vela.log"
        with Child(cmd, log=log, cwd=work, memory_limit=memory_limit, stdout_to_log=True) as child:
            done = child.wait(timeout)
            if not done:
                raise TinyMLError(f"Vela did not finish within {timeout:.0f} s",
                                  fix="a model Vela cannot compile in that time is too large or hostile")
            returncode = child.returncode
        text = read_bounded(log, _MAX_LOG).decode("utf-8", "replace")
        out = work / "out"
        summary_path = out / f"model_summary_{system_config}.csv"
        if returncode != 0 or not summary_path.is_file():
            why = signal_name(returncode) or f"exit status {returncode}"
            tail = " ".join(line.strip() for line in text.splitlines()[-6:] if line.strip())
            raise TinyMLError(f"Vela failed to compile the model ({why}): {tail[:600]}",
                              fix="see Vela's message; a model Vela refuses cannot use the NPU as it is")
        summary = parse_summary(summary_path.read_text(encoding="utf-8", errors="replace"))
        layers_path = out / "model_per-layer.csv"
        layers = parse_layers(layers_path.read_text(encoding="utf-8", errors="replace")) if layers_path.is_file() else ()
        compiled = out / "model_vela.tflite"
        compiled_bytes = compiled.read_bytes() if compiled.is_file() else b""
    counts = {kind: int(n) for kind, n in (m.groups() for m in map(_COUNT_RE.match, text.splitlines()) if m)}
    cpu_counts: tuple[tuple[str, int], ...] = ()
    if compiled_bytes:
        from pytest_tinyml.analysis.model import parse_model

        cpu_counts = _cpu_counts(parse_model(compiled_bytes, "vela output"))
    flash_kib = _number(summary, "off_chip_flash_memory_used") + _number(summary, "on_chip_flash_memory_used")
    return VelaResult(
        accelerator=accelerator, system_config=system_config, memory_mode=memory_mode, vela_version=version,
        sram_bytes=round(_number(summary, "sram_memory_used") * 1024),
        flash_bytes=round(flash_kib * 1024),
        compiled_model_bytes=len(compiled_bytes),
        cycles_total=int(_number(summary, "cycles_total")),
        inference_seconds=_number(summary, "inference_time"),
        vela_clock_hz=_number(summary, "core_clock"),
        macs=int(_number(summary, "nn_macs")),
        npu_ops=counts.get("NPU", 0), cpu_ops=counts.get("CPU", 0),
        fallbacks=parse_fallbacks(text), layers=layers, cpu_op_types=tuple(op for op, _ in cpu_counts),
        cpu_op_counts=cpu_counts, summary=summary,
    )


def _cpu_counts(info: Any) -> tuple[tuple[str, int], ...]:
    """(operator type, count) of the operators of a compiled model that are not ``ethos-u``, by type."""
    counts: dict[str, int] = {}
    for op in info.ops:
        if op.name != ETHOS_U_OP:
            counts[op.name] = counts.get(op.name, 0) + 1
    return tuple(sorted(counts.items()))


def compiled_by(info: Any) -> str | None:
    """The Vela version that compiled the model, from the description Vela's writer gives it, else None (also
    for Vela 5.x's default compiler, whose description names no version)."""
    m = _DESCRIPTION_RE.match(str(getattr(info, "description", "") or ""))
    return m.group(1) if m else None


def placement(original: Any, v: VelaResult) -> dict[str, dict[str, int]]:
    """Which operators of the model ``original`` (a ModelInfo, before Vela) run where: ``{"npu": {type: n},
    "cpu": {type: n}}``. The CPU part is what Vela left in its compiled model besides ``ethos-u`` (Vela keeps
    those operators as they were); every other operator of the model went into the NPU's command stream."""
    cpu = dict(v.cpu_op_counts)
    npu: dict[str, int] = {}
    for op in original.ops:
        npu[op.name] = npu.get(op.name, 0) + 1
    for name, n in cpu.items():
        npu[name] = npu.get(name, 0) - n
    return {"npu": {k: n for k, n in sorted(npu.items()) if n > 0}, "cpu": dict(sorted(cpu.items()))}


def compiled_model_facts(info: Any, model_size: int, *, accelerator: str, system_config: str,
                         memory_mode: str) -> VelaResult:
    """The NPU figures of a model Vela already compiled, read from the model itself: each ``ethos-u``
    operator's inputs are, in the order Vela's writer gives them, the command stream and the read-only
    data (both constant: flash), the scratch tensor (the arena) and the fast scratch (SRAM; the same size as
    the scratch in Shared_Sram mode), then the NPU part's inputs. The SRAM use is the largest fast scratch
    (else scratch); flash is the read-only data, as Vela's summary counts it (the command streams are in the
    compiled model's size, which npu_flash judges); no cycles (Vela's estimate is not
    stored in the file)."""
    sram = flash = npu_ops = 0
    for op in info.ops:
        if op.name != ETHOS_U_OP:
            continue
        npu_ops += 1
        tensors = [info.tensors[i] if 0 <= i < len(info.tensors) else None for i in op.inputs[:4]]
        sizes = [t.nbytes if t is not None else 0 for t in tensors] + [0] * (4 - len(tensors))
        flash += sizes[1]  # the read-only area: Vela's own flash figure (the command stream is apart)
        sram = max(sram, sizes[3] or sizes[2])
    counts = _cpu_counts(info)
    version = compiled_by(info)
    return VelaResult(
        accelerator=accelerator, system_config=system_config, memory_mode=memory_mode,
        vela_version=f"{version or 'unknown'} (compiled before this run)", sram_bytes=sram, flash_bytes=flash,
        compiled_model_bytes=model_size, cycles_total=0, inference_seconds=0.0, vela_clock_hz=0.0, macs=0,
        npu_ops=npu_ops, cpu_ops=sum(n for _, n in counts), cpu_op_types=tuple(op for op, _ in counts),
        cpu_op_counts=counts, precompiled=True,
    )


def _with_clock(source: Path, system_config: str, clock_hz: int, out: Path) -> Path:
    """A copy of Vela's configuration file ``source`` with ``core_clock`` of ``System_Config.<name>`` set."""
    import configparser

    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # Vela's keys are case-sensitive
    parser.read(source, encoding="utf-8")
    section = f"System_Config.{system_config}"
    if not parser.has_section(section):
        raise TinyMLError(f"Vela configuration {source.name} has no [{section}]",
                          fix=f"name a system configuration `vela --list-configs {source}` lists")
    parser.set(section, "core_clock", f"{clock_hz:.6e}")
    with open(out, "w", encoding="utf-8") as fh:
        parser.write(fh)
    return out


def _config_file(config: str) -> Path:
    """``config`` relative to Vela's own ``config_files`` folder (e.g. ``Arm/vela.ini``), or a path."""
    given = Path(config)
    if given.is_absolute():
        return given
    spec = importlib.util.find_spec("ethosu")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        candidate = Path(root) / "config_files" / config
        if candidate.is_file():
            return candidate
    raise TinyMLError(f"Vela configuration file {config!r} not found in ethos-u-vela's config_files",
                      fix="name a file `vela --list-config-files` lists in the board's npu.config")


__all__ = ["ETHOS_U_OP", "NPU_EXTRA", "CpuFallback", "VelaLayer", "VelaResult", "compile_for_npu", "compiled_by",
           "compiled_model_facts", "parse_fallbacks", "placement", "require_vela", "vela_available"]
