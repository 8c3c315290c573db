"""The QEMU TCG plugin that counts executed instructions by timing class, per inference and per operator.

The plugin's C source ships with the package (``qemu_plugin/insn_classes.c``). It is compiled at first use
with the host C compiler (``cc -shared -fPIC``; QEMU loads plugins as host shared objects) and cached under
the caller's cache directory, keyed by the digest of the source and the compiler's identity. Without a host
compiler the plugin-dependent figures are skipped with that reason (:class:`PluginUnavailable`).

The firmware marks inference and operator boundaries with no-op moves the plugin recognises by encoding
(``firmware/runtime/tm_prof.h``); counts cover only the instructions between "inference begins" and
"inference ends", summed over every inference of the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from pytest_tinyml._util.toolcache import Entry, ToolCache

#: Classes in the order the plugin writes them (checked against the file's ``classes`` line).
CLASSES = (
    "alu",
    "load",
    "store",
    "ldst_pipelined",
    "load_dual",
    "store_dual",
    "ldm",
    "ldm_regs",
    "stm",
    "stm_regs",
    "mul",
    "mul_long",
    "dsp_mac",
    "dsp_simd",
    "div",
    "branch_taken",
    "branch_not_taken",
    "it",
    "fp",
    "fp_ldst",
    "fp_ldm_regs",
    "mve",
    "flash_reads",
    "flash_misses",
    "marker",
)
#: Classes that count events other than executed instructions: registers moved by LDM/STM/VLDM, instruction
#: pairs issued together, flash reads and misses, and the operator-boundary markers.
_EVENT_CLASSES = frozenset({"ldm_regs", "stm_regs", "fp_ldm_regs", "ldst_pipelined", "flash_reads", "flash_misses", "marker"})
#: Classes that are executed instructions, in the plugin's order.
INSTRUCTION_CLASSES = tuple(c for c in CLASSES if c not in _EVENT_CLASSES)

_MAX_OPS = 4096  # the plugin's own limit
_MAX_FILE = 4 << 20


class PluginUnavailable(Exception):
    """The counting plugin cannot be built or run here (the reason is the message)."""


@dataclass
class ClassCounts:
    """Per-inference mean counts from one run (the plugin sums over ``inferences``)."""

    inferences: int
    total: dict[str, float]
    overhead: dict[str, float]  # inside an inference but outside every operator (interpreter loop)
    ops: list[dict[str, float]] = field(default_factory=list)

    @property
    def instructions(self) -> float:
        return instructions(self.total)

    def to_dict(self) -> dict[str, object]:
        return {"inferences": self.inferences, "total": self.total, "overhead": self.overhead, "ops": self.ops}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ClassCounts:
        def row(value: object) -> dict[str, float]:
            if not isinstance(value, dict):
                raise ValueError("counts row is not a mapping")
            return {str(k): float(v) for k, v in value.items() if str(k) in CLASSES}

        ops = data.get("ops", [])
        if not isinstance(ops, list):
            raise ValueError("ops is not a list")
        inferences = data.get("inferences", 0)
        if not isinstance(inferences, int):
            raise ValueError("inferences is not an integer")
        return cls(inferences, row(data.get("total")), row(data.get("overhead")), [row(o) for o in ops])


def merge_counts(runs: list[ClassCounts]) -> ClassCounts | None:
    """Per-inference means over several emulator runs (weighted by each run's inferences)."""
    total_inf = sum(r.inferences for r in runs)
    if not runs or total_inf == 0:
        return None
    if len(runs) == 1:
        return runs[0]

    def mean(rows: list[dict[str, float]], weights: list[int]) -> dict[str, float]:
        keys = {k for row in rows for k in row}
        return {k: sum(row.get(k, 0.0) * w for row, w in zip(rows, weights, strict=True)) / total_inf for k in keys}

    weights = [r.inferences for r in runs]
    n_ops = max(len(r.ops) for r in runs)
    ops = [mean([r.ops[i] if i < len(r.ops) else {} for r in runs], weights) for i in range(n_ops)]
    return ClassCounts(total_inf, mean([r.total for r in runs], weights), mean([r.overhead for r in runs], weights), ops)


def instructions(row: dict[str, float]) -> float:
    """Executed instructions in a counts row (register counts and memory events excluded; VLDM/VSTM count
    once per instruction, as ``fp_ldm_regs`` holds their registers beyond the first)."""
    return sum(row.get(k, 0.0) for k in INSTRUCTION_CLASSES)


def source_path() -> Path:
    return Path(str(resources.files("pytest_tinyml").joinpath("emulate/qemu_plugin/insn_classes.c")))


def plugin_digest() -> str:
    """Digest of the plugin source and of this module (part of firmware-run cache keys)."""
    h = hashlib.sha256(source_path().read_bytes())
    h.update(Path(__file__).read_bytes())
    return h.hexdigest()


def host_compiler(cc: str | None = None) -> str | None:
    """The host C compiler for the plugin: ``cc`` (else ``$CC``, read now), cc, gcc or clang on PATH."""
    from pytest_tinyml.options import Environment

    preferred = cc if cc is not None else Environment.read().host_cc
    for name in (preferred or "", "cc", "gcc", "clang"):
        if name and shutil.which(name):
            return name
    return None


#: The plugin's file name inside its user-level cache entry.
PLUGIN_FILE = "insn_plugin.so"


def _compile_plugin(cc: str, source: bytes, folder: Path) -> None:
    src = folder / "insn_plugin.c"
    src.write_bytes(source)
    try:
        proc = subprocess.run([cc, "-shared", "-fPIC", "-O2", "-o", str(folder / PLUGIN_FILE), str(src)],
                              capture_output=True, text=True, timeout=120, check=False)
    except subprocess.TimeoutExpired as exc:
        raise PluginUnavailable(f"host C compiler {cc} timed out building the QEMU plugin") from exc
    except OSError as exc:
        raise PluginUnavailable(f"host C compiler {cc} does not run: {exc}") from exc
    if proc.returncode != 0:
        first = next((ln for ln in proc.stderr.splitlines() if "error" in ln), proc.stderr.strip()[-200:])
        raise PluginUnavailable(f"host C compiler {cc} failed on the QEMU plugin: {first}")


def build_plugin(tools: ToolCache) -> contextlib.AbstractContextManager[Entry]:
    """The compiled plugin (``<entry>/insn_plugin.so``) in the user-level cache: built once per source
    digest and host compiler, held while the block runs."""
    cc = host_compiler()
    if cc is None:
        raise PluginUnavailable("no host C compiler (cc, gcc or clang) to build the QEMU instruction-class plugin")
    source = source_path().read_bytes()
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PluginUnavailable(f"host C compiler {cc} does not run: {exc}") from exc
    key = hashlib.sha256(source + b"\0" + version.encode()).hexdigest()[:20]
    return tools.entry("qemu-plugin", key, lambda folder: _compile_plugin(cc, source, folder))


def _escape(text: str) -> str:
    """QEMU option values: a literal comma is written as two."""
    return text.replace(",", ",,")


def plugin_args(
    plugin: Path, out: Path, *, flash: tuple[int, int] | None, line_bytes: int = 16, lines: int = 1, ways: int = 0
) -> list[str]:
    """The ``-plugin`` arguments for QEMU (``ways`` 0: fully associative)."""
    parts = [_escape(str(plugin)), f"out={_escape(str(out))}"]
    if flash is not None:
        parts.append(f"flash={flash[0]:x}:{flash[1]:x}")
    parts += [f"dline={int(line_bytes)}", f"dlines={int(lines)}", f"dways={int(ways)}"]
    return ["-plugin", ",".join(parts)]


def parse_counts(text: str) -> ClassCounts:
    """Read the plugin's output file; ValueError with the line when it is malformed."""
    if len(text) > _MAX_FILE:
        raise ValueError("counts file is larger than the plugin can write")
    rows: dict[str, list[int]] = {}
    ops: dict[int, list[int]] = {}
    inferences = None
    classes: tuple[str, ...] | None = None
    ended = False
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words:
            continue
        head = words[0]
        try:
            if head == "classes":
                classes = tuple(words[1:])
                if classes != CLASSES:
                    raise ValueError(f"plugin classes {' '.join(classes)} differ from {' '.join(CLASSES)}")
            elif head == "inferences":
                inferences = int(words[1])
            elif head in ("total", "overhead"):
                rows[head] = [int(w) for w in words[1:]]
            elif head == "op":
                index = int(words[1])
                if not 0 <= index < _MAX_OPS:
                    raise ValueError("op index out of range")
                ops[index] = [int(w) for w in words[2:]]
            elif head == "end":
                ended = True
            elif head in ("version", "markers", "op_overflow"):
                continue
            else:
                raise ValueError(f"unknown row {head!r}")
        except (IndexError, ValueError) as exc:
            raise ValueError(f"line {n}: {exc}") from None
    if classes is None or inferences is None or not ended or "total" not in rows or "overhead" not in rows:
        raise ValueError("incomplete counts file (the emulator exited before the plugin wrote it)")
    for label, values in [*rows.items(), *((f"op {k}", v) for k, v in ops.items())]:
        if len(values) != len(CLASSES) or any(v < 0 for v in values):
            raise ValueError(f"row {label!r} has {len(values)} counts, expected {len(CLASSES)}")
    if sorted(ops) != list(range(len(ops))):
        raise ValueError("operator rows are not numbered 0..n-1")
    div = float(max(inferences, 1))

    def mean(values: list[int]) -> dict[str, float]:
        return {name: v / div for name, v in zip(CLASSES, values, strict=True)}

    return ClassCounts(inferences, mean(rows["total"]), mean(rows["overhead"]), [mean(ops[k]) for k in sorted(ops)])
