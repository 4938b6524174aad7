"""The shape of the house: imports inside ``latbench`` run one way, and ``latbench`` never imports ``pruners``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(package: str) -> dict[str, Path]:
    return {module_name(p): p for p in (ROOT / package).rglob("*.py")}


def imported(path: Path, known: set[str]) -> set[str]:
    """Project modules ``path`` imports anywhere in it (top level or inside functions); ``from P
    import N`` counts as importing ``P.N`` where that is a module."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m in known}


def import_graph(*packages: str) -> dict[str, set[str]]:
    modules = {}
    for package in packages:
        modules |= project_modules(package)
    return {name: imported(path, set(modules)) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", ["latbench", "pruners"])
def test_no_import_cycle_inside_a_package(package):
    graph = import_graph(package)
    graph.pop(package, None)  # a package's __init__ re-exports its modules; importing it is not a cycle
    graph = {m: {d for d in deps if d != package} for m, deps in graph.items()}
    assert cycles(graph) == []


def test_latbench_imports_nothing_from_pruners():
    graph = import_graph("latbench", "pruners")
    offenders = {m: sorted(d for d in deps if d.split(".")[0] == "pruners")
                 for m, deps in graph.items() if m.split(".")[0] == "latbench"}
    assert {m: d for m, d in offenders.items() if d} == {}
