"""The package's layers, read from its imports: every import points down (or sideways within a floor that
allows it), and no Python modules import each other in a circle. README, "Design", names the floors."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pytest_tinyml"

#: Floor of each top-level part of the package (a module or a sub-package), lowest first.
FLOORS: dict[str, int] = {
    "kinds": 0, "options": 0, "errors": 0, "_util": 0, "fmt": 0,
    "spec": 1, "boards": 1,
    "analysis": 2,
    "pipeline": 3, "emulate": 3,
    "target": 4,
    "measurements": 5,
    "checks": 6,
    "records": 7, "reports": 7, "builtin": 7, "hookspecs": 7,
    "session": 8, "items": 8, "fixtures": 8, "invocation": 8,
    "plugin": 9, "cli": 9,
}
#: Parts of one floor that may not import each other at all.
APART = {frozenset({"pipeline", "emulate"})}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports (``from pkg import sub`` names the module ``pkg.sub``)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.add(sub if sub in modules else base)
    return {name for name in out if name in modules and name != module}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {m: _imports(p, m, set(files)) for m, p in files.items()}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_part_of_the_package_has_a_floor() -> None:
    parts = {_part(m) for m in _graph()} - {""}
    assert parts <= set(FLOORS), f"give these a floor in FLOORS (and README's Design): {sorted(parts - set(FLOORS))}"


def test_no_import_runs_up_a_floor_or_between_parts_kept_apart() -> None:
    wrong = []
    for module, targets in _graph().items():
        here = _part(module)
        for target in targets:
            there = _part(target)
            if not here or not there or here == there:
                continue
            if FLOORS[there] > FLOORS[here] or frozenset({here, there}) in APART:
                wrong.append(f"{module} -> {target}")
    assert wrong == []


def test_no_python_modules_import_each_other_in_a_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert circles == []


@pytest.mark.parametrize("forbidden", ["os.environ", "os.getenv"])
def test_only_the_options_module_reads_the_environment(forbidden: str) -> None:
    readers = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if forbidden in p.read_text())
    assert readers == ["options.py"] if forbidden == "os.environ" else readers == []
