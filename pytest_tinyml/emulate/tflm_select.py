"""Which TFLM sources an app needs: the kernels its op resolver registers, their helpers, and the
CMSIS-NN library functions they call (the rest of the tree is not compiled)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pytest_tinyml.emulate.tflm_tree import TflmTree

_OPTIONAL_CORE = ("test_helper", "fake_", "mock_", "recording_", "hexdump")
_GENERIC_HELPERS = ("kernel_util.cc", "micro_tensor_utils.cc")
_DEF_RE = re.compile(r"\bRegister_(\w+)\s*\(\s*\)\s*\{")
_C_DEF_RE = re.compile(r"^(?!static\b)[A-Za-z_][\w \t\*]*?\b(arm_\w+)\s*\(", re.M)


def _method_registrations(tree: TflmTree, methods: list[str]) -> set[str] | None:
    """``Register_*`` functions the resolver's ``Add<method>()`` calls use (None if the header is unreadable)."""
    header = tree.root / "tensorflow/lite/micro/micro_mutable_op_resolver.h"
    try:
        text = header.read_text(errors="replace")
    except OSError:
        return None
    found: set[str] = set()
    for method in methods:
        m = re.search(rf"TfLiteStatus\s+Add{method}\s*\(", text)
        if m is None:
            return None
        end = text.find("\n  }", m.end())
        found.update(re.findall(r"Register_(\w+)\s*\(", text[m.start() : end if end > 0 else len(text)]))
    return found


def _definition_index(sources: Iterable[Path], pattern: re.Pattern[str]) -> dict[str, Path]:
    """Name -> the first of ``sources`` whose text defines it (``pattern`` finds the defined names)."""
    index: dict[str, Path] = {}
    for src in sources:
        for name in pattern.findall(src.read_text(errors="replace")):
            index.setdefault(name, src)
    return index


def _kernel_index(tree: TflmTree) -> dict[str, Path]:
    """``Register_X`` name -> kernel source defining it."""
    return _definition_index(tree.kernel_sources, _DEF_RE)


def library_index(tree: TflmTree) -> dict[str, Path]:
    """Function name -> CMSIS-NN source defining it (non-static definitions at the start of a line)."""
    return _definition_index(tree.library_sources, _C_DEF_RE)


_ARM_CALL_RE = re.compile(r"\b(arm_\w+)\s*\(")


def _library_closure(tree: TflmTree, chosen: list[Path]) -> list[Path]:
    """The CMSIS-NN sources defining the ``arm_*`` functions ``chosen`` calls, and what those call in turn
    (saves link rounds; the link loop still adds anything this misses)."""
    index = library_index(tree)
    if not index:
        return []
    found: list[Path] = []
    seen: set[Path] = set()
    queue = list(chosen)
    while queue:
        src = queue.pop()
        for name in _ARM_CALL_RE.findall(src.read_text(errors="replace")):
            lib = index.get(name)
            if lib is not None and lib not in seen:
                seen.add(lib)
                found.append(lib)
                queue.append(lib)
    return sorted(found)


def select_sources(tree: TflmTree, methods: list[str]) -> list[Path] | None:
    """The TFLM sources an app registering ``methods`` (``Conv2D``, ``Softmax``...) needs, or None when
    the selection cannot be derived (then every library source is compiled)."""
    regs = _method_registrations(tree, methods)
    if regs is None:
        return None
    index = _kernel_index(tree)
    if any(r not in index for r in regs):
        return None
    op_files = {index[r] for r in regs}
    defining = set(index.values())
    chosen: list[Path] = [p for p in tree.core_sources if not p.name.startswith(_OPTIONAL_CORE)]
    stems = {p.stem for p in op_files}
    for src in tree.kernel_sources:
        if src in op_files or src.name in _GENERIC_HELPERS:
            chosen.append(src)
        elif src not in defining and any(src.stem.startswith(s + "_") for s in stems):
            chosen.append(src)  # conv_common.cc for conv.cc, pooling_common.cc for pooling.cc, ...
    return chosen + _library_closure(tree, [p for p in chosen if p in set(tree.kernel_sources)])
